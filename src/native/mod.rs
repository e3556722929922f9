//! Native I/O, not in the wasm: model folders on disk.

pub mod files;
