//! Shared by the integration tests: the tiny parity folder and its vectors.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use ddpm_web::weights::{HostTensor, read_safetensors};

/// The tiny parity model and vectors from diffusers (a copy of `shared/parity/tiny`).
pub fn tiny_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny")
}

pub fn vectors(name: &str) -> BTreeMap<String, HostTensor> {
    let path = tiny_dir().join(name);
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
