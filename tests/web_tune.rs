//! Fine-tuning in the browser, in a dedicated worker as the page runs it (a WebGPU training
//! step on SwiftShader keeps its thread busy for longer than the test driver waits for a page):
//! 20 Adam steps on 4 images lower the loss on both backends, and exported weights load back to
//! identical outputs.

#![cfg(target_family = "wasm")]

#[path = "common/drawings.rs"]
mod drawings;
#[path = "common/web.rs"]
mod web;

use burn::tensor::{Device, Tensor, TensorData};
use ddpm_web::images::from_rgba;
use ddpm_web::train::loss;
use ddpm_web::tune::Tuner;
use ddpm_web::web::Engine;
use ddpm_web::weights::read_safetensors;
use drawings::drawings;
use js_sys::{Array, Reflect, Uint8Array};
use wasm_bindgen_test::*;
use web::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

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
    engine.start(key, 2, "ddim", 3, 0.0, 11, 0, 0).unwrap();
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
