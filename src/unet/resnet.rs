//! ResnetBlock2D: GroupNorm -> SiLU -> conv, plus the projected time embedding, twice; then the skip.

use super::fused::{self, silu};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Dropout, DropoutConfig, GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

pub fn conv3x3(c_in: usize, c_out: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(device)
}

pub fn group_norm(groups: usize, channels: usize, eps: f64, device: &Device) -> GroupNorm {
    GroupNormConfig::new(groups, channels).with_epsilon(eps).init(device)
}

/// Settings every resnet of a UNet shares.
#[derive(Debug, Clone, Copy)]
pub struct ResnetSettings {
    pub temb_channels: usize,
    pub groups: usize,
    pub eps: f64,
    pub dropout: f64,
    pub scale_shift: bool,
}

#[derive(Module, Debug)]
pub struct ResnetBlock2D {
    pub norm1: GroupNorm,
    pub conv1: Conv2d,
    pub time_emb_proj: Linear,
    pub norm2: GroupNorm,
    pub dropout: Dropout,
    pub conv2: Conv2d,
    pub conv_shortcut: Option<Conv2d>,
    #[module(skip)]
    pub output_scale_factor: f64,
    #[module(skip)]
    pub scale_shift: bool,
}

impl ResnetBlock2D {
    pub fn new(
        c_in: usize,
        c_out: usize,
        output_scale_factor: f64,
        s: &ResnetSettings,
        device: &Device,
    ) -> Self {
        let temb_out = if s.scale_shift { 2 * c_out } else { c_out };
        ResnetBlock2D {
            norm1: group_norm(s.groups, c_in, s.eps, device),
            conv1: conv3x3(c_in, c_out, device),
            time_emb_proj: LinearConfig::new(s.temb_channels, temb_out).init(device),
            norm2: group_norm(s.groups, c_out, s.eps, device),
            dropout: DropoutConfig::new(s.dropout).init(),
            conv2: conv3x3(c_out, c_out, device),
            conv_shortcut: (c_in != c_out).then(|| Conv2dConfig::new([c_in, c_out], [1, 1]).init(device)),
            output_scale_factor,
            scale_shift: s.scale_shift,
        }
    }

    /// `silu_temb`: SiLU of the time embedding, which diffusers' ResnetBlock2D computes first.
    pub fn forward(&self, x: Tensor<4>, silu_temb: Tensor<2>) -> Tensor<4> {
        let h = self.conv1.forward(fused::group_norm_silu(&self.norm1, x.clone()));
        let h = if self.scale_shift {
            let temb = self.time_emb_proj.forward(silu_temb).unsqueeze_dim::<3>(2).unsqueeze_dim::<4>(3);
            let [scale, shift] = chunk2(temb);
            silu(fused::group_norm(&self.norm2, h) * (scale + 1.0) + shift)
        } else {
            fused::add_time_group_norm_silu(&self.norm2, h, &self.time_emb_proj, silu_temb)
        };
        let h = self.conv2.forward(self.dropout.forward(h));
        let skip = match &self.conv_shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        let out = skip + h;
        if self.output_scale_factor == 1.0 { out } else { out.div_scalar(self.output_scale_factor) }
    }
}

fn chunk2(t: Tensor<4>) -> [Tensor<4>; 2] {
    let c = t.dims()[1] / 2;
    [t.clone().narrow(1, 0, c), t.narrow(1, c, c)]
}
