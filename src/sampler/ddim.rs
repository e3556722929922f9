//! DDIM (Song et al. 2021): diffusers' `DDIMScheduler.step`, deterministic at eta = 0.

use burn::tensor::Tensor;

use super::{Scheduler, Solver, StepOutput};

/// The chain over `timesteps` with `eta`; each step goes T / n timesteps back, as diffusers' does.
pub struct Ddim {
    pub timesteps: Vec<usize>,
    pub eta: f64,
}

impl Solver for Ddim {
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
        let t_max = scheduler.config.num_train_timesteps;
        let prev_t = t as i64 - (t_max / self.timesteps.len()) as i64;
        let z = (self.eta > 0.0).then(noise);
        scheduler.ddim_step(model_output, t, prev_t, x_t, self.eta, z)
    }
}

impl Scheduler {
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
