//! DPM-Solver++(2M) (Lu et al. 2022): diffusers' `DPMSolverMultistepScheduler` with its defaults
//! (algorithm_type dpmsolver++, solver_order 2, solver_type midpoint, lower_order_final,
//! final_sigmas_type zero, timestep_spacing linspace), optionally on Karras et al.'s sigmas.
//!
//! It works in sigma = sqrt((1 - alpha_bar) / alpha_bar): x_t = alpha_t (x_0 + sigma eps) with
//! alpha_t = 1 / sqrt(sigma^2 + 1), and lambda = log(alpha_t / sigma_t), half the log-SNR. Each
//! step is the exact solution of the probability-flow ODE for an x_0 prediction that is constant
//! (first order) or linear in lambda (second order, from the previous step's x_0).

use burn::tensor::Tensor;

use super::{Scheduler, Solver, StepOutput};
use crate::config::BetaSchedule;

pub struct DpmSolver {
    timesteps: Vec<usize>,
    /// One sigma per timestep, then 0 (the final step lands on x_0).
    sigmas: Vec<f32>,
    /// The previous step's x_0 prediction, for the second order.
    previous: Option<Tensor<4>>,
}

/// alpha_t, sigma_t and lambda of a sigma, in f32 as diffusers computes them.
fn alpha_sigma_lambda(sigma: f32) -> (f32, f32, f32) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    let sigma_t = sigma * alpha;
    (alpha, sigma_t, alpha.ln() - sigma_t.ln())
}

impl DpmSolver {
    /// The timesteps and sigmas of an `n`-step run, as diffusers' `set_timesteps(n)` makes them.
    pub fn new(scheduler: &Scheduler, n: usize, karras: bool) -> Self {
        let alpha_bar = &scheduler.schedule.alpha_bar;
        let t_max = alpha_bar.len();
        let all: Vec<f32> = alpha_bar.iter().map(|ab| ((1.0 - ab) / ab).sqrt()).collect();
        // np.linspace(0, T - 1, n + 1).round()[::-1][:-1]
        let step = (t_max - 1) as f64 / n as f64;
        let spaced = |i: usize| (i as f64 * step).round_ties_even() as usize;
        let (timesteps, mut sigmas): (Vec<usize>, Vec<f32>) = if karras {
            karras_sigmas(&all, n, scheduler.config.beta_schedule == BetaSchedule::SquaredcosCapV2)
        } else {
            (1..=n).rev().map(|i| (spaced(i), all[spaced(i)])).unzip()
        };
        sigmas.push(0.0);
        DpmSolver { timesteps, sigmas, previous: None }
    }

    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }
}

/// Karras et al.'s (2022) sigmas between the schedule's extremes, rho = 7, in f64 as numpy does,
/// and the (fractional, here rounded) timestep of each, interpolated in log sigma.
fn karras_sigmas(all: &[f32], n: usize, cosine: bool) -> (Vec<usize>, Vec<f32>) {
    let (sigma_min, sigma_max) = (all[0] as f64, all[all.len() - 1] as f64);
    let rho = 7.0;
    let (min_inv, max_inv) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
    let log_sigmas: Vec<f32> = all.iter().map(|s| s.ln()).collect();
    (0..n)
        .map(|i| {
            // np.linspace(0, 1, n)
            let ramp = if n == 1 { 0.0 } else { i as f64 * (1.0 / (n - 1) as f64) };
            let sigma = (max_inv + ramp * (min_inv - max_inv)).powf(rho);
            let t = sigma_to_t(sigma, &log_sigmas);
            // diffusers rounds the timesteps, except for the cosine schedule, whose are truncated
            let t = if cosine { t.trunc() } else { t.round_ties_even() };
            (t as usize, sigma as f32)
        })
        .unzip()
}

/// diffusers' `_sigma_to_t`: the timestep whose log sigma is `sigma`'s, linear between neighbours.
fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    let last = log_sigmas.len() - 2;
    // the last index whose log sigma is at most log_sigma (0 when none is), at most len - 2
    let low = log_sigmas.iter().rposition(|l| log_sigma - *l as f64 >= 0.0).unwrap_or(0).min(last);
    let (lo, hi) = (log_sigmas[low], log_sigmas[low + 1]);
    // numpy: the f32 difference of two f32 entries, the rest in f64
    let w = ((lo as f64 - log_sigma) / (lo - hi) as f64).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}

impl Solver for DpmSolver {
    fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    fn step(
        &mut self,
        scheduler: &Scheduler,
        index: usize,
        model_output: Tensor<4>,
        x_t: Tensor<4>,
        _noise: &mut dyn FnMut() -> Tensor<4>,
    ) -> StepOutput {
        let n = self.timesteps.len();
        let (alpha_s0, sigma_s0, lambda_s0) = alpha_sigma_lambda(self.sigmas[index]);
        let (alpha_t, sigma_t, lambda_t) = alpha_sigma_lambda(self.sigmas[index + 1]);
        let (x0, _) = scheduler.predict_from(model_output, x_t.clone(), alpha_s0, sigma_s0);
        // The first step has no previous x_0; the last (to sigma 0) is first order, as diffusers'
        // lower_order_final makes it.
        let first_order = index == n - 1;
        let h = lambda_t - lambda_s0;
        let phi = alpha_t * ((-h).exp() - 1.0);
        let mut prev = x_t.mul_scalar(sigma_t / sigma_s0) - x0.clone().mul_scalar(phi);
        if let (false, Some(m1)) = (first_order, self.previous.take()) {
            // D1 = (m0 - m1) / r0 with r0 = h_0 / h; the midpoint rule adds -phi / 2 D1.
            let (_, _, lambda_s1) = alpha_sigma_lambda(self.sigmas[index - 1]);
            let r0 = (lambda_s0 - lambda_s1) / h;
            prev = prev - (x0.clone() - m1).mul_scalar(0.5 * phi / r0);
        }
        self.previous = Some(x0.clone());
        StepOutput { prev_sample: prev, pred_x0: x0 }
    }
}
