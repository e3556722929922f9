//! `config.json`: diffusers' `UNet2DModel` config, its block types, and the limits checked before
//! anything is allocated.

use serde::Serialize;
use serde_json::Value;

use super::{ConfigEnum, Fields};
use crate::error::{Error, Result};

config_enum! {
    /// diffusers' down blocks (`down_block_types`).
    DownBlockType { DownBlock2D = "DownBlock2D", AttnDownBlock2D = "AttnDownBlock2D" }
}

config_enum! {
    /// diffusers' up blocks (`up_block_types`).
    UpBlockType { UpBlock2D = "UpBlock2D", AttnUpBlock2D = "AttnUpBlock2D" }
}

config_enum! {
    /// diffusers' middle block (`mid_block_type`; null for none).
    MidBlockType { UNetMidBlock2D = "UNetMidBlock2D" }
}

config_enum! {
    /// How a resnet adds the time embedding (`resnet_time_scale_shift`): `default` adds it,
    /// `scale_shift` uses it as a scale and a shift after the group norm.
    TimeScaleShift { Default = "default", ScaleShift = "scale_shift" }
}

impl DownBlockType {
    pub fn has_attention(self) -> bool {
        self == Self::AttnDownBlock2D
    }
}

impl UpBlockType {
    pub fn has_attention(self) -> bool {
        self == Self::AttnUpBlock2D
    }
}

/// The UNet2DModel config, resolved: every field holds the value diffusers would use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UNetConfig {
    pub sample_size: [usize; 2],
    pub in_channels: usize,
    pub out_channels: usize,
    pub center_input_sample: bool,
    pub time_embedding_dim: Option<usize>,
    pub freq_shift: f64,
    pub flip_sin_to_cos: bool,
    pub down_block_types: Vec<DownBlockType>,
    pub mid_block_type: Option<MidBlockType>,
    pub up_block_types: Vec<UpBlockType>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub mid_block_scale_factor: f64,
    pub downsample_padding: usize,
    pub dropout: f64,
    pub attention_head_dim: Option<usize>,
    pub norm_num_groups: usize,
    pub attn_norm_num_groups: Option<usize>,
    pub norm_eps: f64,
    pub resnet_time_scale_shift: TimeScaleShift,
    pub add_attention: bool,
}

/// Limits checked before anything is allocated (diffusers' largest UNet2DModel checkpoints
/// stay far below them).
pub const MAX_BLOCKS: usize = 8;
pub const MAX_CHANNELS: usize = 4096;
pub const MAX_SAMPLE_SIZE: usize = 2048;
pub const MAX_PARAMS: u64 = 1_000_000_000;

impl UNetConfig {
    /// Parses `config.json`; `file` names it in errors.
    pub fn from_json(file: &str, text: &str) -> Result<Self> {
        use DownBlockType::{AttnDownBlock2D, DownBlock2D};
        use MidBlockType::UNetMidBlock2D;
        use UpBlockType::{AttnUpBlock2D, UpBlock2D};
        let mut f = Fields::parse(file, text)?;
        let sample_size = match f.take("sample_size") {
            None | Some(Value::Null) => [32, 32],
            Some(v) => match (&v, v.as_u64()) {
                (_, Some(n)) => [n as usize; 2],
                (Value::Array(a), None) if a.len() == 2 && a.iter().all(|x| x.as_u64().is_some()) => {
                    [a[0].as_u64().unwrap() as usize, a[1].as_u64().unwrap() as usize]
                }
                _ => return Err(f.wrong("sample_size", "an integer or [height, width]", &v)),
            },
        };
        let ints = |v: &Value| v.as_u64().map(|n| n as usize);
        let cfg = UNetConfig {
            sample_size,
            in_channels: f.usize("in_channels", 3)?,
            out_channels: f.usize("out_channels", 3)?,
            center_input_sample: f.bool("center_input_sample", false)?,
            time_embedding_dim: f.opt_usize("time_embedding_dim", None)?,
            freq_shift: f.f64("freq_shift", 0.0)?,
            flip_sin_to_cos: f.bool("flip_sin_to_cos", true)?,
            down_block_types: f.names(
                "down_block_types",
                &[DownBlock2D, AttnDownBlock2D, AttnDownBlock2D, AttnDownBlock2D],
            )?,
            mid_block_type: match f.opt_string("mid_block_type", Some(UNetMidBlock2D.name()))? {
                None => None,
                Some(s) => Some(MidBlockType::from_name(&s).ok_or_else(|| {
                    f.unsupported("mid_block_type", format!("\"{s}\""), "supported: UNetMidBlock2D, null")
                })?),
            },
            up_block_types: f
                .names("up_block_types", &[AttnUpBlock2D, AttnUpBlock2D, AttnUpBlock2D, UpBlock2D])?,
            block_out_channels: f.list(
                "block_out_channels",
                vec![224, 448, 672, 896],
                ints,
                "a list of integers",
            )?,
            layers_per_block: f.usize("layers_per_block", 2)?,
            mid_block_scale_factor: f.f64("mid_block_scale_factor", 1.0)?,
            downsample_padding: f.usize("downsample_padding", 1)?,
            dropout: f.f64("dropout", 0.0)?,
            attention_head_dim: f.opt_usize("attention_head_dim", Some(8))?,
            norm_num_groups: match f.opt_usize("norm_num_groups", Some(32))? {
                Some(g) => g,
                None => {
                    return Err(f.unsupported(
                        "norm_num_groups",
                        "null",
                        "an integer number of groups is required",
                    ));
                }
            },
            attn_norm_num_groups: f.opt_usize("attn_norm_num_groups", None)?,
            norm_eps: f.f64("norm_eps", 1e-5)?,
            resnet_time_scale_shift: f.choose("resnet_time_scale_shift", TimeScaleShift::Default)?,
            add_attention: f.bool("add_attention", true)?,
        };
        f.choice("time_embedding_type", "positional", &["positional"])?;
        f.choice("act_fn", "silu", &["silu", "swish"])?;
        f.choice("downsample_type", "conv", &["conv"])?;
        f.choice("upsample_type", "conv", &["conv"])?;
        for field in ["class_embed_type", "num_class_embeds"] {
            match f.take(field) {
                None | Some(Value::Null) => {}
                Some(v) => {
                    return Err(f.unsupported(
                        field,
                        v,
                        "class-conditional UNets are not implemented; it must be null",
                    ));
                }
            }
        }
        // Only read by diffusers for time_embedding_type = "learned", which is refused above.
        f.take("num_train_timesteps");
        f.finish(&[])?;
        cfg.validate(file)?;
        Ok(cfg)
    }

    fn validate(&self, file: &str) -> Result<()> {
        let bad = |field: &str, value: String, hint: &str| {
            Err(Error::Unsupported { file: file.into(), field: field.into(), value, hint: hint.into() })
        };
        let n = self.block_out_channels.len();
        if n == 0 || n > MAX_BLOCKS {
            return bad("block_out_channels", format!("{n} entries"), &format!("1 to {MAX_BLOCKS} blocks"));
        }
        let channels = self.block_out_channels.iter().chain([&self.in_channels, &self.out_channels]);
        if let Some(c) = channels.chain(&self.time_embedding_dim).find(|c| **c > MAX_CHANNELS) {
            return bad(
                "block_out_channels / in_channels / out_channels / time_embedding_dim",
                c.to_string(),
                &format!("at most {MAX_CHANNELS}"),
            );
        }
        if self.layers_per_block > 64 {
            return bad("layers_per_block", self.layers_per_block.to_string(), "at most 64");
        }
        if self.sample_size.iter().any(|s| *s > MAX_SAMPLE_SIZE) {
            return bad(
                "sample_size",
                format!("{:?}", self.sample_size),
                &format!("at most {MAX_SAMPLE_SIZE}"),
            );
        }
        if self.down_block_types.len() != n || self.up_block_types.len() != n {
            return bad(
                "down_block_types / up_block_types",
                format!("{} / {} entries", self.down_block_types.len(), self.up_block_types.len()),
                &format!("both must have one entry per block_out_channels ({n})"),
            );
        }
        if self.layers_per_block == 0 {
            return bad("layers_per_block", "0".into(), "at least 1");
        }
        if self.downsample_padding > 1 {
            return bad("downsample_padding", self.downsample_padding.to_string(), "supported: 0, 1");
        }
        let divisors = [
            ("norm_num_groups", Some(self.norm_num_groups)),
            ("attn_norm_num_groups", self.attn_norm_num_groups),
            ("attention_head_dim", self.attention_head_dim),
        ];
        for (field, d) in divisors {
            let Some(d) = d else { continue };
            if let Some(c) = self.block_out_channels.iter().find(|c| d == 0 || **c % d != 0) {
                return bad(
                    field,
                    d.to_string(),
                    &format!("must divide every block_out_channels entry ({c})"),
                );
            }
        }
        if self.block_out_channels[0] < 2 {
            return bad(
                "block_out_channels",
                format!("{:?}", self.block_out_channels),
                "the first entry must be at least 2",
            );
        }
        if self.in_channels == 0 || self.out_channels == 0 {
            return bad(
                "in_channels / out_channels",
                format!("{} / {}", self.in_channels, self.out_channels),
                "at least 1",
            );
        }
        if self.in_channels != self.out_channels {
            let hint = "must be equal: the UNet predicts the noise eps added to x, of x's shape (learned variances are not supported)";
            return bad(
                "in_channels / out_channels",
                format!("{} / {}", self.in_channels, self.out_channels),
                hint,
            );
        }
        let down = 1usize << (n - 1);
        if self.sample_size.iter().any(|s| *s == 0 || s % down != 0) {
            return bad(
                "sample_size",
                format!("{:?}", self.sample_size),
                &format!("must be a positive multiple of {down} (2^(blocks-1))"),
            );
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", self.dropout.to_string(), "must be in [0, 1)");
        }
        let params = self.approx_params();
        if params > MAX_PARAMS {
            return bad(
                "block_out_channels / layers_per_block",
                format!("about {params} parameters"),
                &format!("at most {MAX_PARAMS}"),
            );
        }
        Ok(())
    }

    /// The UNet's parameter count to within a few percent (3x3 convolutions, time projections,
    /// attention, shortcuts; norms and biases left out), to refuse absurd configs before building.
    pub fn approx_params(&self) -> u64 {
        let [layers, t] = [self.layers_per_block, self.time_embed_dim()].map(|x| x as u64);
        let resnet = |i: u64, o: u64| 9 * i * o + 9 * o * o + t * o + if i == o { 0 } else { i * o };
        let attn = |o: u64, on: bool| if on { 4 * o * o } else { 0 };
        let ch: Vec<u64> = self.block_out_channels.iter().map(|c| *c as u64).collect();
        let last = ch[ch.len() - 1];
        let mut total = 2 * t * t + 9 * ch[0] * (self.in_channels + self.out_channels) as u64;
        for (k, &o) in ch.iter().enumerate() {
            let prev = if k == 0 { o } else { ch[k - 1] };
            let on = self.down_block_types[k].has_attention();
            total += resnet(prev, o) + (layers - 1) * resnet(o, o) + layers * attn(o, on);
            total += (layers + 1) * (resnet(2 * o, o) + attn(o, on)) + 18 * o * o; // up path and resampling
        }
        if self.mid_block_type.is_some() {
            total += 2 * resnet(last, last) + attn(last, self.add_attention);
        }
        total
    }

    /// The largest tensor one UNet call holds for `n` images, in f32 bytes: an up block's first
    /// convolution input (its input and the skip concatenated, at most this level's channels and
    /// the next's) or an attention's score matrix (heads x (h w)^2). WebGPU caps the size of one
    /// buffer (maxStorageBufferBindingSize), so the page splits a batch whose largest tensor is
    /// over it and refuses a model whose single image is. burn's convolutions on WebGPU (direct or
    /// implicit GEMM) hold no unfolded copy of their input.
    pub fn largest_tensor_bytes(&self, n: usize) -> u64 {
        let [h, w] = self.sample_size;
        let ch = &self.block_out_channels;
        let levels = ch.len();
        let mut largest = 0u64;
        for (k, &c) in ch.iter().enumerate() {
            let pixels = ((h >> k).max(1) * (w >> k).max(1)) as u64;
            let next = ch[(k + 1).min(levels - 1)];
            largest = largest.max((c + next) as u64 * pixels);
            let deepest_mid = k == levels - 1 && self.mid_block_type.is_some() && self.add_attention;
            if self.down_block_types[k].has_attention() || deepest_mid {
                let heads = (c / self.attention_head_dim.unwrap_or(c).max(1)).max(1) as u64;
                largest = largest.max(heads * pixels * pixels);
            }
        }
        4 * n as u64 * largest
    }

    /// Width of the time embedding MLP (`time_embedding_dim`, else 4 x the first block).
    pub fn time_embed_dim(&self) -> usize {
        self.time_embedding_dim.unwrap_or(self.block_out_channels[0] * 4)
    }

    /// `config.json` as diffusers writes it, so `UNet2DModel.from_pretrained` reads it back.
    pub fn to_json(&self) -> String {
        let mut v = serde_json::to_value(self).expect("config serializes");
        let m = v.as_object_mut().expect("object");
        m.insert("_class_name".into(), "UNet2DModel".into());
        m.insert("_diffusers_version".into(), "0.42.1".into());
        m.insert("act_fn".into(), "silu".into());
        m.insert("time_embedding_type".into(), "positional".into());
        m.insert("downsample_type".into(), "conv".into());
        m.insert("upsample_type".into(), "conv".into());
        m.insert("class_embed_type".into(), Value::Null);
        m.insert("num_class_embeds".into(), Value::Null);
        m.insert("num_train_timesteps".into(), Value::Null);
        if self.sample_size[0] == self.sample_size[1] {
            m.insert("sample_size".into(), self.sample_size[0].into());
        }
        serde_json::to_string_pretty(&v).expect("config serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest tensors of the Hub's CIFAR-10 and 256-pixel configs: the top level's first up
    /// convolution, (128 + 256) x 32 x 32 and (128 + 128) x 256 x 256 values per image.
    #[test]
    fn largest_tensor_of_the_hub_configs() {
        let read = |name: &str| {
            // Where the test runs, not where it compiled: a shared target folder serves other clones.
            let root =
                std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
            let path = format!("{root}/tests/data/hub/{name}/config.json");
            UNetConfig::from_json(&path, &std::fs::read_to_string(&path).unwrap()).unwrap()
        };
        let cifar = read("ddpm-cifar10-32");
        assert_eq!(cifar.largest_tensor_bytes(1), 4 * 384 * 32 * 32);
        assert_eq!(cifar.largest_tensor_bytes(16), 16 * cifar.largest_tensor_bytes(1));
        assert_eq!(read("ddpm-celebahq-256").largest_tensor_bytes(1), 4 * 256 * 256 * 256);
    }

    #[test]
    fn an_unknown_block_names_the_field_the_value_and_the_supported_ones() {
        let e = UNetConfig::from_json("c.json", r#"{"down_block_types": ["DownBlock2D", "KDownBlock2D"]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("down_block_types") && e.contains("\"KDownBlock2D\""), "{e}");
        assert!(e.contains("supported: DownBlock2D, AttnDownBlock2D"), "{e}");
    }

    #[test]
    fn a_config_written_is_read_back_the_same() {
        let cfg = UNetConfig::from_json(
            "c.json",
            r#"{"block_out_channels": [32, 64], "down_block_types": ["AttnDownBlock2D", "DownBlock2D"],
                "up_block_types": ["UpBlock2D", "AttnUpBlock2D"], "mid_block_type": null,
                "resnet_time_scale_shift": "scale_shift"}"#,
        )
        .unwrap();
        assert_eq!(cfg.mid_block_type, None);
        assert_eq!(UNetConfig::from_json("again.json", &cfg.to_json()).unwrap(), cfg);
    }
}
