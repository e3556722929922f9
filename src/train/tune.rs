//! Fine-tuning a trained model on a handful of images (the browser's "teach it your drawings"):
//! the same `Trainer::step` as `ddpm train`, on batches drawn with replacement from the images.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Trainer, flat};
use crate::error::{Error, Result};
use crate::sampler::Scheduler;
use crate::unet::UNet2DModel;

/// Most images one fine-tuning set may hold, and the largest batch.
pub const MAX_IMAGES: usize = 256;
pub const MAX_BATCH: usize = 64;

pub struct Tuner {
    unet: Option<UNet2DModel>,
    trainer: Trainer,
    images: Vec<f32>,
    count: usize,
    rng: ChaCha8Rng,
    device: Device,
}

impl Tuner {
    /// Starts from a copy of `base`, tracked by autodiff on its device. `images` are
    /// [N, C, H, W] in [-1, 1] at the model's sample shape.
    pub fn new(base: &UNet2DModel, images: Vec<f32>, lr: f64, seed: u64) -> Result<Tuner> {
        let per: usize = base.sample_shape().iter().product();
        let count = images.len() / per;
        if images.is_empty() || !images.len().is_multiple_of(per) {
            return Err(Error::Request(format!(
                "fine-tuning images: {} values is not a whole number of images of shape {:?}",
                images.len(),
                base.sample_shape()
            )));
        }
        if count > MAX_IMAGES {
            return Err(Error::Request(format!(
                "fine-tuning takes at most {MAX_IMAGES} images, got {count}"
            )));
        }
        if !(lr > 0.0 && lr <= 1e-2) {
            return Err(Error::Request(format!("learning rate must be in (0, 0.01], got {lr}")));
        }
        Ok(Tuner {
            unet: Some(base.clone().train()),
            trainer: Trainer::new(lr, 0, seed),
            images,
            count,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x7475_6e65),
            device: base.device().autodiff(),
        })
    }

    pub fn steps(&self) -> usize {
        self.trainer.step
    }

    /// One Adam step on `batch` images drawn with replacement. Returns the loss (not read back).
    pub fn step(&mut self, scheduler: &Scheduler, batch: usize) -> Result<Tensor<1>> {
        let x0 = self.draw(batch)?;
        let unet = self.unet.take().ok_or_else(failed)?;
        let (unet, loss) = self.trainer.step(unet, scheduler, x0)?;
        self.unet = Some(unet);
        Ok(loss)
    }

    /// Shard `shard` of `shards` of the next step on `batch` images, for workers that share
    /// the step: the same images, t and eps as `step` draws (every worker's Tuner was seeded
    /// alike), this shard's rows of them. Returns the flat gradient weighted by the shard's
    /// share (`crate::train::flat`) and the loss so weighted, neither read back; then every worker
    /// calls `apply` with all the shards' gradients.
    pub fn shard_gradients(
        &mut self,
        scheduler: &Scheduler,
        batch: usize,
        shard: usize,
        shards: usize,
    ) -> Result<(Tensor<1>, Tensor<1>)> {
        if shard >= shards || shards > batch {
            return Err(Error::Request(format!(
                "shard {shard} of {shards} of a batch of {batch}: each shard needs at least one image"
            )));
        }
        let x0 = self.draw(batch)?;
        let unet = self.unet.as_ref().ok_or_else(failed)?;
        let rows = batch * shard / shards..batch * (shard + 1) / shards;
        self.trainer.gradients(unet, scheduler, x0, rows)
    }

    /// The Adam step on the sum of the shards' flat gradients (in shard order). Returns the sum.
    pub fn apply(&mut self, parts: &[Vec<f32>]) -> Result<Vec<f32>> {
        let unet = self.unet.take().ok_or_else(failed)?;
        let (grad, total) = match flat::sum(&unet, parts) {
            Ok(summed) => summed,
            Err(err) => {
                self.unet = Some(unet);
                return Err(err);
            }
        };
        self.unet = Some(self.trainer.apply(unet, grad));
        Ok(total)
    }

    /// `batch` images drawn with replacement, on the autodiff device.
    fn draw(&mut self, batch: usize) -> Result<Tensor<4>> {
        if batch == 0 || batch > MAX_BATCH {
            return Err(Error::Request(format!("fine-tuning batch must be 1 to {MAX_BATCH}, got {batch}")));
        }
        let [c, h, w] = self.unet.as_ref().ok_or_else(failed)?.sample_shape();
        let per = c * h * w;
        let mut x0 = Vec::with_capacity(batch * per);
        for _ in 0..batch {
            let i = self.rng.random_range(0..self.count);
            x0.extend_from_slice(&self.images[i * per..(i + 1) * per]);
        }
        Ok(Tensor::<4>::from_data(TensorData::new(x0, [batch, c, h, w]), &self.device))
    }

    /// The weights reached so far, off the autodiff device, ready to sample with.
    pub fn model(&self) -> Result<UNet2DModel> {
        self.unet.as_ref().map(|u| u.valid()).ok_or_else(failed)
    }
}

fn failed() -> Error {
    Error::Backend("an earlier fine-tuning step failed".into())
}
