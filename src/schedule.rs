//! The noise schedule: beta_t, alpha_t, alpha_bar_t and the posterior q(x_{t-1} | x_t, x_0).
//! Indexing is diffusers' (t = 0..T-1); the paper's t is our t + 1.
//! Arrays are f32, computed as diffusers computes them (betas in f32, products accumulated wider).

use burn::tensor::{Tensor, TensorData};

use crate::config::{BetaSchedule, SchedulerConfig};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Schedule {
    pub beta: Vec<f32>,
    pub alpha: Vec<f32>,
    pub alpha_bar: Vec<f32>,
}

/// torch.linspace in f32.
fn linspace(start: f64, end: f64, n: usize) -> Vec<f32> {
    (0..n).map(|i| (start + (end - start) * i as f64 / (n - 1) as f64) as f32).collect()
}

/// betas_for_alpha_bar with the cosine alpha_bar of Nichol & Dhariwal (2021), capped at 0.999.
fn cosine_betas(n: usize) -> Vec<f32> {
    let alpha_bar = |t: f64| ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
    (0..n)
        .map(|i| {
            let (t1, t2) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
        })
        .collect()
}

impl Schedule {
    pub fn new(cfg: &SchedulerConfig) -> Self {
        let t = cfg.num_train_timesteps;
        let beta = match &cfg.beta_schedule {
            BetaSchedule::Linear => linspace(cfg.beta_start, cfg.beta_end, t),
            BetaSchedule::ScaledLinear => {
                linspace(cfg.beta_start.sqrt(), cfg.beta_end.sqrt(), t).into_iter().map(|b| b * b).collect()
            }
            BetaSchedule::SquaredcosCapV2 => cosine_betas(t),
            BetaSchedule::Trained(b) => b.iter().map(|x| *x as f32).collect(),
        };
        let alpha: Vec<f32> = beta.iter().map(|b| 1.0 - b).collect();
        let mut prod = 1.0f64;
        let alpha_bar = alpha
            .iter()
            .map(|a| {
                prod *= *a as f64;
                prod as f32
            })
            .collect();
        Schedule { beta, alpha, alpha_bar }
    }

    pub fn len(&self) -> usize {
        self.beta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.beta.is_empty()
    }

    /// alpha_bar at `t`, with alpha_bar_{-1} := 1.
    pub fn alpha_bar_or_one(&self, t: i64) -> f32 {
        if t < 0 { 1.0 } else { self.alpha_bar[t as usize] }
    }

    /// The beta of a step from `t` to `prev_t`: 1 - alpha_bar_t / alpha_bar_prev (beta_t itself when
    /// prev_t = t - 1, up to f32 rounding; DDPM with fewer steps skips several at once).
    pub fn step_beta(&self, t: usize, prev_t: i64) -> f32 {
        1.0 - self.alpha_bar[t] / self.alpha_bar_or_one(prev_t)
    }

    /// The posterior variance of a step from `t` to `prev_t`, beta~ = (1 - alpha_bar_prev) /
    /// (1 - alpha_bar_t) * beta (eq. 7), clamped at 1e-20: diffusers' `_get_variance`. Scalars are
    /// f32 throughout, as diffusers computes them.
    pub fn posterior_variance(&self, t: usize, prev_t: i64) -> f32 {
        let (ab, ab_prev) = (self.alpha_bar[t], self.alpha_bar_or_one(prev_t));
        ((1.0 - ab_prev) / (1.0 - ab) * self.step_beta(t, prev_t)).max(1e-20)
    }

    /// log-SNR_t = ln(alpha_bar_t / (1 - alpha_bar_t)), the signal-to-noise ratio of x_t in nats,
    /// over t = 0..T-1 (computed in f64 from the f32 alpha_bar).
    pub fn log_snr(&self) -> Vec<f32> {
        self.alpha_bar.iter().map(|&ab| (ab as f64 / (1.0 - ab as f64)).ln() as f32).collect()
    }

    /// beta~_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t over t = 0..T-1: the variance
    /// of DDPM's `fixed_small` (`posterior_variance(t, t - 1)`, as diffusers' `_get_variance`;
    /// 1e-20 at t = 0). `fixed_large` is beta_t itself.
    pub fn beta_tilde(&self) -> Vec<f32> {
        (0..self.len()).map(|t| self.posterior_variance(t, t as i64 - 1)).collect()
    }

    /// Coefficients of x_0 and x_t in the posterior mean mu~(x_t, x_0) of a step from `t` to
    /// `prev_t` (eq. 7), as diffusers' `DDPMScheduler.step` computes them.
    pub fn posterior_mean_coefs(&self, t: usize, prev_t: i64) -> (f32, f32) {
        let (ab, ab_prev) = (self.alpha_bar[t], self.alpha_bar_or_one(prev_t));
        let alpha = ab / ab_prev;
        let c0 = ab_prev.sqrt() * (1.0 - alpha) / (1.0 - ab);
        let ct = alpha.sqrt() * (1.0 - ab_prev) / (1.0 - ab);
        (c0, ct)
    }

    /// The forward process, eq. (*): x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,
    /// one timestep per batch item.
    pub fn add_noise(&self, x0: Tensor<4>, eps: Tensor<4>, t: &[usize]) -> Result<Tensor<4>> {
        let n = x0.dims()[0];
        if t.len() != n || eps.dims() != x0.dims() {
            return Err(Error::Request(format!(
                "add_noise: {} timesteps and noise of shape {:?} for x_0 of shape {:?}",
                t.len(),
                eps.dims(),
                x0.dims()
            )));
        }
        if let Some(bad) = t.iter().find(|t| **t >= self.len()) {
            return Err(Error::Request(format!("add_noise: timestep {bad} is outside 0..{}", self.len())));
        }
        let device = x0.device();
        let column = |f: &dyn Fn(f64) -> f64| {
            let v: Vec<f32> = t.iter().map(|t| f(self.alpha_bar[*t] as f64) as f32).collect();
            Tensor::<4>::from_data(TensorData::new(v, [n, 1, 1, 1]), &device)
        };
        let signal = column(&|ab| ab.sqrt());
        let noise = column(&|ab| (1.0 - ab).sqrt());
        Ok(x0 * signal + eps * noise)
    }
}
