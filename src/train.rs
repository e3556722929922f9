//! Training, Algorithm 1: x_0 ~ data, t ~ Uniform{0..T-1}, eps ~ N(0, I),
//! a gradient step on || eps - eps_theta(sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, t) ||^2.
//! The same `Trainer::step` serves the CLI and the browser's fine-tuning.

use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::Prediction;
use crate::error::{Error, Result};
use crate::noise::extend_normal;
use crate::sampler::Scheduler;
use crate::unet::UNet2DModel;

/// The loss of Algorithm 1 for given t and eps: mean squared error against the target of the
/// scheduler's prediction type (eps; x_0 for `sample`; v = sqrt(ab) eps - sqrt(1 - ab) x_0).
pub fn loss(unet: &UNet2DModel, scheduler: &Scheduler, x0: Tensor<4>, t: &[usize], eps: Tensor<4>) -> Result<Tensor<1>> {
    let x_t = scheduler.schedule.add_noise(x0.clone(), eps.clone(), t)?;
    let t_f: Vec<f32> = t.iter().map(|t| *t as f32).collect();
    let pred = unet.forward(x_t, &t_f);
    let target = match scheduler.config.prediction_type {
        Prediction::Epsilon => eps,
        Prediction::Sample => x0,
        Prediction::VPrediction => {
            let zeros = x0.zeros_like();
            // v = sqrt(ab) eps - sqrt(1 - ab) x_0: add_noise with (eps, -x_0) in place of (x_0, eps)
            scheduler.schedule.add_noise(eps, zeros - x0, t)?
        }
    };
    Ok((pred - target).square().mean())
}

/// Adam (PyTorch's defaults: betas 0.9/0.999, eps 1e-8) with linear warm-up, and the
/// host-side random stream that draws t and eps.
pub struct Trainer {
    optim: ModuleOptimizer,
    rng: ChaCha8Rng,
    pub lr: f64,
    pub warmup: usize,
    pub step: usize,
}

impl Trainer {
    pub fn new(lr: f64, warmup: usize, seed: u64) -> Self {
        Trainer {
            optim: AdamConfig::new().with_epsilon(1e-8).init(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            lr,
            warmup,
            step: 0,
        }
    }

    /// The learning rate of the next step: lr * min(1, (step + 1) / warmup).
    pub fn current_lr(&self) -> f64 {
        if self.warmup == 0 { self.lr } else { self.lr * ((self.step + 1) as f64 / self.warmup as f64).min(1.0) }
    }

    /// One step of Algorithm 1 on the batch `x0` ([N, C, H, W] in [-1, 1]). The model must live
    /// on an autodiff device. Returns the updated model and the loss (not read back).
    pub fn step(&mut self, unet: UNet2DModel, scheduler: &Scheduler, x0: Tensor<4>) -> Result<(UNet2DModel, Tensor<1>)> {
        let dims = x0.dims();
        if dims[1..] != unet.sample_shape()[..] {
            return Err(Error::Request(format!(
                "training batch has images of shape {:?}, the model takes {:?}",
                &dims[1..],
                unet.sample_shape()
            )));
        }
        let t_max = scheduler.config.num_train_timesteps;
        let t: Vec<usize> = (0..dims[0]).map(|_| self.rng.random_range(0..t_max)).collect();
        let mut eps = Vec::with_capacity(dims.iter().product());
        extend_normal(&mut self.rng, dims.iter().product(), &mut eps);
        let eps = Tensor::<4>::from_data(TensorData::new(eps, dims), &x0.device());
        let loss = loss(&unet, scheduler, x0, &t, eps)?;
        let grads = GradientsParams::from_grads(loss.backward(), &unet);
        let lr = self.current_lr();
        let unet = self.optim.step(lr, unet, grads);
        self.step += 1;
        Ok((unet, loss.detach()))
    }
}
