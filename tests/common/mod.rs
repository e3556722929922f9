//! Shared by the integration tests: the tiny parity folder and its vectors.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use ddpm_web::native::files::load_model;
use ddpm_web::train::Trainer;
use ddpm_web::weights::{HostTensor, read_safetensors};

/// The checkout under test. Read when the test runs (cargo sets it then too), not baked in when it
/// compiles: a shared target folder serves test binaries to other clones, where the compile-time
/// checkout may be gone.
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The tiny parity model and vectors from diffusers (`tests/data/tiny`, its README says how they were made).
pub fn tiny_dir() -> PathBuf {
    repo_root().join("tests/data/tiny")
}

/// The same tiny model as diffusers' `save_pretrained(safe_serialization=False)` writes it:
/// `diffusion_pytorch_model.bin` (torch.save's zip format; diffusers 0.42.1, torch 2.9).
pub fn tiny_bin_dir() -> PathBuf {
    tiny_dir().with_file_name("tiny-bin")
}

/// The tensors of `tests/data/tiny/NAME`.
pub fn vectors(name: &str) -> BTreeMap<String, HostTensor> {
    data_vectors(&format!("tiny/{name}"))
}

/// The tensors of `tests/data/PATH`.
pub fn data_vectors(name: &str) -> BTreeMap<String, HostTensor> {
    let path = tiny_dir().with_file_name(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    read_safetensors(name, &bytes, true).expect("parity vectors parse")
}

pub fn tensor4(t: &HostTensor, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(t.data.clone(), t.shape.clone()), device)
}

/// Row `i` of a [R, ...] tensor as a 4-d tensor.
pub fn row4(t: &HostTensor, i: usize, device: &Device) -> Tensor<4> {
    let shape = t.shape[1..].to_vec();
    let n: usize = shape.iter().product();
    Tensor::from_data(TensorData::new(t.data[i * n..(i + 1) * n].to_vec(), shape), device)
}

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("f32 tensor")
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// max |a - b| / max(|b|, floor).
pub fn max_rel_diff(a: &[f32], b: &[f32], floor: f32) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs() / y.abs().max(floor)).fold(0.0, f32::max)
}

/// The tiny model's output on the parity input after `steps` Adam steps on four bar images.
pub fn output_after_training(device: &Device, steps: usize) -> Vec<f32> {
    let train_device = device.clone().autodiff();
    let mut model = load_model(&tiny_dir(), &train_device).expect("tiny model loads");
    let bars: Vec<f32> = (0..4 * 256).map(|i| if (i % 16) / 4 == i / 256 { 1.0 } else { -1.0 }).collect();
    let x0 = Tensor::<4>::from_data(TensorData::new(bars, [4, 1, 16, 16]), &train_device);
    let mut trainer = Trainer::new(1e-3, 0, 0);
    for _ in 0..steps {
        model.unet = trainer.step(model.unet, &model.scheduler, x0.clone()).expect("a training step").0;
    }
    let inputs = vectors("inputs.safetensors");
    to_vec(model.unet.valid().forward(tensor4(&inputs["x"], device), &inputs["t"].data))
}

/// On `device`, the tiny UNet matches diffusers, and 5 Adam steps land where flex's do.
pub fn assert_matches_diffusers_and_trains_like_flex(device: &Device, name: &str) {
    let untrained = output_after_training(device, 0);
    let err = max_abs_diff(&untrained, &vectors("expected.safetensors")["unet_out"].data);
    assert!(err <= 1e-4, "{name} unet_out: max abs error {err}");

    let on_flex = output_after_training(&Device::flex(), 5);
    let on_device = output_after_training(device, 5);
    let moved = max_abs_diff(&on_flex, &untrained);
    let apart = max_abs_diff(&on_device, &on_flex);
    assert!(moved > 1e-3, "5 Adam steps barely changed the output ({moved})");
    assert!(
        apart < 1e-2 * moved,
        "after 5 Adam steps {name} is {apart} from flex; the steps moved the output by {moved}"
    );
}
