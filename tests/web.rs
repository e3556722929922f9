//! In the browser (`wasm-pack test --headless --chrome`): UNet parity with diffusers on burn's
//! CPU backend and on WebGPU, seeded sampling is reproducible, a cancelled run stops, and the
//! warm-up runs where it should. (Fine-tuning: `tests/web_tune.rs`.)

#![cfg(target_family = "wasm")]

#[path = "common/web.rs"]
mod web;

use burn::tensor::{Device, Tensor, TensorData};
use ddpm_web::sampler::{Denoiser, SampleRequest, SamplerKind};
use ddpm_web::web::Engine;
use ddpm_web::weights::read_safetensors;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;
use web::*;

wasm_bindgen_test_configure!(run_in_browser);

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
    let request = SampleRequest { n: 2, sampler: SamplerKind::Ddim, steps: 5, eta: 0.0, seed, first: 0 };
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
    let engine = engine(false).await;
    engine.start("base", 1, "ddpm", 1000, 0.0, 3, 0, 0, wasm_bindgen::JsValue::UNDEFINED).unwrap();
    for _ in 0..2 {
        assert!(!wait(engine.step(false)).await.is_undefined(), "a step ran");
    }
    engine.cancel();
    assert!(wait(engine.step(false)).await.is_undefined(), "no step runs after cancel");
    assert!(JsFuture::from(engine.result()).await.is_err(), "no result after cancel");
}

#[wasm_bindgen_test]
async fn warm_compiles_on_webgpu_only_and_never_past_the_largest_buffer() {
    let (gpu, cpu) = (engine(true).await, engine(false).await);
    let warm = |e: &Engine, config: &str, max_buffer: f64| e.warm("config.json", config, max_buffer);
    let eps = js_sys::Float32Array::from(wait(warm(&gpu, CONFIG, f64::INFINITY)).await).to_vec();
    assert_eq!(eps.len(), 16 * 16, "the stand-in ran on WebGPU, one 16x16 image");
    assert!(eps.iter().all(|&v| v == 0.0), "zero weights predict zero noise");
    assert!(wait(warm(&cpu, CONFIG, f64::INFINITY)).await.is_undefined(), "nothing to compile on the CPU");
    // The tiny model's largest tensor at one image is 65,536 bytes (its attention's scores).
    assert!(wait(warm(&gpu, CONFIG, 65_535.0)).await.is_undefined(), "one image is over the buffer");
    let bad = JsFuture::from(warm(&gpu, r#"{"block_out_channels": "wide"}"#, f64::INFINITY)).await;
    let message = js_sys::Error::from(bad.expect_err("a bad config is refused")).message();
    assert!(String::from(message).contains("config.json"), "the error names the file");
}
