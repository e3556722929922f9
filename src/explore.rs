//! One step of diffusion as an explorable figure shows it (`<ddpm-forward>`): the forward process
//! in closed form, x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (Ho et al. eq. 4), the
//! model's eps_hat(x_t, t), and the x_0 that prediction implies,
//! x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_hat) / sqrt(alpha_bar_t).
//!
//! t here is the paper's, 0..=T: t = 0 is x_0 itself (alpha_bar = 1) and step t >= 1 is
//! diffusers' timestep t - 1, so that a slider from 0 to T starts at the data and ends in noise.

use burn::tensor::Tensor;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::noise::Noise;

/// What a figure shows at one t, for each image of x_0.
pub struct ForwardView {
    pub x_t: Tensor<4>,
    /// The noise that was added.
    pub eps: Tensor<4>,
    /// The model's estimate of it (whatever the model predicts, turned into eps).
    pub eps_hat: Tensor<4>,
    /// The x_0 that estimate implies (not clipped: the formula, as a post derives it).
    pub x0_hat: Tensor<4>,
    pub sqrt_alpha_bar: f32,
    pub sqrt_one_minus_alpha_bar: f32,
    /// Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t) (infinite at t = 0).
    pub snr: f32,
}

/// Noises `x0` ([N, C, H, W] in [-1, 1]) to the paper's step `t` (0..=T) with the noise of
/// `seed` (image i: the i-th stream, as sampling draws it), and runs the model once (at t = 0,
/// where nothing is noised, at its first timestep, so eps_hat still shows something).
pub fn forward_view(model: &Model, x0: Tensor<4>, t: usize, seed: u64) -> Result<ForwardView> {
    let schedule = &model.scheduler.schedule;
    let [n, c, h, w] = x0.dims();
    model.unet.check_input(&[n, c, h, w]).map_err(Error::Request)?;
    if t > schedule.len() {
        return Err(Error::Request(format!("t must be a step from 0 to T = {}, got {t}", schedule.len())));
    }
    let eps = Noise::new(seed, 0, n).draw([c, h, w], &x0.device());
    let (x_t, alpha_bar) = match t.checked_sub(1) {
        None => (x0, 1.0),
        Some(k) => (schedule.add_noise(x0, eps.clone(), &vec![k; n])?, schedule.alpha_bar[k]),
    };
    // The model's own step: at t = 0 its first, whose coefficients also turn its output into
    // eps_hat and x0_hat (dividing by sqrt(1 - 1) would not).
    let k = t.saturating_sub(1);
    let out = model.unet.forward(x_t.clone(), &vec![k as f32; n]);
    let model_alpha_bar = schedule.alpha_bar[k];
    let (x0_hat, eps_hat) = model.scheduler.predict_from(
        out,
        x_t.clone(),
        model_alpha_bar.sqrt(),
        (1.0 - model_alpha_bar).sqrt(),
    );
    Ok(ForwardView {
        x_t,
        eps,
        eps_hat,
        x0_hat,
        sqrt_alpha_bar: alpha_bar.sqrt(),
        sqrt_one_minus_alpha_bar: (1.0 - alpha_bar).sqrt(),
        snr: alpha_bar / (1.0 - alpha_bar),
    })
}
