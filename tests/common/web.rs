//! Shared by the browser tests (`tests/web.rs`, `tests/web_tune.rs`): the tiny parity model
//! embedded in the wasm, the WebGPU device, async reads and the Engine.

#![allow(dead_code)]

use burn::tensor::{Device, Tensor};
use ddpm_web::model::{Model, ModelSource};
use ddpm_web::web::Engine;
use js_sys::Promise;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

pub const CONFIG: &str = include_str!("../data/tiny/config.json");
pub const SCHEDULER: &str = include_str!("../data/tiny/scheduler_config.json");
pub const WEIGHTS: &[u8] = include_bytes!("../data/tiny/diffusion_pytorch_model.safetensors");
pub const INPUTS: &[u8] = include_bytes!("../data/tiny/inputs.safetensors");
pub const EXPECTED: &[u8] = include_bytes!("../data/tiny/expected.safetensors");

/// The WebGPU device the Engines of this page share; None when the browser has no adapter.
pub async fn webgpu() -> Option<Device> {
    ddpm_web::web::webgpu_device().await.ok()
}

pub fn load(device: &Device) -> Model {
    let src = ModelSource {
        config: ("config.json", CONFIG),
        scheduler: Some(("scheduler_config.json", SCHEDULER)),
        weights: ("weights", WEIGHTS),
    };
    Model::load(src, device).expect("tiny model loads")
}

pub async fn read<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data_async().await.expect("read back").try_into_vec::<f32>().expect("f32")
}

/// An Engine with the tiny model under "base", on WebGPU when `prefer_gpu` (the test browser has
/// an adapter, so falling back to the CPU there is a failure).
pub async fn engine(prefer_gpu: bool) -> Engine {
    let engine = Engine::create(prefer_gpu).await;
    assert_eq!(engine.is_gpu(), prefer_gpu, "backend {}: {:?}", engine.backend(), engine.gpu_note());
    engine
        .load_model(
            "base",
            "config.json",
            CONFIG,
            "scheduler_config.json",
            Some(SCHEDULER.into()),
            "weights",
            WEIGHTS,
        )
        .unwrap();
    engine
}

pub async fn wait(p: Promise) -> JsValue {
    JsFuture::from(p).await.expect("the engine's promise resolves")
}
