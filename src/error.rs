//! One error type for the core: every message names what is wrong and where.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// A config file could not be parsed (JSON syntax or a field of the wrong type).
    #[error("{file}: {message}")]
    Config { file: String, message: String },

    /// A config field holds a value this implementation does not support.
    #[error("{file}: unsupported value for `{field}`: {value} ({hint})")]
    Unsupported { file: String, field: String, value: String, hint: String },

    /// The safetensors container itself is broken (truncated, bad header, ...).
    #[error("{file}: not a valid safetensors file: {message}")]
    Safetensors { file: String, message: String },

    /// One tensor does not fit the model: wrong shape, dtype or values.
    #[error("{file}: tensor `{tensor}`: {message}")]
    Tensor { file: String, tensor: String, message: String },

    /// The weights and the model do not have the same set of tensors.
    #[error(
        "{file}: weights do not match the model config:{}{}",
        list("missing", missing),
        list("unexpected", unexpected)
    )]
    Keys { file: String, missing: Vec<String>, unexpected: Vec<String> },

    /// A request that would need absurd resources or makes no sense.
    #[error("invalid request: {0}")]
    Request(String),

    /// A file or folder could not be read or written.
    #[error("{path}: {message}")]
    Io { path: String, message: String },

    /// The compute backend failed (device lost, readback failed, ...).
    #[error("backend error: {0}")]
    Backend(String),

    /// The user cancelled the run.
    #[error("cancelled")]
    Cancelled,
}

fn list(what: &str, keys: &[String]) -> String {
    if keys.is_empty() { String::new() } else { format!("\n  {what} ({}): {}", keys.len(), keys.join(", ")) }
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl std::fmt::Display, err: impl std::fmt::Display) -> Self {
        Error::Io { path: path.to_string(), message: err.to_string() }
    }
}
