//! `scheduler_config.json`: diffusers' `DDPMScheduler` fields (plus DDIM's `set_alpha_to_one`),
//! the beta schedules, prediction types, variances and timestep spacings.

use serde::Serialize;
use serde_json::Value;

use super::{ConfigEnum, Fields, f_unsupported};
use crate::error::Result;

config_enum! {
    /// What the network predicts (diffusers' `prediction_type`).
    Prediction { Epsilon = "epsilon", Sample = "sample", VPrediction = "v_prediction" }
}

config_enum! {
    /// The reverse process's variance (`variance_type`).
    VarianceType {
        /// sigma_t^2 = beta~_t, the posterior variance.
        FixedSmall = "fixed_small",
        /// sigma_t^2 = beta_t.
        FixedLarge = "fixed_large",
    }
}

config_enum! {
    /// Where the sampling timesteps fall among the training ones (`timestep_spacing`).
    Spacing { Leading = "leading", Trailing = "trailing", Linspace = "linspace" }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    Linear,
    ScaledLinear,
    SquaredcosCapV2,
    Trained(Vec<f64>),
}

/// The scheduler config (DDPMScheduler's fields, plus DDIM's `set_alpha_to_one`).
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    pub variance_type: VarianceType,
    pub clip_sample: bool,
    pub clip_sample_range: f64,
    pub prediction_type: Prediction,
    pub timestep_spacing: Spacing,
    pub steps_offset: usize,
    pub set_alpha_to_one: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig::from_json("defaults", "{}").expect("defaults parse")
    }
}

impl SchedulerConfig {
    pub fn from_json(file: &str, text: &str) -> Result<Self> {
        let mut f = Fields::parse(file, text)?;
        let num_train_timesteps = f.usize("num_train_timesteps", 1000)?;
        let trained = match f.take("trained_betas") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_array()
                    .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>())
                    .ok_or_else(|| f.wrong("trained_betas", "a list of numbers or null", &v))?,
            ),
        };
        let schedule =
            f.choice("beta_schedule", "linear", &["linear", "scaled_linear", "squaredcos_cap_v2"])?;
        let beta_schedule = match (trained, schedule.as_str()) {
            (Some(b), _) => BetaSchedule::Trained(b),
            (None, "linear") => BetaSchedule::Linear,
            (None, "scaled_linear") => BetaSchedule::ScaledLinear,
            (None, _) => BetaSchedule::SquaredcosCapV2,
        };
        let cfg = SchedulerConfig {
            num_train_timesteps,
            beta_start: f.f64("beta_start", 0.0001)?,
            beta_end: f.f64("beta_end", 0.02)?,
            beta_schedule,
            variance_type: f.choose("variance_type", VarianceType::FixedSmall)?,
            clip_sample: f.bool("clip_sample", true)?,
            clip_sample_range: f.f64("clip_sample_range", 1.0)?,
            prediction_type: f.choose("prediction_type", Prediction::Epsilon)?,
            timestep_spacing: f.choose("timestep_spacing", Spacing::Leading)?,
            steps_offset: f.usize("steps_offset", 0)?,
            set_alpha_to_one: f.bool("set_alpha_to_one", true)?,
        };
        for field in ["thresholding", "rescale_betas_zero_snr"] {
            if f.bool(field, false)? {
                return Err(f.unsupported(field, "true", "not implemented; it must be false"));
            }
        }
        // Only read by diffusers when `thresholding` is true, which is refused above.
        f.f64("dynamic_thresholding_ratio", 0.995)?;
        f.f64("sample_max_value", 1.0)?;
        // Fields of other schedulers' configs saved with a DDPM model (PNDM's, DDIM's): not used by DDPM/DDIM sampling.
        f.finish(&["skip_prk_steps"])?;
        if cfg.num_train_timesteps < 2 || cfg.num_train_timesteps > 100_000 {
            return Err(f_unsupported(
                file,
                "num_train_timesteps",
                cfg.num_train_timesteps,
                "must be between 2 and 100000",
            ));
        }
        // Betas outside (0, 1) make alpha_t = 1 - beta_t zero or negative: sampling would run
        // on nonsense. linear and scaled_linear stay between beta_start and beta_end.
        if matches!(cfg.beta_schedule, BetaSchedule::Linear | BetaSchedule::ScaledLinear) {
            for (field, beta) in [("beta_start", cfg.beta_start), ("beta_end", cfg.beta_end)] {
                if !(beta > 0.0 && beta < 1.0) {
                    return Err(f_unsupported(file, field, beta, "a beta must be in (0, 1)"));
                }
            }
        }
        if let BetaSchedule::Trained(b) = &cfg.beta_schedule {
            if b.len() != cfg.num_train_timesteps {
                return Err(f_unsupported(
                    file,
                    "trained_betas",
                    format!("{} values", b.len()),
                    &format!("must have num_train_timesteps ({}) values", cfg.num_train_timesteps),
                ));
            }
            if let Some(x) = b.iter().find(|x| !(**x > 0.0 && **x < 1.0)) {
                return Err(f_unsupported(file, "trained_betas", x, "every beta must be in (0, 1)"));
            }
        }
        if cfg.clip_sample_range.is_nan() || cfg.clip_sample_range <= 0.0 {
            return Err(f_unsupported(file, "clip_sample_range", cfg.clip_sample_range, "must be positive"));
        }
        Ok(cfg)
    }

    /// `scheduler_config.json` as diffusers' DDPMScheduler writes it.
    pub fn to_json(&self) -> String {
        let (schedule, trained) = match &self.beta_schedule {
            BetaSchedule::Trained(b) => ("linear", serde_json::to_value(b).expect("numbers")),
            other => (
                match other {
                    BetaSchedule::Linear => "linear",
                    BetaSchedule::ScaledLinear => "scaled_linear",
                    _ => "squaredcos_cap_v2",
                },
                Value::Null,
            ),
        };
        let v = serde_json::json!({
            "_class_name": "DDPMScheduler",
            "_diffusers_version": "0.42.1",
            "num_train_timesteps": self.num_train_timesteps,
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
            "beta_schedule": schedule,
            "trained_betas": trained,
            "variance_type": self.variance_type,
            "clip_sample": self.clip_sample,
            "clip_sample_range": self.clip_sample_range,
            "prediction_type": self.prediction_type,
            "thresholding": false,
            "dynamic_thresholding_ratio": 0.995,
            "sample_max_value": 1.0,
            "timestep_spacing": self.timestep_spacing,
            "steps_offset": self.steps_offset,
            "rescale_betas_zero_snr": false,
        });
        serde_json::to_string_pretty(&v).expect("config serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn betas_outside_zero_to_one_are_refused_by_name() {
        let e = SchedulerConfig::from_json("s.json", r#"{"beta_start": 0.5, "beta_end": 2.0}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("s.json") && e.contains("beta_end") && e.contains('2'), "{e}");
        let e =
            SchedulerConfig::from_json("s.json", r#"{"beta_start": 0, "beta_schedule": "scaled_linear"}"#)
                .unwrap_err()
                .to_string();
        assert!(e.contains("beta_start"), "{e}");
        assert!(SchedulerConfig::from_json("s.json", r#"{"beta_schedule": "squaredcos_cap_v2"}"#).is_ok());
    }
}
