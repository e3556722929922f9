//! DDPM (Ho et al. 2020) on burn: a UNet weight-compatible with diffusers' UNet2DModel,
//! its schedules and samplers, the training loss, and the model folder format.

pub mod adam;
pub mod config;
pub mod error;
#[cfg(not(target_family = "wasm"))]
pub mod files;
#[cfg(all(not(target_family = "wasm"), feature = "cli"))]
pub mod classifier;
#[cfg(all(not(target_family = "wasm"), feature = "cli"))]
pub mod dataset;
#[cfg(all(not(target_family = "wasm"), feature = "cli"))]
pub mod fid;
pub mod flat;
pub mod images;
pub mod model;
#[cfg(all(not(target_family = "wasm"), feature = "cli"))]
pub mod nearest;
pub mod noise;
#[cfg(not(target_family = "wasm"))]
pub mod pickle;
pub mod sampler;
pub mod schedule;
pub mod train;
pub mod tune;
pub mod unet;
pub mod weights;

pub use config::{SchedulerConfig, UNetConfig};
pub use error::{Error, Result};
pub use model::Model;
pub use sampler::{SampleRequest, SamplerKind, Scheduler};
pub use unet::UNet2DModel;

#[cfg(target_family = "wasm")]
pub mod web;
