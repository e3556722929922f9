//! Native I/O, not in the wasm: model folders on disk and diffusers' older `.bin` weights.

pub mod files;
pub mod pickle;
