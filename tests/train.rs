//! Algorithm 1: the loss falls when training on a tiny set.

#![cfg(not(target_family = "wasm"))]

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use ddpm_web::files::load_model;
use ddpm_web::train::{Trainer, loss};

#[test]
fn adam_steps_lower_the_loss_on_four_images() {
    let device = Device::flex().autodiff();
    let mut model = load_model(&tiny_dir(), &device).unwrap();
    // Four 16x16 "images": bars at different places, in [-1, 1].
    let mut data = vec![-1.0f32; 4 * 256];
    for i in 0..4 {
        for y in 0..16 {
            for x in 4 * i..4 * i + 3 {
                data[i * 256 + y * 16 + x] = 1.0;
            }
        }
    }
    let x0 = Tensor::<4>::from_data(TensorData::new(data, [4, 1, 16, 16]), &device);
    let eps = tensor4(&vectors("inputs.safetensors")["x"], &device).narrow(0, 0, 1).repeat_dim(0, 4);
    let probe_t = [50, 300, 600, 900];
    let scheduler = model.scheduler.clone();
    let probe = |m: &ddpm_web::UNet2DModel| to_vec(loss(m, &scheduler, x0.clone(), &probe_t, eps.clone()).unwrap())[0];
    let before = probe(&model.unet);
    let mut trainer = Trainer::new(2e-3, 5, 0);
    for _ in 0..30 {
        let (unet, l) = trainer.step(model.unet, &model.scheduler, x0.clone()).unwrap();
        assert!(to_vec(l)[0].is_finite());
        model.unet = unet;
    }
    let after = probe(&model.unet);
    assert!(after < 0.7 * before, "loss on fixed (t, eps) fell from {before} to {after}");
    assert_eq!(trainer.step, 30);
}

#[test]
fn ema_decay_warms_up_as_diffusers_ema_model() {
    use ddpm_web::train::ema_decay;
    // diffusers EMAModel.get_decay(optimization_step) with decay=0.999, update_after_step=0.
    assert_eq!(ema_decay(0.999, 1), 0.0);
    assert!((ema_decay(0.999, 2) - 2.0 / 11.0).abs() < 1e-12);
    assert!((ema_decay(0.999, 100) - 100.0 / 109.0).abs() < 1e-12);
    assert_eq!(ema_decay(0.999, 20_000), 0.999);
}
