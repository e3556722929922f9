//! UNet2DModel, built from a diffusers `config.json`. Field names follow diffusers' module
//! names, so each parameter's path is its safetensors key (see `weights`).

mod attention;
mod blocks;
#[cfg(any(feature = "gpu", target_family = "wasm"))]
mod cube;
mod embedding;
mod fused;
mod layout;
pub(crate) mod resnet;
#[cfg(feature = "torch")]
mod torch;

use burn::module::Module;
use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};

pub use attention::Attention;
pub use blocks::{DownBlock, MidBlock, UpBlock};
pub use embedding::timestep_features;

use crate::config::{TimeScaleShift, UNetConfig};
use blocks::{AttnSettings, UpChannels};
use embedding::TimestepEmbedding;
use fused::silu;
use resnet::{ResnetSettings, conv3x3, group_norm};

/// Whether `weights.rs` keeps convolution weights on `device` channels-last: on burn's cubecl
/// backends outside autodiff (sampling on WebGPU or wgpu), whose convolution reads that layout.
pub(crate) fn channels_last_weights(device: &Device) -> bool {
    #[cfg(any(feature = "gpu", target_family = "wasm"))]
    return cube::on_cube(device);
    #[cfg(not(any(feature = "gpu", target_family = "wasm")))]
    return {
        let _ = device;
        false
    };
}

#[derive(Module, Debug)]
pub struct UNet2DModel {
    pub conv_in: Conv2d,
    pub time_embedding: TimestepEmbedding,
    pub down_blocks: Vec<DownBlock>,
    pub mid_block: Option<MidBlock>,
    pub up_blocks: Vec<UpBlock>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
    #[module(skip)]
    pub config: UNetConfig,
}

impl UNet2DModel {
    /// A freshly initialised model of this config (weights are then loaded by `weights`).
    pub fn new(config: &UNetConfig, device: &Device) -> Self {
        let boc = &config.block_out_channels;
        let n = boc.len();
        let temb = config.time_embed_dim();
        let r = ResnetSettings {
            temb_channels: temb,
            groups: config.norm_num_groups,
            eps: config.norm_eps,
            dropout: config.dropout,
            scale_shift: config.resnet_time_scale_shift == TimeScaleShift::ScaleShift,
        };
        // attention_head_dim = None means one head as wide as the block.
        let attn = |is_attn: bool, c: usize, groups: Option<usize>| {
            is_attn.then(|| AttnSettings { head_dim: config.attention_head_dim.unwrap_or(c), groups })
        };
        let mut c_out = boc[0];
        let down_blocks = (0..n)
            .map(|i| {
                let c_in = c_out;
                c_out = boc[i];
                let is_attn = config.down_block_types[i].has_attention();
                let down = (i + 1 < n).then_some(config.downsample_padding);
                DownBlock::new(
                    config.layers_per_block,
                    c_in,
                    c_out,
                    attn(is_attn, c_out, Some(r.groups)),
                    down,
                    &r,
                    device,
                )
            })
            .collect();
        let c_mid = boc[n - 1];
        // diffusers' UNetMidBlock2D: attn_groups defaults to resnet_groups, but to no GroupNorm at
        // all when resnet_time_scale_shift is not "default".
        let default_shift = config.resnet_time_scale_shift == TimeScaleShift::Default;
        let mid_groups = config.attn_norm_num_groups.or(default_shift.then_some(r.groups));
        let mid_block = config.mid_block_type.as_ref().map(|_| {
            MidBlock::new(
                c_mid,
                attn(config.add_attention, c_mid, mid_groups),
                config.mid_block_scale_factor,
                &r,
                device,
            )
        });
        let rev: Vec<usize> = boc.iter().rev().copied().collect();
        let mut c_out = rev[0];
        let up_blocks = (0..n)
            .map(|i| {
                let c_prev = c_out;
                c_out = rev[i];
                let c_in = rev[(i + 1).min(n - 1)];
                let is_attn = config.up_block_types[i].has_attention();
                let a = attn(is_attn, c_out, Some(r.groups));
                let channels = UpChannels { c_in, c_out, c_prev };
                UpBlock::new(config.layers_per_block + 1, channels, a, i + 1 < n, &r, device)
            })
            .collect();
        UNet2DModel {
            conv_in: conv3x3(config.in_channels, boc[0], device),
            time_embedding: TimestepEmbedding::new(boc[0], temb, device),
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: group_norm(config.norm_num_groups, boc[0], config.norm_eps, device),
            conv_out: conv3x3(boc[0], config.out_channels, device),
            config: config.clone(),
        }
    }

    /// [C, H, W] of one sample.
    pub fn sample_shape(&self) -> [usize; 3] {
        let [h, w] = self.config.sample_size;
        [self.config.in_channels, h, w]
    }

    /// Whether a batch of this shape can go through the UNet: [N, in_channels, H, W] with H and
    /// W multiples of 2^(blocks - 1). The message says what was expected.
    pub fn check_input(&self, shape: &[usize]) -> Result<(), String> {
        let c = self.config.in_channels;
        let k = 1usize << (self.config.block_out_channels.len() - 1);
        match shape {
            [n, ch, h, w] if *n > 0 && *ch == c && *h > 0 && *w > 0 && h % k == 0 && w % k == 0 => Ok(()),
            _ => Err(format!(
                "expected shape [N, {c}, H, W] with N >= 1 and H, W positive multiples of {k}, found {shape:?}"
            )),
        }
    }

    pub fn device(&self) -> Device {
        self.conv_in.weight.val().device()
    }

    /// eps_theta(x_t, t): `x` is [N, C, H, W], `t` holds one timestep per batch item.
    pub fn forward(&self, x: Tensor<4>, t: &[f32]) -> Tensor<4> {
        self.forward_traced(x, t, &mut |_, _| {})
    }

    /// `forward`, handing each block's output to `trace` under diffusers' module name
    /// (`time_proj` and `time_embedding` as [N, D, 1, 1]).
    pub fn forward_traced(
        &self,
        x: Tensor<4>,
        t: &[f32],
        trace: &mut dyn FnMut(&str, &Tensor<4>),
    ) -> Tensor<4> {
        let c = &self.config;
        let n = x.dims()[0];
        assert_eq!(t.len(), n, "one timestep per batch item");
        let x = if c.center_input_sample { x.mul_scalar(2.0).sub_scalar(1.0) } else { x };
        let features =
            timestep_features(t, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift, &x.device());
        let as4 = |e: &Tensor<2>| e.clone().unsqueeze_dim::<3>(2).unsqueeze_dim::<4>(3);
        trace("time_proj", &as4(&features));
        let temb = self.time_embedding.forward(features);
        trace("time_embedding", &as4(&temb));
        // Every resnet applies SiLU to the time embedding before its own projection (diffusers'
        // ResnetBlock2D): the same tensor each time, so once here.
        let temb = silu(temb);

        let mut x = self.conv_in.forward(x);
        trace("conv_in", &x);
        let mut skips = vec![x.clone()];
        for (i, block) in self.down_blocks.iter().enumerate() {
            let (out, states) = block.forward(x, &temb);
            skips.extend(states);
            x = out;
            trace(&format!("down_blocks.{i}"), &x);
        }
        if let Some(mid) = &self.mid_block {
            x = mid.forward(x, &temb);
            trace("mid_block", &x);
        }
        for (i, block) in self.up_blocks.iter().enumerate() {
            x = block.forward(x, &mut skips, &temb);
            trace(&format!("up_blocks.{i}"), &x);
        }
        let x = fused::group_norm(&self.conv_norm_out, x);
        trace("conv_norm_out", &x);
        let x = self.conv_out.forward(silu(x));
        trace("conv_out", &x);
        x
    }
}
