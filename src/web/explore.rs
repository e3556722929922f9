//! The explorable figures' door (`<ddpm-forward>`): one step of the forward process and the
//! model's prediction there (`crate::explore`), as frames to draw and the numbers beside them.

use burn::tensor::{Tensor, TensorData};
use js_sys::{Float32Array, Object, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::{Engine, PREVIEW_GAP, frame, js_err, read, set};
use crate::images::{from_rgba, grid_cols, grid_of};

#[wasm_bindgen]
impl Engine {
    /// x_0 (`n` RGBA images of the model's size, as a canvas gives them) noised to the paper's
    /// step `t` (0..=T) with the noise of `seed`, and the model's prediction there. Resolves to
    /// {t, sqrt_alpha_bar, sqrt_one_minus_alpha_bar, snr, frames: {x0, x_t, eps, eps_hat, x0_hat},
    /// values: {the same}}: each frame a grid of the n images (RGBA, [-1, 1] shown as black to
    /// white; one image has no border), each value a Float32Array.
    pub fn forward_view(&self, key: &str, rgba: &[u8], n: usize, t: usize, seed: u32) -> Promise {
        let view = {
            let inner = self.inner.borrow();
            inner.model(key).and_then(|m| {
                let [c, h, w] = m.unet.sample_shape();
                let x0 = from_rgba(rgba, n, [c, h, w]).map_err(js_err)?;
                let x0 = Tensor::<4>::from_data(TensorData::new(x0, [n, c, h, w]), &inner.device);
                let view = crate::explore::forward_view(m, x0.clone(), t, seed as u64).map_err(js_err)?;
                Ok((x0, view))
            })
        };
        future_to_promise(async move {
            let (x0, view) = view?;
            let out = Object::new();
            set(&out, "t", t as u32);
            set(&out, "sqrt_alpha_bar", view.sqrt_alpha_bar);
            set(&out, "sqrt_one_minus_alpha_bar", view.sqrt_one_minus_alpha_bar);
            set(&out, "snr", view.snr);
            let (frames, values) = (Object::new(), Object::new());
            let shown = [
                ("x0", x0),
                ("x_t", view.x_t),
                ("eps", view.eps),
                ("eps_hat", view.eps_hat),
                ("x0_hat", view.x0_hat),
            ];
            for (name, x) in shown {
                let (data, shape) = read(x).await?;
                let gap = if shape[0] > 1 { PREVIEW_GAP } else { 0 };
                set(&frames, name, frame(&grid_of(&data, shape, grid_cols(shape[0]), gap)));
                set(&values, name, Float32Array::from(&data[..]));
            }
            set(&out, "frames", frames);
            set(&out, "values", values);
            Ok(out.into())
        })
    }
}
