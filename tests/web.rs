//! In the browser (`wasm-pack test --headless --chrome`): UNet parity with diffusers on burn's
//! CPU backend and on WebGPU, seeded sampling is reproducible, and a cancelled run stops.

#![cfg(target_family = "wasm")]

use std::cell::OnceCell;

use burn::tensor::{Device, Tensor, TensorData};
use ddpm_web::model::{Model, ModelSource};
use ddpm_web::sampler::{Denoiser, SampleRequest, SamplerKind};
use ddpm_web::weights::read_safetensors;
use wasm_bindgen_test::*;

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

#[wasm_bindgen_test]
async fn a_cancelled_run_takes_no_more_steps() {
    let engine = ddpm_web::web::Engine::create(false).await;
    engine
        .load_model("config.json", CONFIG, "scheduler_config.json", Some(SCHEDULER.into()), "weights", WEIGHTS)
        .unwrap();
    engine.start(1, "ddpm", 1000, 0.0, 3).unwrap();
    for _ in 0..2 {
        let r = wasm_bindgen_futures::JsFuture::from(engine.step(false)).await.unwrap();
        assert!(!r.is_undefined(), "a step ran");
    }
    engine.cancel();
    let r = wasm_bindgen_futures::JsFuture::from(engine.step(false)).await.unwrap();
    assert!(r.is_undefined(), "no step runs after cancel");
    assert!(wasm_bindgen_futures::JsFuture::from(engine.result()).await.is_err(), "no result after cancel");
}
