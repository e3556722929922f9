//! diffusers' `Attention` as UNet2DModel uses it: GroupNorm (absent in the mid block of a
//! `scale_shift` model without `attn_norm_num_groups`), multi-head self-attention over the
//! H x W positions, output projection, residual, divided by `rescale_output_factor`.

use burn::module::Module;
use burn::nn::{GroupNorm, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use super::fused;
use super::resnet::group_norm;

#[derive(Module, Debug)]
pub struct Attention {
    pub group_norm: Option<GroupNorm>,
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    pub to_out: Vec<Linear>,
    #[module(skip)]
    pub heads: usize,
    #[module(skip)]
    pub rescale_output_factor: f64,
}

impl Attention {
    pub fn new(
        channels: usize,
        head_dim: usize,
        groups: Option<usize>,
        eps: f64,
        rescale: f64,
        device: &Device,
    ) -> Self {
        let linear = || LinearConfig::new(channels, channels).init(device);
        Attention {
            group_norm: groups.map(|g| group_norm(g, channels, eps, device)),
            to_q: linear(),
            to_k: linear(),
            to_v: linear(),
            to_out: vec![linear()],
            heads: channels / head_dim,
            rescale_output_factor: rescale,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let normed = match &self.group_norm {
            Some(norm) => fused::group_norm(norm, x.clone()),
            None => x.clone(),
        };
        // [b, h * w, c] by way of [b, h, w, c]: a view, without a copy, of the channels-last
        // tensors a GPU leaves when sampling, and of the projection's output on the way back.
        let tokens = normed.permute([0, 2, 3, 1]).reshape([b, h * w, c]);
        // softmax(q k^T / sqrt(d_head)) v per head, as one fused op where the backend has one
        let out = fused::attention(tokens, [&self.to_q, &self.to_k, &self.to_v], self.heads);
        let out = self.to_out[0].forward(out).reshape([b, h, w, c]).permute([0, 3, 1, 2]);
        let out = out + x;
        if self.rescale_output_factor == 1.0 { out } else { out.div_scalar(self.rescale_output_factor) }
    }
}
