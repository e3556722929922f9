//! Fine-tuning in the browser, in a dedicated worker as the page runs it (a WebGPU training
//! step on SwiftShader keeps its thread busy for longer than the test driver waits for a page):
//! 20 Adam steps on 4 images lower the loss on the CPU and WebGPU's steps are the CPU's, exported
//! weights load back to identical outputs, and a step shared by two CPU engines is the step of one.

#![cfg(target_family = "wasm")]

#[path = "common/drawings.rs"]
mod drawings;
#[path = "common/web.rs"]
mod web;

use burn::tensor::{Device, Tensor, TensorData};
use ddpm_web::images::from_rgba;
use ddpm_web::train::loss;
use ddpm_web::train::tune::Tuner;
use ddpm_web::web::Engine;
use ddpm_web::weights::read_safetensors;
use drawings::drawings;
use js_sys::{Array, Reflect, Uint8Array};
use wasm_bindgen_test::*;
use web::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

/// The loss on fixed (t, eps) before and after `steps` Adam steps on `device` (seed 0, so the
/// same images, t and eps on every backend), and each step's loss, read back.
async fn tune(device: &Device, steps: usize) -> (f32, Vec<f32>, f32) {
    let model = load(device);
    let images = from_rgba(&drawings(), 4, [1, 16, 16]).unwrap();
    let x0 = Tensor::<4>::from_data(TensorData::new(images.clone(), [4, 1, 16, 16]), device);
    let inputs = read_safetensors("inputs", INPUTS, true).unwrap();
    let x = &inputs["x"];
    let eps = Tensor::<4>::from_data(TensorData::new(x.data[..256].to_vec(), [1, 1, 16, 16]), device)
        .repeat_dim(0, 4);
    let t = [50, 300, 600, 900];
    let before = read(loss(&model.unet, &model.scheduler, x0.clone(), &t, eps.clone()).unwrap()).await[0];
    let mut tuner = Tuner::new(&model.unet, images, 2e-3, 0).unwrap();
    let mut losses = Vec::with_capacity(steps);
    for _ in 0..steps {
        // Reading each loss back also yields to the browser between steps.
        losses.push(read(tuner.step(&model.scheduler, 4).unwrap()).await[0]);
    }
    let after = read(loss(&tuner.model().unwrap(), &model.scheduler, x0, &t, eps).unwrap()).await[0];
    (before, losses, after)
}

#[wasm_bindgen_test]
async fn twenty_adam_steps_lower_the_loss_on_cpu() {
    let (before, losses, after) = tune(&Device::flex(), 20).await;
    assert!(losses.iter().all(|l| l.is_finite()), "step losses {losses:?}");
    assert!(after < 0.8 * before, "loss on fixed (t, eps) went from {before} to {after}");
}

/// A training step on SwiftShader takes seconds, so WebGPU takes three steps and must take the
/// CPU's: with the test above, its steps lower the loss too.
#[wasm_bindgen_test]
async fn adam_steps_on_webgpu_are_the_steps_on_cpu() {
    let (before, losses, after) = tune(&webgpu().await.expect("a WebGPU adapter"), 3).await;
    let (cpu_before, cpu_losses, cpu_after) = tune(&Device::flex(), 3).await;
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * b.abs();
    assert!(close(before, cpu_before), "loss before: {before} on WebGPU, {cpu_before} on the CPU");
    for (step, (l, c)) in losses.iter().zip(&cpu_losses).enumerate() {
        assert!(close(*l, *c), "step {step}: loss {l} on WebGPU, {c} on the CPU");
    }
    assert!(close(after, cpu_after), "loss after: {after} on WebGPU, {cpu_after} on the CPU");
    // The steps moved the weights by far more than the tolerance, so the comparison says something.
    assert!((cpu_after - cpu_before).abs() > 1e-2 * cpu_before, "{cpu_before} -> {cpu_after}");
}

/// The RGBA bytes of every image a DDIM-3 run of the model under `key` makes.
async fn images(engine: &Engine, key: &str) -> Vec<Vec<u8>> {
    engine.start(key, 2, "ddim", 3, 0.0, 11, 0, 0, wasm_bindgen::JsValue::UNDEFINED).unwrap();
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
        let (tuned, reloaded, base) =
            (images(&engine, "tuned").await, images(&engine, "again").await, images(&engine, "base").await);
        assert_eq!(tuned, reloaded, "{}: same outputs after export and import", engine.backend());
        assert_ne!(tuned, base, "{}: the tuned model differs from the base", engine.backend());
    }
}

/// Two CPU engines sharing each step's batch (www/engine/cpu-pool.js) take the steps one engine takes.
#[wasm_bindgen_test]
async fn a_step_shared_by_two_engines_is_the_step_of_one() {
    let (one, host, helper) = (engine(false).await, engine(false).await, engine(false).await);
    for e in [&one, &host, &helper] {
        e.tune_start("base", &drawings(), 4, 1e-3, 5).unwrap();
    }
    for step in 0..3 {
        let alone = wait(one.tune_step(4, true)).await.as_f64().unwrap();
        let parts: Vec<Array> =
            vec![wait(host.tune_shard(4, 0, 2)).await.into(), wait(helper.tune_shard(4, 1, 2)).await.into()];
        let shared: f64 = parts.iter().map(|p| p.get(1).as_f64().unwrap()).sum();
        assert!((alone - shared).abs() < 1e-5 * alone, "step {step}: loss {shared} shared vs {alone} alone");
        let total = host.tune_apply(parts.iter().map(|p| p.get(0)).collect()).unwrap();
        helper.tune_apply(Array::of1(&total)).unwrap();
    }
    let err = host.tune_apply(Array::of1(&Uint8Array::new_with_length(3))).unwrap_err();
    assert!(format!("{err:?}").contains("gradient part 0 is not a Float32Array"), "{err:?}");
    for (e, key) in [(&one, "one"), (&host, "host"), (&helper, "helper")] {
        e.tune_save(key).unwrap();
    }
    let (alone, shared, other) =
        (images(&one, "one").await, images(&host, "host").await, images(&helper, "helper").await);
    assert_eq!(shared, other, "both shards' engines hold the same weights");
    let diff =
        alone.iter().flatten().zip(shared.iter().flatten()).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
    assert!(diff <= 2, "images of the shared and the lone steps differ by up to {diff} of 255");
}
