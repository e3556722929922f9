//! Native wgpu: the UNet matches diffusers, and Adam steps land where flex's do. `make test`
//! installs Mesa's Vulkan driver (lavapipe, a software adapter), so this runs without a GPU too.

#![cfg(not(target_family = "wasm"))]

mod common;

use burn::tensor::Device;
use common::*;

#[test]
fn wgpu_matches_diffusers_and_trains_like_flex() {
    let gpu = Device::wgpu_options().init().unwrap_or_else(|e| {
        panic!(
            "no wgpu adapter ({e}): install a Vulkan driver (`make test` installs Mesa's mesa-vulkan-drivers)"
        )
    });
    assert_matches_diffusers_and_trains_like_flex(&gpu, "wgpu");
}
