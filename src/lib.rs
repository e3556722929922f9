//! DDPM (Ho et al. 2020) on burn: a UNet weight-compatible with diffusers' UNet2DModel,
//! its schedules and samplers, the training loss, and the model folder format.
//!
//! The layers, from the bottom up:
//! - core, on every target: `config`, `schedule`, `sampler`, `noise`, `unet`, `weights`,
//!   `model`, `images`, `error`, and `pickle` for diffusers' older `.bin` weights;
//! - `train`: the loss, Adam over one flat vector, the EMA and fine-tuning (CLI and browser);
//! - `native`: model folders on disk (not in the wasm);
//! - `eval`: the classifier, MNIST, FID and nearest neighbours of `ddpm eval` (CLI only);
//! - `web`: the wasm-bindgen engine the page runs (wasm only);
//! - the CLI itself is `src/bin/ddpm/`.

pub mod config;
pub mod error;
pub mod explore;
pub mod images;
pub mod model;
pub mod noise;
pub mod pickle;
pub mod sampler;
pub mod schedule;
pub mod unet;
pub mod weights;

pub mod train;

#[cfg(not(target_family = "wasm"))]
pub mod native;

#[cfg(all(not(target_family = "wasm"), feature = "cli"))]
pub mod eval;

#[cfg(target_family = "wasm")]
pub mod web;

pub use config::{SchedulerConfig, UNetConfig};
pub use error::{Error, Result};
pub use model::Model;
pub use sampler::{SampleRequest, SamplerKind, Scheduler};
pub use unet::UNet2DModel;
