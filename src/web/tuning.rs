//! Fine-tuning in the browser and moving weights in and out: the engine side of the page's
//! "Fine-tune" panel. The math is `crate::train::tune`; this file only converts and awaits.

use std::cell::RefCell;
use std::collections::BTreeMap;

use burn::tensor::Tensor;
use js_sys::{Float32Array, Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::{Engine, Inner, js_err, read};
use crate::images::from_rgba;
use crate::model::Model;
use crate::sampler::Scheduler;
use crate::train::tune::Tuner;
use crate::unet::UNet2DModel;
use crate::weights::{self, HostTensor, SaveDtype, named_tensors, to_safetensors};

/// What fine-tuning accepts (`crate::train::tune`), so that the page can say so before it asks:
/// `[most images, largest batch]`.
#[wasm_bindgen]
pub fn tune_limits() -> Vec<u32> {
    [crate::train::tune::MAX_IMAGES, crate::train::tune::MAX_BATCH].map(|v| v as u32).to_vec()
}

#[wasm_bindgen]
impl Engine {
    /// Starts fine-tuning a copy of the model under `base_key` on `n` RGBA images at the
    /// model's size (as a canvas gives them).
    pub fn tune_start(
        &self,
        base_key: &str,
        rgba: &[u8],
        n: usize,
        lr: f64,
        seed: u32,
    ) -> Result<(), JsValue> {
        let mut inner = self.inner.borrow_mut();
        let base = inner.model(base_key)?;
        let images = from_rgba(rgba, n, base.unet.sample_shape()).map_err(js_err)?;
        let tuner = Tuner::new(&base.unet, images, lr, seed as u64).map_err(js_err)?;
        inner.run = None;
        inner.tuner = Some((base_key.to_string(), tuner));
        Ok(())
    }

    /// One Adam step on `batch` images. Resolves to the loss when `read_loss` (a read back
    /// that also waits for the device), else to undefined.
    pub fn tune_step(&self, batch: usize, read_loss: bool) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let loss = with_tuner(&inner, |tuner, scheduler| tuner.step(scheduler, batch))?;
            if !read_loss {
                return Ok(JsValue::UNDEFINED);
            }
            let (loss, _) = read(loss).await?;
            Ok(JsValue::from_f64(loss[0] as f64))
        })
    }

    /// Shard `shard` of `shards` of the next step on `batch` images, when several workers share
    /// each step (www/engine/cpu-pool.js): resolves to [Float32Array gradient, loss], both weighted by
    /// the shard's share of the batch. Every worker then calls `tune_apply` with all the parts.
    pub fn tune_shard(&self, batch: usize, shard: usize, shards: usize) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let (grad, loss) = with_tuner(&inner, |tuner, scheduler| {
                tuner.shard_gradients(scheduler, batch, shard, shards)
            })?;
            let both = Tensor::cat(vec![grad, loss], 0);
            let (mut flat, _) = read(both).await?;
            let loss = flat.pop().unwrap_or(f32::NAN);
            Ok(js_sys::Array::of2(&Float32Array::from(&flat[..]), &JsValue::from_f64(loss as f64)).into())
        })
    }

    /// The Adam step on the sum of the shards' gradients `parts` (Float32Arrays, in shard order);
    /// returns the sum, which the other workers apply as their one part.
    pub fn tune_apply(&self, parts: js_sys::Array) -> Result<Float32Array, JsValue> {
        let parts = (parts.iter().enumerate())
            .map(|(i, p)| {
                p.dyn_into::<Float32Array>()
                    .map(|a| a.to_vec())
                    .map_err(|_| js_err(format!("gradient part {i} is not a Float32Array")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut inner = self.inner.borrow_mut();
        let (_, tuner) = inner.tuner.as_mut().ok_or_else(|| js_err("no fine-tuning in progress"))?;
        let total = tuner.apply(&parts).map_err(js_err)?;
        Ok(Float32Array::from(&total[..]))
    }

    /// Adam steps taken by the fine-tuning in progress (0 when none).
    pub fn tune_steps(&self) -> usize {
        self.inner.borrow().tuner.as_ref().map_or(0, |(_, t)| t.steps())
    }

    /// Keeps the weights reached so far under `key` (the base model's scheduler goes with them).
    pub fn tune_save(&self, key: &str) -> Result<(), JsValue> {
        let mut inner = self.inner.borrow_mut();
        let (base_key, tuner) = inner.tuner.as_ref().ok_or_else(|| js_err("no fine-tuning in progress"))?;
        let unet = tuner.model().map_err(js_err)?;
        let scheduler = inner.model(base_key)?.scheduler.clone();
        inner.models.insert(key.to_string(), Model { unet, scheduler });
        Ok(())
    }

    /// Ends fine-tuning (drops the optimizer state; saved weights stay).
    pub fn tune_end(&self) {
        self.inner.borrow_mut().tuner = None;
    }

    /// Loads a safetensors file of weights for the config of the model under `base_key` and
    /// keeps it under `key`.
    pub fn load_weights(
        &self,
        key: &str,
        base_key: &str,
        weights_name: &str,
        bytes: &[u8],
    ) -> Result<(), JsValue> {
        let mut inner = self.inner.borrow_mut();
        let base = inner.model(base_key)?;
        let empty = UNet2DModel::new(&base.unet.config, &inner.device);
        let unet = weights::load(empty, weights_name, bytes).map_err(js_err)?;
        let scheduler = base.scheduler.clone();
        inner.models.insert(key.to_string(), Model { unet, scheduler });
        Ok(())
    }

    /// The weights of the model under `key` as a diffusers safetensors file (f32), read back
    /// from the device in one piece.
    pub fn export_weights(&self, key: &str) -> Promise {
        let named = self.inner.borrow().model(key).map(|m| named_tensors(&m.unet));
        future_to_promise(async move {
            let named = named?;
            let (flat, _) = read(Tensor::cat(named.iter().map(|t| t.tensor.clone()).collect(), 0)).await?;
            let mut at = 0;
            let mut tensors = BTreeMap::new();
            for t in named {
                let len: usize = t.shape.iter().product();
                tensors.insert(t.key, HostTensor { shape: t.shape, data: flat[at..at + len].to_vec() });
                at += len;
            }
            let bytes = to_safetensors(&tensors, SaveDtype::F32).map_err(js_err)?;
            Ok(Uint8Array::from(&bytes[..]).into())
        })
    }
}

/// Runs `f` on the fine-tuning in progress and its base model's scheduler.
fn with_tuner<T>(
    inner: &RefCell<Inner>,
    f: impl FnOnce(&mut Tuner, &Scheduler) -> crate::Result<T>,
) -> Result<T, JsValue> {
    let mut guard = inner.borrow_mut();
    let Inner { models, tuner, .. } = &mut *guard;
    let (key, tuner) = tuner.as_mut().ok_or_else(|| js_err("no fine-tuning in progress"))?;
    let scheduler = &models.get(key.as_str()).ok_or_else(|| js_err("the base model was dropped"))?.scheduler;
    f(tuner, scheduler).map_err(js_err)
}
