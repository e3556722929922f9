//! The UNet's blocks: DownBlock2D / AttnDownBlock2D, UNetMidBlock2D, UpBlock2D / AttnUpBlock2D,
//! and the resampling convs between them. One struct serves the plain and the attention
//! variant of each block: the attention list is empty for the plain one.

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor};

use super::attention::Attention;
use super::layout::{cat_channels, upsample_nearest_2x};
use super::resnet::{ResnetBlock2D, ResnetSettings, conv3x3};

/// Attention settings of a block: heads of width `head_dim` and GroupNorm `groups` (none: no norm).
#[derive(Debug, Clone, Copy)]
pub struct AttnSettings {
    pub head_dim: usize,
    pub groups: Option<usize>,
}

fn attention(c: usize, a: &AttnSettings, r: &ResnetSettings, rescale: f64, device: &Device) -> Attention {
    Attention::new(c, a.head_dim, a.groups, r.eps, rescale, device)
}

/// Downsample2D with a conv: stride 2, padding 1; `downsample_padding = 0` pads right and bottom by one.
#[derive(Module, Debug)]
pub struct Downsample2D {
    pub conv: Conv2d,
}

impl Downsample2D {
    pub fn new(c: usize, padding: usize, device: &Device) -> Self {
        let pad = if padding == 0 {
            PaddingConfig2d::Explicit(0, 0, 1, 1)
        } else {
            PaddingConfig2d::Explicit(1, 1, 1, 1)
        };
        Downsample2D {
            conv: Conv2dConfig::new([c, c], [3, 3]).with_stride([2, 2]).with_padding(pad).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv.forward(x)
    }
}

/// Upsample2D: nearest-neighbour x2, then a 3x3 conv.
#[derive(Module, Debug)]
pub struct Upsample2D {
    pub conv: Conv2d,
}

impl Upsample2D {
    pub fn new(c: usize, device: &Device) -> Self {
        Upsample2D { conv: conv3x3(c, c, device) }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv.forward(upsample_nearest_2x(x))
    }
}

#[derive(Module, Debug)]
pub struct DownBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Attention>,
    pub downsamplers: Vec<Downsample2D>,
}

impl DownBlock {
    pub fn new(
        layers: usize,
        c_in: usize,
        c_out: usize,
        attn: Option<AttnSettings>,
        downsample: Option<usize>,
        r: &ResnetSettings,
        device: &Device,
    ) -> Self {
        DownBlock {
            resnets: (0..layers)
                .map(|i| ResnetBlock2D::new(if i == 0 { c_in } else { c_out }, c_out, 1.0, r, device))
                .collect(),
            attentions: attn
                .iter()
                .flat_map(|a| (0..layers).map(|_| attention(c_out, a, r, 1.0, device)))
                .collect(),
            downsamplers: downsample.map(|p| Downsample2D::new(c_out, p, device)).into_iter().collect(),
        }
    }

    /// Returns the block's output and the states it hands to the up path (one per resnet, and
    /// one after the downsampler).
    pub fn forward(&self, mut x: Tensor<4>, temb: &Tensor<2>) -> (Tensor<4>, Vec<Tensor<4>>) {
        let mut states = Vec::with_capacity(self.resnets.len() + 1);
        for (i, resnet) in self.resnets.iter().enumerate() {
            x = resnet.forward(x, temb.clone());
            if let Some(attn) = self.attentions.get(i) {
                x = attn.forward(x);
            }
            states.push(x.clone());
        }
        for down in &self.downsamplers {
            x = down.forward(x);
            states.push(x.clone());
        }
        (x, states)
    }
}

/// UNetMidBlock2D: resnet, then (attention, resnet) once.
#[derive(Module, Debug)]
pub struct MidBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Attention>,
}

impl MidBlock {
    pub fn new(
        c: usize,
        attn: Option<AttnSettings>,
        scale: f64,
        r: &ResnetSettings,
        device: &Device,
    ) -> Self {
        MidBlock {
            resnets: (0..2).map(|_| ResnetBlock2D::new(c, c, scale, r, device)).collect(),
            attentions: attn.iter().map(|a| attention(c, a, r, scale, device)).collect(),
        }
    }

    pub fn forward(&self, x: Tensor<4>, temb: &Tensor<2>) -> Tensor<4> {
        let mut x = self.resnets[0].forward(x, temb.clone());
        if let Some(attn) = self.attentions.first() {
            x = attn.forward(x);
        }
        self.resnets[1].forward(x, temb.clone())
    }
}

#[derive(Module, Debug)]
pub struct UpBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Attention>,
    pub upsamplers: Vec<Upsample2D>,
}

/// An up block's channels: resnet j takes the previous output (`c_prev` for j = 0, else `c_out`)
/// concatenated with a skip state (`c_in` for the last, else `c_out` channels).
#[derive(Debug, Clone, Copy)]
pub struct UpChannels {
    pub c_in: usize,
    pub c_out: usize,
    pub c_prev: usize,
}

impl UpBlock {
    /// `layers` resnets (and as many attentions where `attn` is given), then an upsampler.
    pub fn new(
        layers: usize,
        UpChannels { c_in, c_out, c_prev }: UpChannels,
        attn: Option<AttnSettings>,
        upsample: bool,
        r: &ResnetSettings,
        device: &Device,
    ) -> Self {
        let resnet = |j: usize| {
            let skip = if j == layers - 1 { c_in } else { c_out };
            let prev = if j == 0 { c_prev } else { c_out };
            ResnetBlock2D::new(prev + skip, c_out, 1.0, r, device)
        };
        UpBlock {
            resnets: (0..layers).map(resnet).collect(),
            attentions: attn
                .iter()
                .flat_map(|a| (0..layers).map(|_| attention(c_out, a, r, 1.0, device)))
                .collect(),
            upsamplers: upsample.then(|| Upsample2D::new(c_out, device)).into_iter().collect(),
        }
    }

    /// Consumes skip states from the end of `skips`, one per resnet.
    pub fn forward(&self, mut x: Tensor<4>, skips: &mut Vec<Tensor<4>>, temb: &Tensor<2>) -> Tensor<4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            let skip = skips.pop().expect("one skip state per up-block resnet");
            x = resnet.forward(cat_channels(vec![x, skip]), temb.clone());
            if let Some(attn) = self.attentions.get(i) {
                x = attn.forward(x);
            }
        }
        for up in &self.upsamplers {
            x = up.forward(x);
        }
        x
    }
}
