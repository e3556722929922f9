//! Training, Algorithm 1: x_0 ~ data, t ~ Uniform{0..T-1}, eps ~ N(0, I),
//! a gradient step on || eps - eps_theta(sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, t) ||^2.
//! The same `Trainer::step` serves the CLI and the browser's fine-tuning.

pub mod adam;
pub mod flat;
pub mod tune;

use std::ops::Range;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::Prediction;
use crate::error::{Error, Result};
use crate::noise::extend_normal;
use crate::sampler::Scheduler;
use crate::unet::UNet2DModel;
use adam::Adam;
use flat::{Slices, layout};

/// The loss of Algorithm 1 for given t and eps: mean squared error against the target of the
/// scheduler's prediction type (eps; x_0 for `sample`; v = sqrt(ab) eps - sqrt(1 - ab) x_0).
pub fn loss(
    unet: &UNet2DModel,
    scheduler: &Scheduler,
    x0: Tensor<4>,
    t: &[usize],
    eps: Tensor<4>,
) -> Result<Tensor<1>> {
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

/// Adam (`crate::train::adam`) with linear warm-up, an optional cosine decay to zero, and the
/// host-side random stream that draws t and eps.
pub struct Trainer {
    pub adam: Adam,
    rng: ChaCha8Rng,
    pub lr: f64,
    pub warmup: usize,
    /// Steps `(start, end)` over which the learning rate falls from `lr` to 0 along half a cosine.
    pub decay: Option<(usize, usize)>,
    pub step: usize,
}

impl Trainer {
    /// Continues from a saved state: the optimizer's, the step, and the random stream's position.
    pub fn resume(mut self, adam: Adam, step: usize, rng_word_pos: u128) -> Self {
        self.adam = adam;
        self.step = step;
        self.rng.set_word_pos(rng_word_pos);
        self
    }

    pub fn rng_word_pos(&self) -> u128 {
        self.rng.get_word_pos()
    }

    pub fn new(lr: f64, warmup: usize, seed: u64) -> Self {
        Trainer {
            adam: Adam::default(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            lr,
            warmup,
            decay: None,
            step: 0,
        }
    }

    /// Lets the learning rate fall from `lr` at step `start` to 0 at step `end` along half a
    /// cosine: a small model's samples gain most in the last steps at a vanishing learning rate.
    pub fn with_decay(mut self, start: usize, end: usize) -> Self {
        self.decay = Some((start, end));
        self
    }

    /// The learning rate of the next step: lr * min(1, (step + 1) / warmup), times
    /// (1 + cos(pi * progress)) / 2 within the decay.
    pub fn current_lr(&self) -> f64 {
        let warm =
            if self.warmup == 0 { 1.0 } else { ((self.step + 1) as f64 / self.warmup as f64).min(1.0) };
        let cool = match self.decay {
            Some((start, end)) if end > start && self.step >= start => {
                let progress = ((self.step + 1 - start) as f64 / (end - start) as f64).min(1.0);
                (1.0 + (std::f64::consts::PI * progress).cos()) / 2.0
            }
            _ => 1.0,
        };
        self.lr * warm * cool
    }

    /// One step of Algorithm 1 on the batch `x0` ([N, C, H, W] in [-1, 1]). The model must live
    /// on an autodiff device. Returns the updated model and the loss (not read back).
    pub fn step(
        &mut self,
        unet: UNet2DModel,
        scheduler: &Scheduler,
        x0: Tensor<4>,
    ) -> Result<(UNet2DModel, Tensor<1>)> {
        let n = x0.dims()[0];
        let (grad, loss) = self.gradients(&unet, scheduler, x0, 0..n)?;
        Ok((self.apply(unet, grad), loss))
    }

    /// The gradient of Algorithm 1's loss on the rows `rows` of the batch `x0`, flat
    /// (`crate::train::flat`), weighted by their share of it, so that the gradients of a batch's shards
    /// sum to the batch's. t and eps are drawn for the whole batch: every shard of one batch draws
    /// the same.
    pub fn gradients(
        &mut self,
        unet: &UNet2DModel,
        scheduler: &Scheduler,
        x0: Tensor<4>,
        rows: Range<usize>,
    ) -> Result<(Tensor<1>, Tensor<1>)> {
        let dims = x0.dims();
        if dims[1..] != unet.sample_shape()[..] {
            return Err(Error::Request(format!(
                "training batch has images of shape {:?}, the model takes {:?}",
                &dims[1..],
                unet.sample_shape()
            )));
        }
        if rows.is_empty() || rows.end > dims[0] {
            return Err(Error::Request(format!("rows {rows:?} are not a part of a batch of {}", dims[0])));
        }
        let t_max = scheduler.config.num_train_timesteps;
        let t: Vec<usize> = (0..dims[0]).map(|_| self.rng.random_range(0..t_max)).collect();
        let per: usize = dims[1..].iter().product();
        let mut eps = Vec::with_capacity(dims[0] * per);
        extend_normal(&mut self.rng, dims[0] * per, &mut eps);
        let [_, c, h, w] = dims;
        let eps = TensorData::new(eps[rows.start * per..rows.end * per].to_vec(), [rows.len(), c, h, w]);
        let eps = Tensor::<4>::from_data(eps, &x0.device());
        let x0 = x0.narrow(0, rows.start, rows.len());
        let mut loss = loss(unet, scheduler, x0, &t[rows.clone()], eps)?;
        if rows.len() < dims[0] {
            loss = loss.mul_scalar(rows.len() as f64 / dims[0] as f64);
        }
        let grads = GradientsParams::from_grads(loss.backward(), unet);
        Ok((flat::gradients(unet, &grads), loss.detach()))
    }

    /// The Adam step (with warm-up) on the flat gradient of the loss.
    pub fn apply(&mut self, unet: UNet2DModel, grad: Tensor<1>) -> UNet2DModel {
        let lr = self.current_lr();
        let unet = self.adam.step(lr, unet, grad);
        self.step += 1;
        unet
    }
}

/// Each float parameter replaced by its slice of a flat vector.
struct Unflatten(Slices);

impl ModuleMapper for Unflatten {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let slices = &mut self.0;
        param.map(|old| slices.next(old.dims()))
    }
}

/// The EMA decay after `step` optimizer steps, as diffusers' `EMAModel` (no `use_ema_warmup`):
/// min(max, (1 + s) / (10 + s)) with s = step - 1, so the first update copies the weights and
/// early checkpoints carry little of the random initialisation.
pub fn ema_decay(max: f64, step: usize) -> f64 {
    if step <= 1 { 0.0 } else { max.min(step as f64 / (step + 9) as f64) }
}

/// Exponential moving average of the weights, ema <- decay ema + (1 - decay) theta, kept as one
/// flat vector in visit order (three element-wise ops a step, not three per parameter tensor), on
/// a plain (non-autodiff) device.
pub struct Ema(Tensor<1>);

impl Ema {
    /// Starts from `model`'s weights (on any device).
    pub fn new(model: &UNet2DModel) -> Ema {
        Ema(flat::weights(model))
    }

    pub fn update(&mut self, model: &UNet2DModel, decay: f64) {
        self.0 = self.0.clone().mul_scalar(decay) + flat::weights(model).mul_scalar(1.0 - decay);
    }

    /// `model` (a plain-device model of the same config) holding the averaged weights.
    pub fn weights(&self, model: UNet2DModel) -> UNet2DModel {
        model.map(&mut Unflatten(Slices::new(self.0.clone())))
    }
}

struct SetIds(std::vec::IntoIter<u64>);

impl ModuleMapper for SetIds {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let id = self.0.next().expect("one id per parameter");
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(ParamId::from(id), value, mapper)
    }
}

/// The parameters' ids in visit order (the optimizer state is keyed by them).
pub fn param_ids(model: &UNet2DModel) -> Vec<u64> {
    layout(model).into_iter().map(|(id, _)| id).collect()
}

/// Gives a freshly loaded model the ids a saved optimizer state refers to.
pub fn with_param_ids(model: UNet2DModel, ids: Vec<u64>) -> Result<UNet2DModel> {
    let have = param_ids(&model).len();
    if have != ids.len() {
        return Err(Error::Request(format!(
            "the saved training state has {} parameters, the model {have}",
            ids.len()
        )));
    }
    Ok(model.map(&mut SetIds(ids.into_iter())))
}
