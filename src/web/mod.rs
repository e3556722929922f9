//! The browser's door to the core (wasm-bindgen): WebGPU through burn-wgpu, or burn's CPU
//! backend when there is no adapter. No math here, and no synchronous read back: every
//! tensor comes back with `into_data_async`.

mod explore;
mod schedule;
mod tuning;

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use js_sys::{Array, Float32Array, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::config::UNetConfig;
use crate::images::{Pixels, from_rgba, grid_cols, grid_of, to_pixels};
use crate::model::{Model, ModelSource};
use crate::sampler::{Denoiser, SampleRequest, Start};
use crate::unet::UNet2DModel;

fn js_err(e: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&e.to_string()).into()
}

fn set(obj: &Object, key: &str, value: impl Into<JsValue>) {
    Reflect::set(obj, &key.into(), &value.into()).expect("setting a property of a plain object");
}

/// Reads a batch back from the device without blocking.
async fn read<const D: usize>(x: Tensor<D>) -> Result<(Vec<f32>, [usize; D]), JsValue> {
    let shape = x.dims();
    let data = x
        .into_data_async()
        .await
        .map_err(|e| js_err(format!("reading back from the device failed: {e:?}")))?;
    Ok((data.try_into_vec::<f32>().map_err(|e| js_err(format!("{e:?}")))?, shape))
}

/// A promise of `x` read back as a Float32Array, or of undefined for None.
fn read_promise(x: Result<Option<Tensor<4>>, JsValue>) -> Promise {
    future_to_promise(async move {
        let Some(x) = x? else { return Ok(JsValue::UNDEFINED) };
        let (data, _) = read(x).await?;
        Ok(Float32Array::from(&data[..]).into())
    })
}

/// RGBA bytes for ImageData.
fn rgba(p: &Pixels) -> Uint8Array {
    let mut out = Vec::with_capacity(p.width * p.height * 4);
    for px in p.data.chunks_exact(p.channels) {
        match px {
            [g] => out.extend([*g, *g, *g, 255]),
            [r, g, b] => out.extend([*r, *g, *b, 255]),
            _ => unreachable!("images are gray or RGB"),
        }
    }
    Uint8Array::from(&out[..])
}

fn frame(p: &Pixels) -> Object {
    let o = Object::new();
    set(&o, "width", p.width as u32);
    set(&o, "height", p.height as u32);
    set(&o, "rgba", rgba(p));
    o
}

/// A run's previews: its rows of a grid of `cols` columns, with the grid's top border when
/// it is the first band (a later band starts right under the one above it).
#[derive(Clone, Copy)]
struct Band {
    cols: usize,
    top: bool,
}

impl Band {
    fn frame(self, batch: &[f32], shape: [usize; 4]) -> Object {
        let mut p = grid_of(batch, shape, self.cols, PREVIEW_GAP);
        if !self.top {
            p.data.drain(..PREVIEW_GAP * p.width * p.channels);
            p.height -= PREVIEW_GAP;
        }
        frame(&p)
    }
}

/// The white border between previewed images, in pixels.
const PREVIEW_GAP: usize = 1;

/// diffusers' older `diffusion_pytorch_model.bin` (`file` names it in errors) as safetensors bytes,
/// read by the same code as the CLI's (`pickle.rs`): no Python runs, only tensors are built.
/// The page converts a `.bin` once and keeps the result, so a later visit loads safetensors.
#[wasm_bindgen]
pub fn bin_to_safetensors(file: &str, bin: Vec<u8>) -> Result<Vec<u8>, JsValue> {
    crate::pickle::to_safetensors(file, bin).map_err(js_err)
}

/// The columns of the preview grid of `n` images (a page splitting a batch cuts it into rows).
#[wasm_bindgen]
pub fn preview_columns(n: usize) -> usize {
    grid_cols(n)
}

struct Inner {
    device: Device,
    /// Models by the page's key (e.g. the base model's URL, or "tuned").
    models: HashMap<String, Model>,
    /// The sampling run in progress, with its model's key and its previews' layout.
    run: Option<(String, Denoiser, Band)>,
    /// Fine-tuning in progress, with its base model's key.
    tuner: Option<(String, crate::train::tune::Tuner)>,
}

impl Inner {
    fn model(&self, key: &str) -> Result<&Model, JsValue> {
        self.models.get(key).ok_or_else(|| js_err(format!("no model loaded under \"{key}\"")))
    }
}

/// `Engine::unet`'s forward pass, its inputs checked against the model first.
fn unet_forward(inner: &Inner, key: &str, x: &[f32], shape: &[u32], t: &[f32]) -> Result<Tensor<4>, JsValue> {
    let unet = &inner.model(key)?.unet;
    let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    unet.check_input(&shape).map_err(js_err)?;
    if shape.iter().product::<usize>() != x.len() || t.len() != shape[0] {
        return Err(js_err(format!("x has {} values and t {} for shape {shape:?}", x.len(), t.len())));
    }
    let x = Tensor::<4>::from_data(TensorData::new(x.to_vec(), shape), &inner.device);
    Ok(unet.forward(x, t))
}

/// `Engine::warm`'s forward pass of one image through a stand-in with zero weights, or None
/// where one image's largest tensor is over `max_buffer` bytes.
fn stand_in_forward(
    device: &Device,
    config_name: &str,
    config_json: &str,
    max_buffer: f64,
) -> Result<Option<Tensor<4>>, JsValue> {
    let config = UNetConfig::from_json(config_name, config_json).map_err(js_err)?;
    if config.largest_tensor_bytes(1) as f64 > max_buffer {
        return Ok(None);
    }
    let unet = crate::weights::zeros(UNet2DModel::new(&config, device));
    let [c, h, w] = unet.sample_shape();
    let x = Tensor::<4>::from_data(TensorData::new(vec![0f32; c * h * w], [1, c, h, w]), device);
    Ok(Some(unet.forward(x, &[0.0])))
}

/// The start `Engine::start`'s `from` describes (see there).
fn start_of(from: &JsValue, m: &Model, device: &Device) -> Result<Start, JsValue> {
    if from.is_undefined() || from.is_null() {
        return Ok(Start::Noise);
    }
    let field =
        |name: &str| Reflect::get(from, &name.into()).ok().filter(|v| !v.is_undefined() && !v.is_null());
    let number = |name: &str| {
        field(name)
            .and_then(|v| v.as_f64())
            .ok_or_else(|| js_err(format!("the start's \"{name}\" must be a number")))
    };
    if let Some(image) = field("image") {
        let [c, h, w] = m.unet.sample_shape();
        let rgba = Uint8Array::new(&image).to_vec();
        let x0 = from_rgba(&rgba, 1, [c, h, w]).map_err(js_err)?;
        let x0 = Tensor::<4>::from_data(TensorData::new(x0, [1, c, h, w]), device);
        return Ok(Start::Image { x0, strength: number("strength")? });
    }
    if field("toSeed").is_some() {
        let (to_seed, count) = (number("toSeed")?, number("count")?);
        if to_seed < 0.0 || to_seed.fract() != 0.0 || count < 1.0 || count.fract() != 0.0 {
            return Err(js_err(format!(
                "an interpolation needs a whole toSeed and count >= 1, got {to_seed} and {count}"
            )));
        }
        return Ok(Start::Between { to_seed: to_seed as u64, count: count as usize });
    }
    Err(js_err("a start is {image, strength} or {toSeed, count}"))
}

#[wasm_bindgen]
pub struct Engine {
    inner: Rc<RefCell<Inner>>,
    backend: String,
    is_gpu: bool,
    gpu_note: Option<String>,
}

/// Why this context has no WebGPU, if it has none (checked before asking burn for an adapter).
fn webgpu_missing() -> Option<String> {
    let nav = Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let gpu = Reflect::get(&nav, &"gpu".into()).ok();
    match gpu {
        Some(g) if !g.is_undefined() && !g.is_null() => None,
        _ => Some("navigator.gpu is missing: this browser or context has no WebGPU".into()),
    }
}

thread_local! {
    static WEBGPU: OnceCell<Device> = const { OnceCell::new() };
}

/// This context's WebGPU device. burn starts its WebGPU runtime once per thread and refuses a
/// second start, so the first device is kept and every later Engine of the context shares it.
pub async fn webgpu_device() -> Result<Device, String> {
    if let Some(why) = webgpu_missing() {
        return Err(why);
    }
    if let Some(device) = WEBGPU.with(|cell| cell.get().cloned()) {
        return Ok(device);
    }
    let started = Device::wgpu_options().init_async().await;
    // Another Engine may have started the runtime while this one waited for its adapter.
    match (started, WEBGPU.with(|cell| cell.get().cloned())) {
        (_, Some(device)) => Ok(device),
        (Ok(device), None) => Ok(WEBGPU.with(|cell| cell.get_or_init(|| device).clone())),
        (Err(e), None) => Err(format!("WebGPU could not start: {e}")),
    }
}

#[wasm_bindgen]
impl Engine {
    /// WebGPU when `prefer_gpu` and an adapter can be had; burn's CPU backend otherwise.
    pub async fn create(prefer_gpu: bool) -> Engine {
        console_error_panic_hook::set_once();
        let gpu = if prefer_gpu { webgpu_device().await } else { Err("WebGPU not requested".to_string()) };
        let (device, backend, is_gpu, gpu_note) = match gpu {
            Ok(device) => (device, "WebGPU".to_string(), true, None),
            Err(note) => (Device::flex(), "CPU (wasm)".to_string(), false, Some(note)),
        };
        let inner = Inner { device, models: HashMap::new(), run: None, tuner: None };
        Engine { inner: Rc::new(RefCell::new(inner)), backend, is_gpu, gpu_note }
    }

    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn is_gpu(&self) -> bool {
        self.is_gpu
    }

    #[wasm_bindgen(getter)]
    pub fn gpu_note(&self) -> Option<String> {
        self.gpu_note.clone()
    }

    /// Builds a model from the three files and keeps it under `key`; each name (a URL) is
    /// what errors report.
    #[allow(clippy::too_many_arguments)]
    pub fn load_model(
        &self,
        key: &str,
        config_name: &str,
        config_json: &str,
        scheduler_name: &str,
        scheduler_json: Option<String>,
        weights_name: &str,
        weights: &[u8],
    ) -> Result<(), JsValue> {
        let mut inner = self.inner.borrow_mut();
        let src = ModelSource {
            config: (config_name, config_json),
            scheduler: scheduler_json.as_deref().map(|s| (scheduler_name, s)),
            weights: (weights_name, weights),
        };
        let model = Model::load(src, &inner.device).map_err(js_err)?;
        inner.models.insert(key.to_string(), model);
        Ok(())
    }

    /// Compiles the GPU kernels that a model of this config runs, while its weights are still
    /// downloading: one image through a stand-in with zero weights, laid out as loaded weights
    /// are. Resolves once the device is done, to the stand-in's output (zeros), or to undefined
    /// where it did not run: there is nothing to compile on the CPU, and no image fits where one
    /// image's largest tensor is over `max_buffer` bytes (the adapter's largest buffer).
    pub fn warm(&self, config_name: &str, config_json: &str, max_buffer: f64) -> Promise {
        let out = if self.is_gpu {
            stand_in_forward(&self.inner.borrow().device, config_name, config_json, max_buffer)
        } else {
            Ok(None)
        };
        read_promise(out)
    }

    /// Forgets the model under `key` (a run on it is dropped too).
    pub fn drop_model(&self, key: &str) {
        let mut inner = self.inner.borrow_mut();
        inner.models.remove(key);
        if inner.run.as_ref().is_some_and(|(k, ..)| k == key) {
            inner.run = None;
        }
    }

    /// JSON: sample_size, in_channels, params, num_train_timesteps.
    pub fn model_info(&self, key: &str) -> Result<String, JsValue> {
        let inner = self.inner.borrow();
        let m = inner.model(key)?;
        let params = m.unet.num_params();
        Ok(serde_json::json!({
            "sample_size": m.unet.config.sample_size,
            "in_channels": m.unet.config.in_channels,
            "params": params,
            "image_tensor_bytes": m.unet.config.largest_tensor_bytes(1),
            "num_train_timesteps": m.scheduler.config.num_train_timesteps,
        })
        .to_string())
    }

    /// The UNet's output for `x` (f32, `shape` [N, C, H, W]) at the timesteps `t` (one per image),
    /// read back as a Float32Array: one forward pass outside a run, so that a harness can hold the
    /// backend to diffusers' `model(x, t).sample` (tests/e2e/dawn.test.mjs).
    pub fn unet(&self, key: &str, x: &[f32], shape: &[u32], t: &[f32]) -> Promise {
        read_promise(unet_forward(&self.inner.borrow(), key, x, shape, t).map(Some))
    }

    /// Starts a run with the model under `key`: draws x_T for images `first..first + n` of
    /// `seed` (`first` is 0 for a whole batch; a part of one split across workers starts
    /// later). Previews are grids of `cols` columns (0: `preview_columns(n)`); a part's
    /// preview is its band of the whole batch's grid, so the parts' bands stack into it.
    /// `from` (undefined for x_T): {image: RGBA bytes of one image of the model's size,
    /// strength} starts from that image (SDEdit), {toSeed, count} from the noise of image
    /// `first + i` of an interpolation of `count` from `seed` to `toSeed`. Returns the steps
    /// the run takes.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &self,
        key: &str,
        n: usize,
        sampler: &str,
        steps: usize,
        eta: f64,
        seed: u32,
        first: usize,
        cols: usize,
        from: JsValue,
    ) -> Result<usize, JsValue> {
        let mut inner = self.inner.borrow_mut();
        let sampler = sampler.parse().map_err(js_err)?;
        let m = inner.model(key)?;
        let start = start_of(&from, m, &inner.device)?;
        let request = SampleRequest { n, sampler, steps, eta, seed: seed as u64, first };
        let run = Denoiser::start(&m.unet, &m.scheduler, request, start).map_err(js_err)?;
        let total = run.total_steps();
        let cols = if cols == 0 { grid_cols(n) } else { cols };
        inner.run = Some((key.to_string(), run, Band { cols, top: first == 0 }));
        Ok(total)
    }

    /// Runs one denoising step and waits for the device. Resolves to {done, total} (plus
    /// `x_t` and `x0` frames when `preview`), or undefined when no run is left.
    pub fn step(&self, preview: bool) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let (x_t, x0, done, total, band) = {
                let mut guard = inner.borrow_mut();
                let Inner { models, run, .. } = &mut *guard;
                let Some((key, run, band)) = run.as_mut() else { return Ok(JsValue::UNDEFINED) };
                let Some(m) = models.get(key) else { return Ok(JsValue::UNDEFINED) };
                let Some(x0) = run.step(&m.unet, &m.scheduler) else { return Ok(JsValue::UNDEFINED) };
                (run.sample(), x0, run.steps_done(), run.total_steps(), *band)
            };
            let out = Object::new();
            set(&out, "done", done as u32);
            set(&out, "total", total as u32);
            if preview {
                let (xt, shape) = read(x_t).await?;
                set(&out, "x_t", band.frame(&xt, shape));
                let (x0, shape) = read(x0).await?;
                set(&out, "x0", band.frame(&x0, shape));
            } else {
                // Wait for this step's work, so progress and cancel follow the device.
                read(x_t.narrow(0, 0, 1).narrow(2, 0, 1).narrow(3, 0, 1)).await?;
            }
            Ok(out.into())
        })
    }

    /// The finished images: {width, height, images: [RGBA per image]}.
    pub fn result(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let x = {
                let guard = inner.borrow();
                let (_, run, _) = guard.run.as_ref().ok_or_else(|| js_err("no run to read"))?;
                if !run.is_done() {
                    return Err(js_err(format!(
                        "the run is at step {} of {}",
                        run.steps_done(),
                        run.total_steps()
                    )));
                }
                run.sample()
            };
            let (data, shape) = read(x).await?;
            let images = Array::new();
            for i in 0..shape[0] {
                images.push(&rgba(&to_pixels(&data, shape, i)));
            }
            let out = Object::new();
            set(&out, "width", shape[3] as u32);
            set(&out, "height", shape[2] as u32);
            set(&out, "images", images);
            Ok(out.into())
        })
    }

    /// Drops the current run.
    pub fn cancel(&self) {
        self.inner.borrow_mut().run = None;
    }
}
