//! In the browser (`wasm-pack test --headless --chrome`): UNet parity with diffusers on burn's
//! CPU backend and on WebGPU, seeded sampling is reproducible, a cancelled run stops, fine-tuning
//! lowers the loss on both backends, and exported weights load back to the same outputs.

#![cfg(target_family = "wasm")]

use std::cell::OnceCell;

use burn::tensor::{Device, Tensor, TensorData};
use ddpm_web::model::{Model, ModelSource};
use ddpm_web::images::from_rgba;
use ddpm_web::sampler::{Denoiser, SampleRequest, SamplerKind};
use ddpm_web::train::loss;
use ddpm_web::tune::Tuner;
use ddpm_web::web::Engine;
use ddpm_web::weights::read_safetensors;
use js_sys::{Array, Promise, Reflect, Uint8Array};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

#[path = "common/drawings.rs"]
mod drawings;
use drawings::drawings;

wasm_bindgen_test_configure!(run_in_browser);

const CONFIG: &str = include_str!("data/tiny/config.json");
const SCHEDULER: &str = include_str!("data/tiny/scheduler_config.json");
const WEIGHTS: &[u8] = include_bytes!("data/tiny/diffusion_pytorch_model.safetensors");
const INPUTS: &[u8] = include_bytes!("data/tiny/inputs.safetensors");
const EXPECTED: &[u8] = include_bytes!("data/tiny/expected.safetensors");

thread_local! {
    static WEBGPU: OnceCell<Option<Device>> = const { OnceCell::new() };
}

/// The WebGPU device, initialised once per page; None when the browser has no adapter.
async fn webgpu() -> Option<Device> {
    if let Some(d) = WEBGPU.with(|c| c.get().cloned()) {
        return d;
    }
    let d = Device::wgpu_options().init_async().await.ok();
    WEBGPU.with(|c| c.get_or_init(|| d.clone()).clone())
}

fn load(device: &Device) -> Model {
    let src = ModelSource { config: ("config.json", CONFIG), scheduler: Some(("scheduler_config.json", SCHEDULER)), weights: ("weights", WEIGHTS) };
    Model::load(src, device).expect("tiny model loads")
}

async fn read<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data_async().await.expect("read back").try_into_vec::<f32>().expect("f32")
}

async fn unet_parity(device: &Device) {
    let model = load(device);
    let inputs = read_safetensors("inputs", INPUTS, true).unwrap();
    let expected = read_safetensors("expected", EXPECTED, true).unwrap();
    let x = &inputs["x"];
    let x = Tensor::<4>::from_data(TensorData::new(x.data.clone(), x.shape.clone()), device);
    let out = read(model.unet.forward(x, &inputs["t"].data)).await;
    let want = &expected["unet_out"].data;
    let err = out.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(err <= 1e-4, "unet_out: max abs error {err}");
}

#[wasm_bindgen_test]
async fn unet_matches_diffusers_on_cpu() {
    unet_parity(&Device::flex()).await;
}

#[wasm_bindgen_test]
async fn unet_matches_diffusers_on_webgpu() {
    let device = webgpu().await.expect("a WebGPU adapter (run Chromium with --enable-unsafe-webgpu)");
    unet_parity(&device).await;
}

async fn ddim(device: &Device, seed: u64) -> Vec<f32> {
    let m = load(device);
    let request = SampleRequest { n: 2, sampler: SamplerKind::Ddim, steps: 5, eta: 0.0, seed };
    let mut run = Denoiser::new(&m.unet, &m.scheduler, request).unwrap();
    while run.step(&m.unet, &m.scheduler).is_some() {}
    read(run.sample()).await
}

#[wasm_bindgen_test]
async fn a_seed_reproduces_its_images() {
    let cpu = Device::flex();
    let (a, b, c) = (ddim(&cpu, 7).await, ddim(&cpu, 7).await, ddim(&cpu, 8).await);
    assert_eq!(a, b, "same seed, same images");
    assert_ne!(a, c, "another seed, other images");
    if let Some(gpu) = webgpu().await {
        let g = ddim(&gpu, 7).await;
        let err = a.iter().zip(&g).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(err <= 1e-3, "the seed gives the same images on WebGPU as on the CPU (max diff {err})");
    }
}

async fn engine(prefer_gpu: bool) -> Engine {
    let engine = Engine::create(prefer_gpu).await;
    engine
        .load_model("base", "config.json", CONFIG, "scheduler_config.json", Some(SCHEDULER.into()), "weights", WEIGHTS)
        .unwrap();
    engine
}

async fn wait(p: Promise) -> JsValue {
    JsFuture::from(p).await.expect("the engine's promise resolves")
}

#[wasm_bindgen_test]
async fn a_cancelled_run_takes_no_more_steps() {
    let engine = engine(false).await;
    engine.start("base", 1, "ddpm", 1000, 0.0, 3).unwrap();
    for _ in 0..2 {
        assert!(!wait(engine.step(false)).await.is_undefined(), "a step ran");
    }
    engine.cancel();
    assert!(wait(engine.step(false)).await.is_undefined(), "no step runs after cancel");
    assert!(JsFuture::from(engine.result()).await.is_err(), "no result after cancel");
}


async fn tuning_lowers_the_loss(device: &Device) {
    let model = load(device);
    let images = from_rgba(&drawings(), 4, [1, 16, 16]).unwrap();
    let x0 = Tensor::<4>::from_data(TensorData::new(images.clone(), [4, 1, 16, 16]), device);
    let inputs = read_safetensors("inputs", INPUTS, true).unwrap();
    let x = &inputs["x"];
    let eps = Tensor::<4>::from_data(TensorData::new(x.data[..256].to_vec(), [1, 1, 16, 16]), device).repeat_dim(0, 4);
    let t = [50, 300, 600, 900];
    let before = read(loss(&model.unet, &model.scheduler, x0.clone(), &t, eps.clone()).unwrap()).await[0];
    let mut tuner = Tuner::new(&model.unet, images, 2e-3, 0).unwrap();
    for _ in 0..20 {
        // Reading each loss back also yields to the browser between steps.
        assert!(read(tuner.step(&model.scheduler, 4).unwrap()).await[0].is_finite());
    }
    let after = read(loss(&tuner.model().unwrap(), &model.scheduler, x0, &t, eps).unwrap()).await[0];
    assert!(after < 0.8 * before, "loss on fixed (t, eps) went from {before} to {after}");
}

#[wasm_bindgen_test]
async fn twenty_adam_steps_lower_the_loss_on_cpu() {
    tuning_lowers_the_loss(&Device::flex()).await;
}

#[wasm_bindgen_test]
async fn twenty_adam_steps_lower_the_loss_on_webgpu() {
    tuning_lowers_the_loss(&webgpu().await.expect("a WebGPU adapter")).await;
}

/// The RGBA bytes of every image a DDIM-3 run of the model under `key` makes.
async fn images(engine: &Engine, key: &str) -> Vec<Vec<u8>> {
    engine.start(key, 2, "ddim", 3, 0.0, 11).unwrap();
    while !wait(engine.step(false)).await.is_undefined() {}
    let out = wait(engine.result()).await;
    let list: Array = Reflect::get(&out, &"images".into()).unwrap().into();
    list.iter().map(|a| Uint8Array::from(a).to_vec()).collect()
}

#[wasm_bindgen_test]
async fn exported_weights_load_back_to_identical_outputs() {
    for prefer_gpu in [false, true] {
        let engine = engine(prefer_gpu).await;
        engine.tune_start("base", &drawings(), 4, 1e-3, 1).unwrap();
        assert!(wait(engine.tune_step(4, false)).await.is_undefined(), "no read back unless asked");
        let loss = wait(engine.tune_step(4, true)).await.as_f64().expect("the loss is read back");
        assert!(loss.is_finite());
        engine.tune_save("tuned").unwrap();
        engine.tune_end();
        let bytes = Uint8Array::from(wait(engine.export_weights("tuned")).await).to_vec();
        engine.load_weights("again", "base", "exported.safetensors", &bytes).unwrap();
        let again = Uint8Array::from(wait(engine.export_weights("again")).await).to_vec();
        assert!(bytes == again, "{}: the re-exported file is byte-identical", engine.backend());
        let (tuned, reloaded, base) = (images(&engine, "tuned").await, images(&engine, "again").await, images(&engine, "base").await);
        assert_eq!(tuned, reloaded, "{}: same outputs after export and import", engine.backend());
        assert_ne!(tuned, base, "{}: the tuned model differs from the base", engine.backend());
    }
}
