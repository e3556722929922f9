//! The two diffusers config files: `config.json` (UNet2DModel) and `scheduler_config.json`
//! (DDPMScheduler / DDIMScheduler). Every field diffusers knows is read with diffusers'
//! default; a field or value we do not implement is an error that names it.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// An enum that config files spell as strings (diffusers' class and option names): its variants,
/// the name of each, and parsing that refuses any other name with the supported ones listed.
macro_rules! config_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl ConfigEnum for $name {
            const ALL: &'static [Self] = &[$(Self::$variant),+];
            fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }
    };
}

/// What `config_enum!` gives each enum.
pub trait ConfigEnum: Copy + 'static {
    const ALL: &'static [Self];
    /// The name config files use.
    fn name(self) -> &'static str;
    /// The variant a config file names, if any.
    fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.name() == s)
    }
    /// "supported: a, b", for errors.
    fn supported() -> String {
        format!("supported: {}", Self::ALL.iter().map(|v| v.name()).collect::<Vec<_>>().join(", "))
    }
}

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

/// Reads fields out of one JSON object, remembering which were used.
struct Fields<'a> {
    file: &'a str,
    map: Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn parse(file: &'a str, text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::Config { file: file.into(), message: format!("invalid JSON: {e}") })?;
        match value {
            Value::Object(map) => Ok(Fields { file, map }),
            other => Err(Error::Config {
                file: file.into(),
                message: format!("expected a JSON object, found {}", kind(&other)),
            }),
        }
    }

    fn wrong(&self, field: &str, want: &str, v: &Value) -> Error {
        Error::Config {
            file: self.file.into(),
            message: format!("field `{field}` must be {want}, found {v}"),
        }
    }

    fn unsupported(&self, field: &str, value: impl std::fmt::Display, hint: &str) -> Error {
        f_unsupported(self.file, field, value, hint)
    }

    /// The field's value; `None` when absent. `null` is returned as `Some(Null)`.
    fn take(&mut self, field: &str) -> Option<Value> {
        self.map.remove(field)
    }

    fn usize(&mut self, field: &str, default: usize) -> Result<usize> {
        match self.take(field) {
            None => Ok(default),
            Some(v) => {
                v.as_u64().map(|n| n as usize).ok_or_else(|| self.wrong(field, "a non-negative integer", &v))
            }
        }
    }

    fn opt_usize(&mut self, field: &str, default: Option<usize>) -> Result<Option<usize>> {
        match self.take(field) {
            None => Ok(default),
            Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| self.wrong(field, "an integer or null", &v)),
        }
    }

    fn f64(&mut self, field: &str, default: f64) -> Result<f64> {
        match self.take(field) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.wrong(field, "a number", &v)),
        }
    }

    fn bool(&mut self, field: &str, default: bool) -> Result<bool> {
        match self.take(field) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.wrong(field, "true or false", &v)),
        }
    }

    fn opt_string(&mut self, field: &str, default: Option<&str>) -> Result<Option<String>> {
        match self.take(field) {
            None => Ok(default.map(String::from)),
            Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong(field, "a string or null", &v)),
        }
    }

    fn string(&mut self, field: &str, default: &str) -> Result<String> {
        match self.opt_string(field, Some(default))? {
            Some(s) => Ok(s),
            None => Err(self.wrong(field, "a string", &Value::Null)),
        }
    }

    /// A string that must be one of `allowed`.
    /// A string field that names one of `T`'s variants.
    fn choose<T: ConfigEnum>(&mut self, field: &str, default: T) -> Result<T> {
        let s = self.string(field, default.name())?;
        T::from_name(&s).ok_or_else(|| self.unsupported(field, format!("\"{s}\""), &T::supported()))
    }

    /// A list field whose entries each name one of `T`'s variants.
    fn names<T: ConfigEnum>(&mut self, field: &str, default: &[T]) -> Result<Vec<T>> {
        let strings = |v: &Value| v.as_str().map(String::from);
        let default = default.iter().map(|t| t.name().to_string()).collect();
        let names = self.list(field, default, strings, "a list of block names")?;
        names
            .iter()
            .map(|s| {
                T::from_name(s).ok_or_else(|| self.unsupported(field, format!("\"{s}\""), &T::supported()))
            })
            .collect()
    }

    fn choice(&mut self, field: &str, default: &str, allowed: &[&str]) -> Result<String> {
        let s = self.string(field, default)?;
        if allowed.contains(&s.as_str()) {
            Ok(s)
        } else {
            Err(self.unsupported(field, format!("\"{s}\""), &format!("supported: {}", allowed.join(", "))))
        }
    }

    fn list<T>(
        &mut self,
        field: &str,
        default: Vec<T>,
        item: impl Fn(&Value) -> Option<T>,
        want: &str,
    ) -> Result<Vec<T>> {
        match self.take(field) {
            None => Ok(default),
            Some(v) => v
                .as_array()
                .and_then(|a| a.iter().map(&item).collect::<Option<Vec<T>>>())
                .ok_or_else(|| self.wrong(field, want, &v)),
        }
    }

    /// Any field left over is one we do not know: refuse it rather than ignore it.
    /// Keys starting with `_` are diffusers' metadata (`_class_name`, `_diffusers_version`).
    fn finish(self, also_ignored: &[&str]) -> Result<()> {
        let unknown: Vec<&String> =
            self.map.keys().filter(|k| !k.starts_with('_') && !also_ignored.contains(&k.as_str())).collect();
        match unknown.first() {
            None => Ok(()),
            Some(k) => Err(Error::Unsupported {
                file: self.file.into(),
                field: (*k).clone(),
                value: self.map[*k].to_string(),
                hint: "this field is not known to UNet2DModel / DDPMScheduler as implemented here".into(),
            }),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
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
        let groups = self.norm_num_groups;
        if let Some(c) = self.block_out_channels.iter().find(|c| groups == 0 || **c % groups != 0) {
            return bad(
                "norm_num_groups",
                groups.to_string(),
                &format!("must divide every block_out_channels entry ({c})"),
            );
        }
        if let Some(g) = self.attn_norm_num_groups
            && let Some(c) = self.block_out_channels.iter().find(|c| g == 0 || **c % g != 0)
        {
            return bad(
                "attn_norm_num_groups",
                g.to_string(),
                &format!("must divide every block_out_channels entry ({c})"),
            );
        }
        if let Some(d) = self.attention_head_dim
            && let Some(c) = self.block_out_channels.iter().find(|c| d == 0 || **c % d != 0)
        {
            return bad(
                "attention_head_dim",
                d.to_string(),
                &format!("must divide every block_out_channels entry ({c})"),
            );
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

config_enum! {
    /// What the network predicts (diffusers' `prediction_type`).
    Prediction { Epsilon = "epsilon", Sample = "sample", VPrediction = "v_prediction" }
}

config_enum! {
    /// The reverse process's variance (`variance_type`).
    VarianceType {
        /// sigma_t^2 = beta~_t, the posterior variance.
        FixedSmall = "fixed_small",
        /// sigma_t^2 = beta_t.
        FixedLarge = "fixed_large",
    }
}

config_enum! {
    /// Where the sampling timesteps fall among the training ones (`timestep_spacing`).
    Spacing { Leading = "leading", Trailing = "trailing", Linspace = "linspace" }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    Linear,
    ScaledLinear,
    SquaredcosCapV2,
    Trained(Vec<f64>),
}

/// The scheduler config (DDPMScheduler's fields, plus DDIM's `set_alpha_to_one`).
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    pub variance_type: VarianceType,
    pub clip_sample: bool,
    pub clip_sample_range: f64,
    pub prediction_type: Prediction,
    pub timestep_spacing: Spacing,
    pub steps_offset: usize,
    pub set_alpha_to_one: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig::from_json("defaults", "{}").expect("defaults parse")
    }
}

impl SchedulerConfig {
    pub fn from_json(file: &str, text: &str) -> Result<Self> {
        let mut f = Fields::parse(file, text)?;
        let num_train_timesteps = f.usize("num_train_timesteps", 1000)?;
        let trained = match f.take("trained_betas") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_array()
                    .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>())
                    .ok_or_else(|| f.wrong("trained_betas", "a list of numbers or null", &v))?,
            ),
        };
        let schedule =
            f.choice("beta_schedule", "linear", &["linear", "scaled_linear", "squaredcos_cap_v2"])?;
        let beta_schedule = match (trained, schedule.as_str()) {
            (Some(b), _) => BetaSchedule::Trained(b),
            (None, "linear") => BetaSchedule::Linear,
            (None, "scaled_linear") => BetaSchedule::ScaledLinear,
            (None, _) => BetaSchedule::SquaredcosCapV2,
        };
        let cfg = SchedulerConfig {
            num_train_timesteps,
            beta_start: f.f64("beta_start", 0.0001)?,
            beta_end: f.f64("beta_end", 0.02)?,
            beta_schedule,
            variance_type: f.choose("variance_type", VarianceType::FixedSmall)?,
            clip_sample: f.bool("clip_sample", true)?,
            clip_sample_range: f.f64("clip_sample_range", 1.0)?,
            prediction_type: f.choose("prediction_type", Prediction::Epsilon)?,
            timestep_spacing: f.choose("timestep_spacing", Spacing::Leading)?,
            steps_offset: f.usize("steps_offset", 0)?,
            set_alpha_to_one: f.bool("set_alpha_to_one", true)?,
        };
        for field in ["thresholding", "rescale_betas_zero_snr"] {
            if f.bool(field, false)? {
                return Err(f.unsupported(field, "true", "not implemented; it must be false"));
            }
        }
        // Only read by diffusers when `thresholding` is true, which is refused above.
        f.f64("dynamic_thresholding_ratio", 0.995)?;
        f.f64("sample_max_value", 1.0)?;
        // Fields of other schedulers' configs saved with a DDPM model (PNDM's, DDIM's): not used by DDPM/DDIM sampling.
        f.finish(&["skip_prk_steps"])?;
        if cfg.num_train_timesteps < 2 || cfg.num_train_timesteps > 100_000 {
            return Err(f_unsupported(
                file,
                "num_train_timesteps",
                cfg.num_train_timesteps,
                "must be between 2 and 100000",
            ));
        }
        // Betas outside (0, 1) make alpha_t = 1 - beta_t zero or negative: sampling would run
        // on nonsense. linear and scaled_linear stay between beta_start and beta_end.
        if matches!(cfg.beta_schedule, BetaSchedule::Linear | BetaSchedule::ScaledLinear) {
            for (field, beta) in [("beta_start", cfg.beta_start), ("beta_end", cfg.beta_end)] {
                if !(beta > 0.0 && beta < 1.0) {
                    return Err(f_unsupported(file, field, beta, "a beta must be in (0, 1)"));
                }
            }
        }
        if let BetaSchedule::Trained(b) = &cfg.beta_schedule {
            if b.len() != cfg.num_train_timesteps {
                return Err(f_unsupported(
                    file,
                    "trained_betas",
                    format!("{} values", b.len()),
                    &format!("must have num_train_timesteps ({}) values", cfg.num_train_timesteps),
                ));
            }
            if let Some(x) = b.iter().find(|x| !(**x > 0.0 && **x < 1.0)) {
                return Err(f_unsupported(file, "trained_betas", x, "every beta must be in (0, 1)"));
            }
        }
        if cfg.clip_sample_range.is_nan() || cfg.clip_sample_range <= 0.0 {
            return Err(f_unsupported(file, "clip_sample_range", cfg.clip_sample_range, "must be positive"));
        }
        Ok(cfg)
    }

    /// `scheduler_config.json` as diffusers' DDPMScheduler writes it.
    pub fn to_json(&self) -> String {
        let (schedule, trained) = match &self.beta_schedule {
            BetaSchedule::Trained(b) => ("linear", serde_json::to_value(b).expect("numbers")),
            other => (
                match other {
                    BetaSchedule::Linear => "linear",
                    BetaSchedule::ScaledLinear => "scaled_linear",
                    _ => "squaredcos_cap_v2",
                },
                Value::Null,
            ),
        };
        let v = serde_json::json!({
            "_class_name": "DDPMScheduler",
            "_diffusers_version": "0.42.1",
            "num_train_timesteps": self.num_train_timesteps,
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
            "beta_schedule": schedule,
            "trained_betas": trained,
            "variance_type": self.variance_type,
            "clip_sample": self.clip_sample,
            "clip_sample_range": self.clip_sample_range,
            "prediction_type": self.prediction_type,
            "thresholding": false,
            "dynamic_thresholding_ratio": 0.995,
            "sample_max_value": 1.0,
            "timestep_spacing": self.timestep_spacing,
            "steps_offset": self.steps_offset,
            "rescale_betas_zero_snr": false,
        });
        serde_json::to_string_pretty(&v).expect("config serializes")
    }
}

fn f_unsupported(file: &str, field: &str, value: impl std::fmt::Display, hint: &str) -> Error {
    Error::Unsupported { file: file.into(), field: field.into(), value: value.to_string(), hint: hint.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: ConfigEnum + std::fmt::Debug + PartialEq>() {
        for v in T::ALL {
            assert_eq!(T::from_name(v.name()), Some(*v));
        }
        assert_eq!(T::from_name("CrossAttnDownBlock2D"), None);
    }

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
    fn config_enums_read_back_the_names_they_write() {
        round_trip::<DownBlockType>();
        round_trip::<UpBlockType>();
        round_trip::<MidBlockType>();
        round_trip::<TimeScaleShift>();
        round_trip::<Prediction>();
        round_trip::<VarianceType>();
        round_trip::<Spacing>();
        assert_eq!(serde_json::to_string(&Spacing::Linspace).unwrap(), "\"linspace\"");
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
    fn betas_outside_zero_to_one_are_refused_by_name() {
        let e = SchedulerConfig::from_json("s.json", r#"{"beta_start": 0.5, "beta_end": 2.0}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("s.json") && e.contains("beta_end") && e.contains('2'), "{e}");
        let e =
            SchedulerConfig::from_json("s.json", r#"{"beta_start": 0, "beta_schedule": "scaled_linear"}"#)
                .unwrap_err()
                .to_string();
        assert!(e.contains("beta_start"), "{e}");
        assert!(SchedulerConfig::from_json("s.json", r#"{"beta_schedule": "squaredcos_cap_v2"}"#).is_ok());
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
