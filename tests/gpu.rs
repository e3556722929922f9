//! Native wgpu: the UNet matches diffusers, and Adam steps land where flex's do. `make test`
//! installs Mesa's Vulkan driver (lavapipe, a software adapter), so this runs without a GPU too.

#![cfg(not(target_family = "wasm"))]

mod common;

use burn::tensor::Device;
use common::*;

/// The one wgpu device of this process (a second `init` is refused).
fn gpu() -> Device {
    static GPU: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
    GPU.get_or_init(|| {
        Device::wgpu_options().init().unwrap_or_else(|e| {
            panic!(
                "no wgpu adapter ({e}): install a Vulkan driver (`make test` installs Mesa's mesa-vulkan-drivers)"
            )
        })
    })
    .clone()
}

#[test]
fn wgpu_matches_diffusers_and_trains_like_flex() {
    assert_matches_diffusers_and_trains_like_flex(&gpu(), "wgpu");
}

/// The page's path: the model loaded on the (non-autodiff) wgpu device itself, where
/// convolution weights are kept channels-last and group norm is one kernel (`unet/cube.rs`):
/// the UNet still matches diffusers, and fine-tuning from that model (the page's panel) takes
/// the steps flex takes.
#[test]
fn wgpu_sampling_layout_matches_diffusers_and_fine_tunes_like_flex() {
    use ddpm_web::native::files::load_model;
    use ddpm_web::train::tune::Tuner;
    let gpu = gpu();
    let inputs = vectors("inputs.safetensors");
    let model = load_model(&tiny_dir(), &gpu).unwrap();
    let out = to_vec(model.unet.forward(tensor4(&inputs["x"], &gpu), &inputs["t"].data));
    let err = max_abs_diff(&out, &vectors("expected.safetensors")["unet_out"].data);
    assert!(err <= 1e-4, "wgpu (sampling layout) unet_out: max abs error {err}");

    let bars: Vec<f32> = (0..4 * 256).map(|i| if (i % 16) / 4 == i / 256 { 1.0 } else { -1.0 }).collect();
    let tuned = |device: &Device| {
        let model = load_model(&tiny_dir(), device).unwrap();
        let mut tuner = Tuner::new(&model.unet, bars.clone(), 1e-3, 0).unwrap();
        for _ in 0..5 {
            tuner.step(&model.scheduler, 4).unwrap();
        }
        let x = tensor4(&inputs["x"], device);
        to_vec(tuner.model().unwrap().forward(x, &inputs["t"].data))
    };
    let (on_flex, on_gpu) = (tuned(&Device::flex()), tuned(&gpu));
    let moved = max_abs_diff(&on_flex, &out);
    let apart = max_abs_diff(&on_gpu, &on_flex);
    assert!(moved > 1e-3, "5 fine-tuning steps barely changed the output ({moved})");
    assert!(apart < 1e-2 * moved, "fine-tuned on wgpu, {apart} from flex; the steps moved it by {moved}");
}
