//! A model as diffusers stores it: the UNet's `config.json` and weights, and the scheduler's
//! `scheduler_config.json`, in the flat layout or the pipeline layout (`model_index.json`,
//! `unet/`, `scheduler/`). Bytes in, model out: the reading of files or URLs is the caller's.

use burn::tensor::Device;

use crate::config::{SchedulerConfig, UNetConfig};
use crate::error::Result;
use crate::sampler::Scheduler;
use crate::unet::UNet2DModel;
use crate::weights;

pub const CONFIG: &str = "config.json";
pub const SCHEDULER_CONFIG: &str = "scheduler_config.json";
pub const WEIGHTS: &str = "diffusion_pytorch_model.safetensors";
pub const MODEL_INDEX: &str = "model_index.json";

/// Where the three files sit inside a model folder (or under a URL prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `config.json`, `diffusion_pytorch_model.safetensors`, `scheduler_config.json` side by side.
    Flat,
    /// A diffusers pipeline: `unet/...` and `scheduler/scheduler_config.json`.
    Pipeline,
}

impl Layout {
    pub fn config(self) -> &'static str {
        match self {
            Layout::Flat => CONFIG,
            Layout::Pipeline => "unet/config.json",
        }
    }

    pub fn weights(self) -> &'static str {
        match self {
            Layout::Flat => WEIGHTS,
            Layout::Pipeline => "unet/diffusion_pytorch_model.safetensors",
        }
    }

    pub fn scheduler(self) -> &'static str {
        match self {
            Layout::Flat => SCHEDULER_CONFIG,
            Layout::Pipeline => "scheduler/scheduler_config.json",
        }
    }
}

/// The text and bytes of one model, each with the name it is reported under in errors.
pub struct ModelSource<'a> {
    pub config: (&'a str, &'a str),
    pub scheduler: Option<(&'a str, &'a str)>,
    pub weights: (&'a str, &'a [u8]),
}

pub struct Model {
    pub unet: UNet2DModel,
    pub scheduler: Scheduler,
}

impl Model {
    /// Parses both configs, builds the UNet and fills it. A missing scheduler config means
    /// diffusers' DDPMScheduler defaults.
    pub fn load(src: ModelSource, device: &Device) -> Result<Model> {
        let config = UNetConfig::from_json(src.config.0, src.config.1)?;
        let scheduler = match src.scheduler {
            Some((name, text)) => SchedulerConfig::from_json(name, text)?,
            None => SchedulerConfig::default(),
        };
        let unet = weights::load(UNet2DModel::new(&config, device), src.weights.0, src.weights.1)?;
        Ok(Model { unet, scheduler: Scheduler::new(scheduler) })
    }
}
