//! Native wgpu: the UNet matches diffusers, and Adam steps land where flex's do. `make test`
//! installs Mesa's Vulkan driver (lavapipe, a software adapter), so this runs without a GPU too.

#![cfg(not(target_family = "wasm"))]

mod common;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use ddpm_web::files::load_model;
use ddpm_web::train::Trainer;

/// The tiny model's output on the parity input after `steps` Adam steps on four bar images.
fn output_after_training(device: &Device, steps: usize) -> Vec<f32> {
    let train_device = device.clone().autodiff();
    let mut model = load_model(&tiny_dir(), &train_device).expect("tiny model loads");
    let bars: Vec<f32> = (0..4 * 256).map(|i| if (i % 16) / 4 == i / 256 { 1.0 } else { -1.0 }).collect();
    let x0 = Tensor::<4>::from_data(TensorData::new(bars, [4, 1, 16, 16]), &train_device);
    let mut trainer = Trainer::new(1e-3, 0, 0);
    for _ in 0..steps {
        model.unet = trainer.step(model.unet, &model.scheduler, x0.clone()).expect("a training step").0;
    }
    let inputs = vectors("inputs.safetensors");
    to_vec(model.unet.valid().forward(tensor4(&inputs["x"], device), &inputs["t"].data))
}

#[test]
fn wgpu_matches_diffusers_and_trains_like_flex() {
    let gpu = Device::wgpu_options().init().unwrap_or_else(|e| {
        panic!("no wgpu adapter ({e}): install a Vulkan driver (`make test` installs Mesa's mesa-vulkan-drivers)")
    });
    let untrained = output_after_training(&gpu, 0);
    let err = max_abs_diff(&untrained, &vectors("expected.safetensors")["unet_out"].data);
    assert!(err <= 1e-4, "wgpu unet_out: max abs error {err}");

    let on_cpu = output_after_training(&Device::flex(), 5);
    let on_gpu = output_after_training(&gpu, 5);
    let moved = max_abs_diff(&on_cpu, &untrained);
    let apart = max_abs_diff(&on_gpu, &on_cpu);
    assert!(moved > 1e-3, "5 Adam steps barely changed the output ({moved})");
    assert!(apart < 1e-2 * moved, "after 5 Adam steps wgpu is {apart} from flex; the steps moved the output by {moved}");
}
