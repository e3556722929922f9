//! `explore::forward_view`, what `<ddpm-forward>` shows: at t = 0 x_t is x_0, at t = T it is
//! noise, x_t is the closed form of the forward process, and the predicted x_0 is the formula's.

#![cfg(not(target_family = "wasm"))]

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use ddpm_web::explore::forward_view;
use ddpm_web::native::files::load_model;

/// Four 16x16 bar images in [-1, 1], as the tiny model's inputs are.
fn bars(device: &Device) -> Tensor<4> {
    let v: Vec<f32> = (0..4 * 256).map(|i| if (i % 16) / 4 == i / 256 { 1.0 } else { -1.0 }).collect();
    Tensor::from_data(TensorData::new(v, [4, 1, 16, 16]), device)
}

#[test]
fn forward_view_follows_the_closed_form_from_data_to_noise() {
    let device = Device::flex();
    let model = load_model(&tiny_dir(), &device).unwrap();
    let x0 = to_vec(bars(&device));
    let t_max = model.scheduler.schedule.len();

    let at0 = forward_view(&model, bars(&device), 0, 5).unwrap();
    assert_eq!(to_vec(at0.x_t), x0, "t = 0 is x_0 itself");
    assert_eq!((at0.sqrt_alpha_bar, at0.sqrt_one_minus_alpha_bar), (1.0, 0.0));
    assert!(at0.snr.is_infinite());

    let view = forward_view(&model, bars(&device), 500, 5).unwrap();
    let alpha_bar = model.scheduler.schedule.alpha_bar[499];
    assert_eq!(view.sqrt_alpha_bar, alpha_bar.sqrt());
    assert!((view.snr - alpha_bar / (1.0 - alpha_bar)).abs() < 1e-6);
    let (x_t, eps, eps_hat, x0_hat) =
        (to_vec(view.x_t), to_vec(view.eps), to_vec(view.eps_hat), to_vec(view.x0_hat));
    let (a, b) = (alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt());
    let closed: Vec<f32> = x0.iter().zip(&eps).map(|(x, e)| a * x + b * e).collect();
    assert!(max_abs_diff(&x_t, &closed) < 1e-5, "x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps");
    let implied: Vec<f32> = x_t.iter().zip(&eps_hat).map(|(x, e)| (x - b * e) / a).collect();
    assert!(
        max_abs_diff(&x0_hat, &implied) < 1e-4,
        "x0_hat = (x_t - sqrt(1 - alpha_bar) eps_hat) / sqrt(alpha_bar)"
    );
    // The same seed draws the same eps; another seed another.
    assert_eq!(to_vec(forward_view(&model, bars(&device), 500, 5).unwrap().eps), eps);
    assert_ne!(to_vec(forward_view(&model, bars(&device), 500, 6).unwrap().eps), eps);

    let noise = to_vec(forward_view(&model, bars(&device), t_max, 5).unwrap().x_t);
    let mean = noise.iter().sum::<f32>() / noise.len() as f32;
    let std = (noise.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / noise.len() as f32).sqrt();
    assert!(mean.abs() < 0.1 && (std - 1.0).abs() < 0.1, "t = T is noise: mean {mean}, std {std}");

    let err =
        forward_view(&model, bars(&device), t_max + 1, 5).err().expect("t past T is refused").to_string();
    assert!(err.contains("t must be a step from 0 to T = 1000, got 1001"), "{err}");
    let wrong = Tensor::<4>::zeros([1, 3, 16, 16], &device);
    assert!(forward_view(&model, wrong, 10, 5).is_err(), "an image of the wrong channels is refused");
}
