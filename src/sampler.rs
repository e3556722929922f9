//! The reverse process: diffusers' DDPMScheduler.step (Algorithm 2) and DDIMScheduler.step
//! (Song et al. 2021, eq. 12), and one sampling loop over either.
//! Scalars are computed on the host; tensors stay on the device (no read back inside a step).

use burn::tensor::Tensor;

use crate::config::{Prediction, SchedulerConfig, Spacing, VarianceType};
use crate::error::{Error, Result};
use crate::noise::Noise;
use crate::schedule::Schedule;
use crate::unet::UNet2DModel;

/// Largest batch one request may ask for: beyond it the activations alone reach gigabytes.
pub const MAX_BATCH: usize = 256;
/// Images x height x width of one request (e.g. 64 images of 256x256), checked before x_T is drawn.
pub const MAX_PIXELS: usize = 1 << 22;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerKind {
    /// Ancestral sampling, Algorithm 2.
    Ddpm,
    /// Deterministic at eta = 0; any number of steps.
    Ddim,
}

impl std::str::FromStr for SamplerKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "ddpm" => Ok(SamplerKind::Ddpm),
            "ddim" => Ok(SamplerKind::Ddim),
            _ => Err(Error::Request(format!("unknown sampler \"{s}\" (expected ddpm or ddim)"))),
        }
    }
}

/// The output of one `step()`: x_{t-1} and the predicted x_0 it went through.
pub struct StepOutput {
    pub prev_sample: Tensor<4>,
    pub pred_x0: Tensor<4>,
}

#[derive(Debug, Clone)]
pub struct Scheduler {
    pub config: SchedulerConfig,
    pub schedule: Schedule,
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Self {
        let schedule = Schedule::new(&config);
        Scheduler { config, schedule }
    }

    fn t_max(&self) -> usize {
        self.config.num_train_timesteps
    }

    /// The timesteps of an `n`-step run, as diffusers' `set_timesteps(n)` makes them.
    pub fn timesteps(&self, n: usize) -> Result<Vec<usize>> {
        let t_max = self.t_max();
        if n == 0 || n > t_max {
            return Err(Error::Request(format!(
                "steps must be between 1 and num_train_timesteps ({t_max}), got {n}"
            )));
        }
        let offset = self.config.steps_offset;
        let ts: Vec<i64> =
            match self.config.timestep_spacing {
                Spacing::Leading => {
                    let ratio = t_max / n;
                    (0..n).rev().map(|i| (i * ratio + offset) as i64).collect()
                }
                Spacing::Trailing => {
                    let ratio = t_max as f64 / n as f64;
                    (0..n).map(|i| (t_max as f64 - i as f64 * ratio).round() as i64 - 1).collect()
                }
                Spacing::Linspace => (0..n)
                    .rev()
                    .map(|i| {
                        if n == 1 {
                            0
                        } else {
                            (i as f64 * (t_max - 1) as f64 / (n - 1) as f64).round() as i64
                        }
                    })
                    .collect(),
            };
        ts.into_iter()
            .map(|t| {
                usize::try_from(t).ok().filter(|t| *t < t_max).ok_or_else(|| {
                    Error::Request(format!("timestep {t} (steps_offset {offset}) falls outside 0..{t_max}"))
                })
            })
            .collect()
    }

    /// x_0 and eps from the model output, by prediction type; x_0 clipped when `clip_sample`.
    fn predict(&self, model_output: Tensor<4>, x_t: Tensor<4>, alpha_bar: f32) -> (Tensor<4>, Tensor<4>) {
        let (a, b) = (alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt());
        let (x0, eps) = match self.config.prediction_type {
            // x_0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar), eq. (*) solved for x_0
            Prediction::Epsilon => {
                let x0 = (x_t - model_output.clone().mul_scalar(b)).div_scalar(a);
                (x0, model_output)
            }
            Prediction::Sample => {
                let eps = (x_t - model_output.clone().mul_scalar(a)).div_scalar(b);
                (model_output, eps)
            }
            // v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0 (Salimans & Ho 2022)
            Prediction::VPrediction => {
                let x0 = x_t.clone().mul_scalar(a) - model_output.clone().mul_scalar(b);
                let eps = model_output.mul_scalar(a) + x_t.mul_scalar(b);
                (x0, eps)
            }
        };
        let x0 = if self.config.clip_sample {
            let r = self.config.clip_sample_range;
            x0.clamp(-r, r)
        } else {
            x0
        };
        (x0, eps)
    }

    /// DDPMScheduler.step: x_{t-1} = mu~_t(x_t, x_0) + sigma_t z, z = 0 at t = 0 (Algorithm 2, eq. 7).
    /// `prev_t` is the next timestep of the run (t - 1 for the full chain, -1 at the end).
    pub fn ddpm_step(
        &self,
        model_output: Tensor<4>,
        t: usize,
        prev_t: i64,
        x_t: Tensor<4>,
        z: Option<Tensor<4>>,
    ) -> StepOutput {
        let s = &self.schedule;
        let (x0, _) = self.predict(model_output, x_t.clone(), s.alpha_bar[t]);
        let (c0, ct) = s.posterior_mean_coefs(t, prev_t);
        let mut prev = x0.clone().mul_scalar(c0) + x_t.mul_scalar(ct);
        if let (true, Some(z)) = (t > 0, z) {
            let variance = match self.config.variance_type {
                VarianceType::FixedSmall => s.posterior_variance(t, prev_t),
                VarianceType::FixedLarge => s.step_beta(t, prev_t),
            };
            prev = prev + z.mul_scalar(variance.sqrt());
        }
        StepOutput { prev_sample: prev, pred_x0: x0 }
    }

    /// DDIMScheduler.step with `prev_t = t - T / n`:
    /// x_prev = sqrt(alpha_bar_prev) x_0 + sqrt(1 - alpha_bar_prev - sigma^2) eps + sigma z (Song et al., eq. 12).
    pub fn ddim_step(
        &self,
        model_output: Tensor<4>,
        t: usize,
        prev_t: i64,
        x_t: Tensor<4>,
        eta: f64,
        z: Option<Tensor<4>>,
    ) -> StepOutput {
        let s = &self.schedule;
        let ab_t = s.alpha_bar[t];
        let ab_prev = if prev_t >= 0 || self.config.set_alpha_to_one {
            s.alpha_bar_or_one(prev_t)
        } else {
            s.alpha_bar[0]
        };
        let (x0, eps) = self.predict(model_output, x_t, ab_t);
        // sigma_t(eta) = eta sqrt((1 - alpha_bar_prev)/(1 - alpha_bar_t)) sqrt(1 - alpha_bar_t/alpha_bar_prev), eq. 16
        let variance = (1.0 - ab_prev) / (1.0 - ab_t) * (1.0 - ab_t / ab_prev);
        let sigma = eta as f32 * variance.sqrt();
        let dir = (1.0 - ab_prev - sigma * sigma).max(0.0).sqrt();
        let mut prev = x0.clone().mul_scalar(ab_prev.sqrt()) + eps.mul_scalar(dir);
        if let (true, Some(z)) = (eta > 0.0, z) {
            prev = prev + z.mul_scalar(sigma);
        }
        StepOutput { prev_sample: prev, pred_x0: x0 }
    }
}

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct SampleRequest {
    pub n: usize,
    pub sampler: SamplerKind,
    pub steps: usize,
    pub eta: f64,
    pub seed: u64,
    /// Which of the seed's images come first: image i of this run is image `first + i` of
    /// the seed (0 for a whole run; a part of a batch split across workers starts later).
    pub first: usize,
}

impl SampleRequest {
    fn check(&self, [_, h, w]: [usize; 3]) -> Result<()> {
        if self.n == 0 || self.n > MAX_BATCH {
            return Err(Error::Request(format!("n must be between 1 and {MAX_BATCH}, got {}", self.n)));
        }
        if self.n * h * w > MAX_PIXELS {
            return Err(Error::Request(format!(
                "{} images of {h}x{w} are {} pixels, over the limit of {MAX_PIXELS} per request: ask for fewer images",
                self.n,
                self.n * h * w
            )));
        }
        if !(0.0..=1.0).contains(&self.eta) {
            return Err(Error::Request(format!("eta must be between 0 and 1, got {}", self.eta)));
        }
        Ok(())
    }
}

/// The reverse chain as a state machine: one `step()` per UNet call, so a caller can show
/// progress, read previews (async on the web) and cancel between steps.
pub struct Denoiser {
    request: SampleRequest,
    timesteps: Vec<usize>,
    index: usize,
    noise: Noise,
    x: Tensor<4>,
}

impl Denoiser {
    /// Draws x_T ~ N(0, I) and prepares the timesteps.
    pub fn new(unet: &UNet2DModel, scheduler: &Scheduler, request: SampleRequest) -> Result<Self> {
        request.check(unet.sample_shape())?;
        let timesteps = scheduler.timesteps(request.steps)?;
        let mut noise = Noise::new(request.seed, request.first, request.n);
        let x = noise.draw(unet.sample_shape(), &unet.device());
        Ok(Denoiser { request, timesteps, index: 0, noise, x })
    }

    pub fn total_steps(&self) -> usize {
        self.timesteps.len()
    }

    pub fn steps_done(&self) -> usize {
        self.index
    }

    pub fn is_done(&self) -> bool {
        self.index >= self.timesteps.len()
    }

    /// The current x_t (x_0 once done).
    pub fn sample(&self) -> Tensor<4> {
        self.x.clone()
    }

    /// One denoising step with the model the chain was made for; returns the predicted x_0
    /// of this step, or None when done.
    pub fn step(&mut self, unet: &UNet2DModel, scheduler: &Scheduler) -> Option<Tensor<4>> {
        let t = *self.timesteps.get(self.index)?;
        let t_max = scheduler.config.num_train_timesteps;
        let eps = unet.forward(self.x.clone(), &vec![t as f32; self.request.n]);
        let shape = unet.sample_shape();
        let device = self.x.device();
        let out = match self.request.sampler {
            SamplerKind::Ddpm => {
                let prev_t = self.timesteps.get(self.index + 1).map_or(-1, |p| *p as i64);
                let z = (t > 0).then(|| self.noise.draw(shape, &device));
                scheduler.ddpm_step(eps, t, prev_t, self.x.clone(), z)
            }
            SamplerKind::Ddim => {
                let prev_t = t as i64 - (t_max / self.timesteps.len()) as i64;
                let z = (self.request.eta > 0.0).then(|| self.noise.draw(shape, &device));
                scheduler.ddim_step(eps, t, prev_t, self.x.clone(), self.request.eta, z)
            }
        };
        self.x = out.prev_sample;
        self.index += 1;
        Some(out.pred_x0)
    }
}

/// Progress of a sampling run: step `done` of `total`; previews when asked for.
pub struct Progress<'p> {
    pub done: usize,
    pub total: usize,
    pub x_t: Option<&'p Tensor<4>>,
    pub pred_x0: Option<&'p Tensor<4>>,
}

/// The whole reverse chain. `preview_every` = k gives x_t and x_0 to `progress` every k steps
/// (0 = never); `cancel` is checked between steps.
pub fn sample(
    unet: &UNet2DModel,
    scheduler: &Scheduler,
    request: SampleRequest,
    preview_every: usize,
    mut progress: impl FnMut(Progress),
    cancel: impl Fn() -> bool,
) -> Result<Tensor<4>> {
    let mut chain = Denoiser::new(unet, scheduler, request)?;
    let total = chain.total_steps();
    while let Some(pred_x0) = chain.step(unet, scheduler) {
        let done = chain.steps_done();
        let show = preview_every > 0 && (done % preview_every == 0 || done == total);
        let x_t = chain.sample();
        progress(Progress { done, total, x_t: show.then_some(&x_t), pred_x0: show.then_some(&pred_x0) });
        if cancel() && !chain.is_done() {
            return Err(Error::Cancelled);
        }
    }
    Ok(chain.sample())
}
