//! Seeded Gaussian noise, drawn on the host so a seed gives the same images on every backend.
//! Each image of a batch has its own ChaCha8 stream: image i of seed s is the same whatever n is,
//! so a batch can be split into parts (image `first + i` of the seed) and run in parallel.

use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

pub struct Noise {
    streams: Vec<ChaCha8Rng>,
}

impl Noise {
    /// Streams for images `first..first + n` of `seed`.
    pub fn new(seed: u64, first: usize, n: usize) -> Self {
        let streams = (first as u64..(first + n) as u64)
            .map(|i| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                rng.set_stream(i);
                rng
            })
            .collect();
        Noise { streams }
    }

    /// One draw of z ~ N(0, I) of shape [n, c, h, w].
    pub fn draw(&mut self, [c, h, w]: [usize; 3], device: &Device) -> Tensor<4> {
        let n = self.streams.len();
        let mut v = Vec::with_capacity(n * c * h * w);
        for rng in &mut self.streams {
            extend_normal(rng, c * h * w, &mut v);
        }
        Tensor::from_data(TensorData::new(v, [n, c, h, w]), device)
    }
}

/// Appends `count` draws of N(0, 1) from `rng` to `out`.
pub fn extend_normal(rng: &mut ChaCha8Rng, count: usize, out: &mut Vec<f32>) {
    out.extend((0..count).map(|_| -> f32 { StandardNormal.sample(rng) }));
}
