//! Fine-tuning (the browser's panel, run natively here): a few Adam steps on four drawings
//! lower the loss on them, the base model is left alone, a step split across workers is the
//! same step, and bad requests are refused.

#![cfg(not(target_family = "wasm"))]

mod common;
#[path = "common/drawings.rs"]
mod drawings;

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use ddpm_web::images::from_rgba;
use ddpm_web::native::files::load_model;
use ddpm_web::train::loss;
use ddpm_web::train::tune::Tuner;
use drawings::drawings;

#[test]
fn twenty_steps_on_four_drawings_lower_the_loss_and_leave_the_base_alone() {
    let device = Device::flex();
    let model = load_model(&tiny_dir(), &device).unwrap();
    let images = from_rgba(&drawings(), 4, [1, 16, 16]).unwrap();
    assert_eq!((images[0], images[4]), (1.0, -1.0));
    let x0 = Tensor::<4>::from_data(TensorData::new(images.clone(), [4, 1, 16, 16]), &device);
    let eps = tensor4(&vectors("inputs.safetensors")["x"], &device).narrow(0, 0, 1).repeat_dim(0, 4);
    let probe = |m: &ddpm_web::UNet2DModel| {
        to_vec(loss(m, &model.scheduler, x0.clone(), &[50, 300, 600, 900], eps.clone()).unwrap())[0]
    };
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

/// The browser's fine-tuning on several CPU workers: each takes a shard of every step's batch.
#[test]
fn shards_of_a_step_sum_to_the_whole_step() {
    let device = Device::flex();
    let model = load_model(&tiny_dir(), &device).unwrap();
    let images = from_rgba(&drawings(), 4, [1, 16, 16]).unwrap();
    let whole = |steps: usize| {
        let mut tuner = Tuner::new(&model.unet, images.clone(), 2e-3, 7).unwrap();
        let losses: Vec<f32> =
            (0..steps).map(|_| to_vec(tuner.step(&model.scheduler, 4).unwrap())[0]).collect();
        (losses, params(&tuner.model().unwrap()))
    };
    let sharded = |steps: usize, shards: usize| {
        let mut team: Vec<Tuner> =
            (0..shards).map(|_| Tuner::new(&model.unet, images.clone(), 2e-3, 7).unwrap()).collect();
        let mut losses = vec![];
        for _ in 0..steps {
            let mut parts = vec![];
            let mut loss = 0.0;
            for (k, tuner) in team.iter_mut().enumerate() {
                let (grad, part_loss) = tuner.shard_gradients(&model.scheduler, 4, k, shards).unwrap();
                parts.push(to_vec(grad));
                loss += to_vec(part_loss)[0];
            }
            let total = team[0].apply(&parts).unwrap();
            for tuner in &mut team[1..] {
                tuner.apply(std::slice::from_ref(&total)).unwrap();
            }
            losses.push(loss);
        }
        let first = params(&team[0].model().unwrap());
        for tuner in &team[1..] {
            assert_eq!(params(&tuner.model().unwrap()), first, "the workers' weights drifted apart");
        }
        (losses, first)
    };
    let gradient = |shards: usize| {
        let mut team: Vec<Tuner> =
            (0..shards).map(|_| Tuner::new(&model.unet, images.clone(), 2e-3, 7).unwrap()).collect();
        let parts: Vec<Vec<f32>> = (team.iter_mut().enumerate())
            .map(|(k, tuner)| to_vec(tuner.shard_gradients(&model.scheduler, 4, k, shards).unwrap().0))
            .collect();
        team[0].apply(&parts).unwrap()
    };
    let g = gradient(1);
    let scale = g.iter().fold(0.0, |m: f32, x| m.max(x.abs()));
    let (losses, weights) = whole(3);
    for shards in [2, 3, 4] {
        let diff = max_abs_diff(&g, &gradient(shards));
        assert!(
            diff <= 1e-5 * scale,
            "{shards} shards: the gradient differs by {diff} (largest entry {scale})"
        );
        let (split_losses, split_weights) = sharded(3, shards);
        for (a, b) in losses.iter().zip(&split_losses) {
            assert!(
                (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                "{shards} shards: loss {b} vs {a} in one piece"
            );
        }
        // Adam moves a weight by up to lr per step whatever its gradient's size, so where a
        // gradient is near 0 rounding shows more: 1e-4 is 2% of what 3 steps at lr 2e-3 allow
        let diff = max_abs_diff(&weights, &split_weights);
        assert!(diff < 1e-4, "{shards} shards: weights differ by up to {diff} from the steps in one piece");
    }
    let mut tuner = Tuner::new(&model.unet, images, 2e-3, 7).unwrap();
    let err = tuner.apply(&[vec![0.0; 3]]).unwrap_err().to_string();
    assert!(err.contains("gradient part 0 has 3 values, the model"), "{err}");
    let err = tuner.shard_gradients(&model.scheduler, 2, 0, 3).err().unwrap().to_string();
    assert!(err.contains("each shard needs at least one image"), "{err}");
}

/// Every parameter of `unet`, flattened.
fn params(unet: &ddpm_web::UNet2DModel) -> Vec<f32> {
    ddpm_web::weights::named_tensors(unet).into_iter().flat_map(|t| to_vec(t.tensor)).collect()
}

#[test]
fn bad_fine_tuning_requests_are_refused_with_the_reason() {
    let model = load_model(&tiny_dir(), &Device::flex()).unwrap();
    let err = |e: ddpm_web::Error| e.to_string();
    assert!(err(from_rgba(&[0; 100], 1, [1, 16, 16]).unwrap_err()).contains("need 1024 bytes, got 100"));
    assert!(
        err(Tuner::new(&model.unet, vec![0.0; 300], 1e-4, 0).err().unwrap())
            .contains("not a whole number of images")
    );
    assert!(err(Tuner::new(&model.unet, vec![0.0; 256], 0.5, 0).err().unwrap()).contains("learning rate"));
    let mut tuner = Tuner::new(&model.unet, vec![0.0; 256], 1e-4, 0).unwrap();
    assert!(err(tuner.step(&model.scheduler, 1000).err().unwrap()).contains("batch must be 1 to 64"));
}
