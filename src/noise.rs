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

/// x_T of images `first..first + n` of a strip of `count` whose noise moves from image 0 of
/// `from` to image 0 of `to` along the great circle between them (Shoemake's slerp): image i at
/// the fraction i / (count - 1) of the angle, so the ends are the two seeds' own x_T. Gaussian
/// noise in many dimensions has nearly one norm, and slerp keeps to it; a straight line between
/// two draws passes through noise too faint for the model to have seen as x_T.
pub fn slerp(
    from: u64,
    to: u64,
    count: usize,
    first: usize,
    n: usize,
    [c, h, w]: [usize; 3],
    device: &Device,
) -> Tensor<4> {
    let image_zero = |seed| {
        let mut v = Vec::with_capacity(c * h * w);
        extend_normal(&mut Noise::new(seed, 0, 1).streams[0], c * h * w, &mut v);
        v
    };
    let (a, b) = (image_zero(from), image_zero(to));
    let dot = |u: &[f32], v: &[f32]| u.iter().zip(v).map(|(x, y)| *x as f64 * *y as f64).sum::<f64>();
    let cos = (dot(&a, &b) / (dot(&a, &a) * dot(&b, &b)).sqrt()).clamp(-1.0, 1.0);
    let theta = cos.acos();
    let mut out = Vec::with_capacity(n * c * h * w);
    for i in first..first + n {
        let s = if count > 1 { i as f64 / (count - 1) as f64 } else { 0.0 };
        // Two draws almost parallel: the arc is a line (and sin(theta) would divide by ~0).
        let (wa, wb) = if theta.sin() < 1e-6 {
            (1.0 - s, s)
        } else {
            (((1.0 - s) * theta).sin() / theta.sin(), (s * theta).sin() / theta.sin())
        };
        out.extend(a.iter().zip(&b).map(|(x, y)| (wa * *x as f64 + wb * *y as f64) as f32));
    }
    Tensor::from_data(TensorData::new(out, [n, c, h, w]), device)
}
