//! Algorithm 1: the loss falls when training on a tiny set.

#![cfg(not(target_family = "wasm"))]

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use ddpm_web::native::files::load_model;
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
    let probe = |m: &ddpm_web::UNet2DModel| {
        to_vec(loss(m, &scheduler, x0.clone(), &probe_t, eps.clone()).unwrap())[0]
    };
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

#[test]
fn learning_rate_warms_up_then_falls_to_zero_along_a_cosine() {
    use ddpm_web::train::Trainer;
    let at = |trainer: &mut Trainer, step: usize| {
        trainer.step = step;
        trainer.current_lr()
    };
    let mut plain = Trainer::new(2e-4, 500, 0);
    assert!((at(&mut plain, 0) - 2e-4 / 500.0).abs() < 1e-15);
    assert_eq!(at(&mut plain, 20_000), 2e-4);
    // Decay over steps 1000..2000: the full rate before, half at the middle, 0 at the last step.
    let mut decayed = Trainer::new(2e-4, 500, 0).with_decay(1000, 2000);
    assert_eq!(at(&mut decayed, 999), 2e-4);
    assert!((at(&mut decayed, 1499) - 1e-4).abs() < 1e-12);
    assert!(at(&mut decayed, 1999).abs() < 1e-18);
    assert!(at(&mut decayed, 1200) > at(&mut decayed, 1201));
}

/// Our flat Adam against burn's per-tensor `Adam` on the same gradients: the same parameters
/// after each step, and each resumes from the other's saved state (old training states were
/// written by burn's).
#[test]
fn flat_adam_matches_burns_adam_and_shares_its_saved_state() {
    use burn::optim::{AdamConfig, GradientsParams, OptimizerRecord};
    use ddpm_web::train::adam::Adam;
    use ddpm_web::train::flat;

    let device = Device::flex().autodiff();
    let model = load_model(&tiny_dir(), &device).unwrap();
    let x0 = tensor4(&vectors("inputs.safetensors")["x"], &device);
    let eps = x0.clone().flip([3]);
    let t: Vec<usize> = (0..x0.dims()[0]).map(|i| 100 + 250 * i).collect();
    let grads = |unet: &ddpm_web::UNet2DModel| {
        let l = loss(unet, &model.scheduler, x0.clone(), &t, eps.clone()).unwrap();
        GradientsParams::from_grads(l.backward(), unet)
    };
    let (mut ours, mut theirs) = (model.unet.clone(), model.unet.clone());
    let (mut adam, mut burns) = (Adam::default(), AdamConfig::new().with_epsilon(1e-8).init());
    let dir = tempfile::tempdir().unwrap();
    for step in 0..4 {
        let lr = 1e-3 * (step + 1) as f64;
        let (g, h) = (grads(&ours), grads(&theirs));
        ours = adam.step(lr, ours.clone(), flat::gradients(&ours, &g));
        theirs = burns.step(lr, theirs, h);
        let (a, b) = (params(&ours), params(&theirs));
        assert!(max_abs_diff(&a, &b) <= 1e-7, "step {step}: parameters differ by {}", max_abs_diff(&a, &b));
        match step {
            // burn's state -> ours
            1 => {
                let path = dir.path().join("burn.bin");
                burns.to_record().save(&path).unwrap();
                ours = theirs.clone();
                adam = Adam::load(&ours, &path, &device.clone().inner()).unwrap();
            }
            // ours -> burn's
            2 => {
                let path = dir.path().join("ours.bin");
                adam.save(&ours, &path).unwrap();
                theirs = ours.clone();
                burns = AdamConfig::new()
                    .with_epsilon(1e-8)
                    .init()
                    .load_record(OptimizerRecord::load(&path).unwrap());
            }
            _ => {}
        }
    }
}

/// Every float parameter's values, in visit order.
fn params(unet: &ddpm_web::UNet2DModel) -> Vec<f32> {
    use burn::module::{Module, ModuleVisitor, Param};
    struct Values(Vec<f32>);
    impl ModuleVisitor for Values {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.extend(to_vec(param.val()));
        }
    }
    let mut values = Values(vec![]);
    unet.visit(&mut values);
    values.0
}

/// A saved optimizer state that belongs to another model is refused with the file and the
/// tensor named, not loaded into the wrong parameters.
#[test]
fn adam_state_of_another_model_is_refused() {
    use ddpm_web::train::adam::Adam;
    use ddpm_web::train::flat;

    let device = Device::flex().autodiff();
    let mut model = load_model(&tiny_dir(), &device).unwrap();
    let x0 = tensor4(&vectors("inputs.safetensors")["x"], &device);
    let t: Vec<usize> = (0..x0.dims()[0]).map(|i| 100 + 250 * i).collect();
    let l = loss(&model.unet, &model.scheduler, x0.clone(), &t, x0.clone().flip([3])).unwrap();
    let grads = burn::optim::GradientsParams::from_grads(l.backward(), &model.unet);
    let mut adam = Adam::default();
    model.unet = adam.step(1e-3, model.unet.clone(), flat::gradients(&model.unet, &grads));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("optimizer.bin");
    adam.save(&model.unet, &path).unwrap();
    // The same model with its ids: loads. A model loaded afresh has other parameter ids.
    assert!(Adam::load(&model.unet, &path, &device.clone().inner()).is_ok());
    let other = load_model(&tiny_dir(), &device).unwrap();
    let err = Adam::load(&other.unet, &path, &device.clone().inner()).err().expect("refused").to_string();
    assert!(
        err.contains("optimizer.bin") && err.contains("momentum.moment_1") && err.contains("another model"),
        "{err}"
    );
    let err = Adam::load(&model.unet, &dir.path().join("missing.bin"), &device.clone().inner())
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("missing.bin"), "{err}");
}

/// The flat EMA: decay 0 copies the weights; otherwise ema <- d ema + (1 - d) theta per element;
/// `weights` puts the average back into a model of the same config.
#[test]
fn ema_blends_each_weight() {
    use ddpm_web::train::Ema;

    let device = Device::flex();
    let a = load_model(&tiny_dir(), &device).unwrap().unet;
    let b = burn::module::Module::map(a.clone(), &mut Shift);
    let mut ema = Ema::new(&a);
    ema.update(&b, 0.75);
    let got = params(&ema.weights(a.clone()));
    let want: Vec<f32> = params(&a).iter().zip(params(&b)).map(|(x, y)| 0.75 * x + 0.25 * y).collect();
    assert!(max_abs_diff(&got, &want) < 1e-6, "{}", max_abs_diff(&got, &want));
    ema.update(&b, 0.0);
    assert_eq!(params(&ema.weights(a)), params(&b));
}

/// Adds 1 to every weight.
struct Shift;

impl burn::module::ModuleMapper for Shift {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        param.map(|t| t.add_scalar(1.0))
    }
}
