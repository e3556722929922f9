//! DDPM's ancestral sampler (Algorithm 2): diffusers' `DDPMScheduler.step`, over all T timesteps
//! or a subset of them.

use burn::tensor::Tensor;

use super::{Scheduler, Solver, StepOutput};
use crate::config::VarianceType;

/// The chain over `timesteps`, each step to the next one (-1 after the last).
pub struct Ddpm {
    pub timesteps: Vec<usize>,
}

impl Solver for Ddpm {
    fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    fn step(
        &mut self,
        scheduler: &Scheduler,
        index: usize,
        model_output: Tensor<4>,
        x_t: Tensor<4>,
        noise: &mut dyn FnMut() -> Tensor<4>,
    ) -> StepOutput {
        let t = self.timesteps[index];
        let prev_t = self.timesteps.get(index + 1).map_or(-1, |p| *p as i64);
        let z = (t > 0).then(noise);
        scheduler.ddpm_step(model_output, t, prev_t, x_t, z)
    }
}

impl Scheduler {
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
}
