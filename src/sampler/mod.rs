//! The reverse process: a `Scheduler` (the model's schedule and prediction type), one file per
//! sampler behind the `Solver` trait (DDPM, Algorithm 2; DDIM; DPM-Solver++), and one sampling
//! loop over any of them, with progress, previews and cancel between steps.
//! Scalars are computed on the host; tensors stay on the device (no read back inside a step).

mod ddim;
mod ddpm;
mod dpm;

use burn::tensor::Tensor;

pub use ddim::Ddim;
pub use ddpm::Ddpm;
pub use dpm::DpmSolver;

use crate::config::{Prediction, SchedulerConfig, Spacing};
use crate::error::{Error, Result};
use crate::noise::{self, Noise};
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
    /// DPM-Solver++(2M): good images in 10-20 steps.
    DpmSolver,
    /// DPM-Solver++(2M) on Karras et al.'s sigmas.
    DpmSolverKarras,
}

impl SamplerKind {
    pub const ALL: [SamplerKind; 4] =
        [SamplerKind::Ddpm, SamplerKind::Ddim, SamplerKind::DpmSolver, SamplerKind::DpmSolverKarras];

    /// The name the CLI, the page and the JS API use.
    pub fn name(self) -> &'static str {
        match self {
            SamplerKind::Ddpm => "ddpm",
            SamplerKind::Ddim => "ddim",
            SamplerKind::DpmSolver => "dpm++",
            SamplerKind::DpmSolverKarras => "dpm++-karras",
        }
    }

    /// The sampler of a request, walking `steps` of the scheduler's timesteps.
    fn solver(self, scheduler: &Scheduler, steps: usize, eta: f64) -> Result<Box<dyn Solver>> {
        // DDPM's and DDIM's timesteps; the limits on `steps` they check hold for every sampler.
        let timesteps = scheduler.timesteps(steps)?;
        Ok(match self {
            SamplerKind::Ddpm => Box::new(Ddpm { timesteps }),
            SamplerKind::Ddim => Box::new(Ddim { timesteps, eta }),
            SamplerKind::DpmSolver => Box::new(DpmSolver::new(scheduler, steps, false)),
            SamplerKind::DpmSolverKarras => Box::new(DpmSolver::new(scheduler, steps, true)),
        })
    }
}

impl std::str::FromStr for SamplerKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.to_ascii_lowercase();
        SamplerKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<&str> = SamplerKind::ALL.iter().map(|k| k.name()).collect();
            Error::Request(format!("unknown sampler \"{s}\" (expected {})", names.join(", ")))
        })
    }
}

/// One way of walking the reverse process, in its own file: the timesteps the UNet is called at,
/// and the update from one to the next. The loop, previews and cancel are `Denoiser`'s.
pub trait Solver {
    fn timesteps(&self) -> &[usize];

    /// x at step `index + 1` and the predicted x_0, from the model's output at step `index`;
    /// `noise` draws fresh N(0, I) noise for samplers that add it.
    fn step(
        &mut self,
        scheduler: &Scheduler,
        index: usize,
        model_output: Tensor<4>,
        x_t: Tensor<4>,
        noise: &mut dyn FnMut() -> Tensor<4>,
    ) -> StepOutput;
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
        let (x0, eps) = self.predict_from(model_output, x_t, alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt());
        let x0 = if self.config.clip_sample {
            let r = self.config.clip_sample_range;
            x0.clamp(-r, r)
        } else {
            x0
        };
        (x0, eps)
    }

    /// x_0 and eps from the model output for x_t = a x_0 + b eps (a = sqrt(alpha_bar),
    /// b = sqrt(1 - alpha_bar)), by prediction type, unclipped.
    pub(crate) fn predict_from(
        &self,
        model_output: Tensor<4>,
        x_t: Tensor<4>,
        a: f32,
        b: f32,
    ) -> (Tensor<4>, Tensor<4>) {
        match self.config.prediction_type {
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
        }
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

/// Where a run starts.
#[derive(Debug, Clone, Default)]
#[allow(clippy::large_enum_variant, reason = "one per run, never stored in bulk")]
pub enum Start {
    /// x_T ~ N(0, I), each image from its own stream of the seed.
    #[default]
    Noise,
    /// Interpolation: image i is image i of a strip of `count` whose x_T moves from image 0 of
    /// the request's seed to image 0 of `to_seed` (`noise::slerp`). Steps that add noise draw it
    /// as a plain run of the seed does.
    Between { to_seed: u64, count: usize },
    /// SDEdit (Meng et al. 2022): `x0` ([1, C, H, W] in [-1, 1], one image for all) noised with
    /// each image's x_T to the timestep `strength` of the way back through the run's timesteps,
    /// and denoised from there, as diffusers' img2img pipelines do: strength 1 starts at the
    /// first timestep, strength 0 runs no step and gives x_0 back.
    Image { x0: Tensor<4>, strength: f64 },
}

/// The reverse chain as a state machine: one `step()` per UNet call, so a caller can show
/// progress, read previews (async on the web) and cancel between steps.
pub struct Denoiser {
    request: SampleRequest,
    solver: Box<dyn Solver>,
    /// The timesteps a start from an image leaves out.
    skip: usize,
    index: usize,
    noise: Noise,
    x: Tensor<4>,
}

impl Denoiser {
    /// Draws x_T ~ N(0, I) and prepares the timesteps.
    pub fn new(unet: &UNet2DModel, scheduler: &Scheduler, request: SampleRequest) -> Result<Self> {
        Self::start(unet, scheduler, request, Start::Noise)
    }

    /// Prepares the timesteps and the x a run starts from.
    pub fn start(
        unet: &UNet2DModel,
        scheduler: &Scheduler,
        request: SampleRequest,
        start: Start,
    ) -> Result<Self> {
        let shape = unet.sample_shape();
        request.check(shape)?;
        let solver = request.sampler.solver(scheduler, request.steps, request.eta)?;
        let device = unet.device();
        let mut noise = Noise::new(request.seed, request.first, request.n);
        // x_T ~ N(0, I): where a plain run starts, and the noise an image is noised with.
        let z = noise.draw(shape, &device);
        let (x, skip) = match start {
            Start::Noise => (z, 0),
            Start::Between { to_seed, count } => {
                if request.first + request.n > count {
                    return Err(Error::Request(format!(
                        "images {}..{} of an interpolation of {count}",
                        request.first,
                        request.first + request.n
                    )));
                }
                (noise::slerp(request.seed, to_seed, count, request.first, request.n, shape, &device), 0)
            }
            Start::Image { x0, strength } => {
                if !(0.0..=1.0).contains(&strength) {
                    return Err(Error::Request(format!("strength must be between 0 and 1, got {strength}")));
                }
                let [c, h, w] = shape;
                if x0.dims() != [1, c, h, w] {
                    return Err(Error::Request(format!(
                        "the image to start from has shape {:?}, the model's images [1, {c}, {h}, {w}]",
                        x0.dims()
                    )));
                }
                let ts = solver.timesteps();
                let skip = ts.len() - ((ts.len() as f64 * strength) as usize).min(ts.len());
                let x0 = x0.to_device(&device).repeat_dim(0, request.n);
                match ts.get(skip) {
                    Some(&t) => (scheduler.schedule.add_noise(x0, z, &vec![t; request.n])?, skip),
                    None => (x0, skip),
                }
            }
        };
        Ok(Denoiser { request, solver, skip, index: skip, noise, x })
    }

    pub fn total_steps(&self) -> usize {
        self.solver.timesteps().len() - self.skip
    }

    pub fn steps_done(&self) -> usize {
        self.index - self.skip
    }

    pub fn is_done(&self) -> bool {
        self.index >= self.solver.timesteps().len()
    }

    /// The current x_t (x_0 once done).
    pub fn sample(&self) -> Tensor<4> {
        self.x.clone()
    }

    /// One denoising step with the model the chain was made for; returns the predicted x_0
    /// of this step, or None when done.
    pub fn step(&mut self, unet: &UNet2DModel, scheduler: &Scheduler) -> Option<Tensor<4>> {
        let t = *self.solver.timesteps().get(self.index)?;
        let model_output = unet.forward(self.x.clone(), &vec![t as f32; self.request.n]);
        let (shape, device) = (unet.sample_shape(), self.x.device());
        let noise = &mut self.noise;
        let mut draw = || noise.draw(shape, &device);
        let out = self.solver.step(scheduler, self.index, model_output, self.x.clone(), &mut draw);
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

/// The whole reverse chain from x_T. `preview_every` = k gives x_t and x_0 to `progress` every k
/// steps (0 = never); `cancel` is checked between steps.
pub fn sample(
    unet: &UNet2DModel,
    scheduler: &Scheduler,
    request: SampleRequest,
    preview_every: usize,
    progress: impl FnMut(Progress),
    cancel: impl Fn() -> bool,
) -> Result<Tensor<4>> {
    sample_from(unet, scheduler, request, Start::Noise, preview_every, progress, cancel)
}

/// `sample` from `start`.
pub fn sample_from(
    unet: &UNet2DModel,
    scheduler: &Scheduler,
    request: SampleRequest,
    start: Start,
    preview_every: usize,
    mut progress: impl FnMut(Progress),
    cancel: impl Fn() -> bool,
) -> Result<Tensor<4>> {
    let mut chain = Denoiser::start(unet, scheduler, request, start)?;
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
