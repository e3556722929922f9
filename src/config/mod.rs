//! The two diffusers config files: `config.json` (UNet2DModel, `unet.rs`) and
//! `scheduler_config.json` (DDPMScheduler / DDIMScheduler, `scheduler.rs`). Every field diffusers
//! knows is read with diffusers' default; a field or value we do not implement is an error that
//! names it. Here: what both share, the JSON field reader and the enums spelled as strings.

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

// After the macro: textual scope makes it visible in these files.
mod scheduler;
mod unet;

pub use scheduler::*;
pub use unet::*;

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

    /// A string that must be one of `allowed`.
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
}
