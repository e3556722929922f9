//! diffusion_pytorch_model.safetensors loading into a micro UNet (`fuzz/micro/config.json`, every
//! block kind, 15k parameters): any bytes give the model or an error, never a panic.
#![no_main]

use burn::tensor::Device;
use ddpm_web::model::{Model, ModelSource};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = include_str!("../micro/config.json");

fuzz_target!(|data: &[u8]| {
    let src = ModelSource { config: ("config.json", CONFIG), scheduler: None, weights: ("weights.safetensors", data) };
    let _ = Model::load(src, &Device::flex());
});
