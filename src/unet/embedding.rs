//! Timestep features (diffusers' `Timesteps`) and the time-embedding MLP (`TimestepEmbedding`).

use super::fused::silu;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};

/// Sinusoidal features of the timesteps (Vaswani et al. 2017; Ho et al. 2020, appendix B):
/// freq_i = exp(-ln(10000) i / (half - freq_shift)), features [sin(t freq), cos(t freq)]
/// ([cos, sin] with `flip_sin_to_cos`). Computed on the host in f32 as torch does.
pub fn timestep_features(
    t: &[f32],
    dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
    device: &Device,
) -> Tensor<2> {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| {
            let exponent = -(10000f32.ln()) * i as f32;
            (exponent / (half as f32 - freq_shift as f32)).exp()
        })
        .collect();
    let mut v = Vec::with_capacity(t.len() * dim);
    for &t in t {
        let args = freqs.iter().map(|f| (t * f) as f64);
        let (sin, cos): (Vec<f32>, Vec<f32>) = args.map(|a| (a.sin() as f32, a.cos() as f32)).unzip();
        let (first, second) = if flip_sin_to_cos { (cos, sin) } else { (sin, cos) };
        v.extend(first);
        v.extend(second);
        if dim % 2 == 1 {
            v.push(0.0);
        }
    }
    Tensor::from_data(TensorData::new(v, [t.len(), dim]), device)
}

/// linear_2(silu(linear_1(features))).
#[derive(Module, Debug)]
pub struct TimestepEmbedding {
    pub linear_1: Linear,
    pub linear_2: Linear,
}

impl TimestepEmbedding {
    pub fn new(d_in: usize, d_embed: usize, device: &Device) -> Self {
        TimestepEmbedding {
            linear_1: LinearConfig::new(d_in, d_embed).init(device),
            linear_2: LinearConfig::new(d_embed, d_embed).init(device),
        }
    }

    pub fn forward(&self, features: Tensor<2>) -> Tensor<2> {
        self.linear_2.forward(silu(self.linear_1.forward(features)))
    }
}
