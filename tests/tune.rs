//! Fine-tuning (the browser's panel, run natively here): a few Adam steps on four drawings
//! lower the loss on them, the base model is left alone, and bad requests are refused.

#![cfg(not(target_family = "wasm"))]

mod common;
#[path = "common/drawings.rs"]
mod drawings;

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use drawings::drawings;
use ddpm_web::files::load_model;
use ddpm_web::images::from_rgba;
use ddpm_web::train::loss;
use ddpm_web::tune::Tuner;


#[test]
fn twenty_steps_on_four_drawings_lower_the_loss_and_leave_the_base_alone() {
    let device = Device::flex();
    let model = load_model(&tiny_dir(), &device).unwrap();
    let images = from_rgba(&drawings(), 4, [1, 16, 16]).unwrap();
    assert_eq!((images[0], images[4]), (1.0, -1.0));
    let x0 = Tensor::<4>::from_data(TensorData::new(images.clone(), [4, 1, 16, 16]), &device);
    let eps = tensor4(&vectors("inputs.safetensors")["x"], &device).narrow(0, 0, 1).repeat_dim(0, 4);
    let probe = |m: &ddpm_web::UNet2DModel| to_vec(loss(m, &model.scheduler, x0.clone(), &[50, 300, 600, 900], eps.clone()).unwrap())[0];
    let before = probe(&model.unet);

    let mut tuner = Tuner::new(&model.unet, images, 2e-3, 0).unwrap();
    for _ in 0..20 {
        assert!(to_vec(tuner.step(&model.scheduler, 4).unwrap())[0].is_finite());
    }
    assert_eq!(tuner.steps(), 20);
    let tuned = tuner.model().unwrap();
    let after = probe(&tuned);
    assert!(after < 0.8 * before, "loss on fixed (t, eps) went from {before} to {after}");
    assert_eq!(probe(&model.unet), before, "the base model changed");
}

#[test]
fn bad_fine_tuning_requests_are_refused_with_the_reason() {
    let model = load_model(&tiny_dir(), &Device::flex()).unwrap();
    let err = |e: ddpm_web::Error| e.to_string();
    assert!(err(from_rgba(&[0; 100], 1, [1, 16, 16]).unwrap_err()).contains("need 1024 bytes, got 100"));
    assert!(err(Tuner::new(&model.unet, vec![0.0; 300], 1e-4, 0).err().unwrap()).contains("not a whole number of images"));
    assert!(err(Tuner::new(&model.unet, vec![0.0; 256], 0.5, 0).err().unwrap()).contains("learning rate"));
    let mut tuner = Tuner::new(&model.unet, vec![0.0; 256], 1e-4, 0).unwrap();
    assert!(err(tuner.step(&model.scheduler, 1000).err().unwrap()).contains("batch must be 1 to 64"));
}
