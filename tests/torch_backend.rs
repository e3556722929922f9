//! burn's LibTorch backend as ddpm-web runs it: the patched burn-tch (vendor/burn-tch/PATCH.md),
//! whose conv2d weight gradient from PyTorch's convolution backward (and the input's, burn's
//! fallback) match burn flex's, for the convolutions the UNet has (3x3 with padding 1, the
//! stride-2 downsampler, 1x1 shortcuts) and for the cases the patch handles apart (asymmetric
//! padding, dilation, groups); and the whole UNet with group norm and SiLU as one PyTorch kernel
//! each (src/unet/fused.rs), forward and training. Runs with the `torch` feature: `make
//! test-torch`.

#![cfg(feature = "torch")]
#![allow(deprecated)]

mod common;

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};
use common::{assert_matches_diffusers_and_trains_like_flex, max_abs_diff, to_vec};

/// Deterministic values in [-1, 1).
fn values(n: usize, salt: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919 + salt * 104_729) % 2000) as f32 / 1000.0 - 1.0).collect()
}

/// d(sum(conv2d(x, w, b) * g)) / dx and / dw on this device.
fn grads(device: &Device, x: [usize; 4], w: [usize; 4], options: &ConvOptions<2>) -> (Vec<f32>, Vec<f32>) {
    let device = device.clone().autodiff();
    let tensor = |shape: [usize; 4], salt| {
        Tensor::<4>::from_data(TensorData::new(values(shape.iter().product(), salt), shape), &device)
    };
    let (xt, wt) = (tensor(x, 1).require_grad(), tensor(w, 2).require_grad());
    let bias = Tensor::<1>::from_data(TensorData::new(values(w[0], 3), [w[0]]), &device);
    let y = conv2d(xt.clone(), wt.clone(), Some(bias), options.clone());
    let g = Tensor::<4>::from_data(TensorData::new(values(y.dims().iter().product(), 4), y.dims()), &device);
    let grads = (y * g).sum().backward();
    (to_vec(xt.grad(&grads).expect("x's gradient")), to_vec(wt.grad(&grads).expect("w's gradient")))
}

#[test]
fn conv2d_gradients_match_burn_flex() {
    let cases = [
        ("3x3, padding 1", [4, 8, 16, 16], [16, 8, 3, 3], ConvOptions::new([1, 1], [1, 1], [1, 1], 1)),
        ("3x3, stride 2", [4, 8, 16, 16], [8, 8, 3, 3], ConvOptions::new([2, 2], [1, 1], [1, 1], 1)),
        ("1x1 shortcut", [4, 8, 8, 8], [16, 8, 1, 1], ConvOptions::new([1, 1], [0, 0], [1, 1], 1)),
        (
            "asymmetric padding",
            [2, 4, 9, 7],
            [6, 4, 3, 3],
            ConvOptions::new_with_padding([1, 2], [(0, 1), (2, 1)], [1, 1], 1),
        ),
        ("dilation 2, groups 2", [2, 4, 12, 12], [6, 2, 3, 3], ConvOptions::new([1, 1], [2, 2], [2, 2], 2)),
    ];
    for (name, x, w, options) in cases {
        let (x_torch, w_torch) = grads(&Device::libtorch(), x, w, &options);
        let (x_flex, w_flex) = grads(&Device::flex(), x, w, &options);
        for (what, torch, flex) in [("input", x_torch, x_flex), ("weight", w_torch, w_flex)] {
            let scale = flex.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let diff = max_abs_diff(&torch, &flex);
            assert!(
                scale > 0.0 && diff <= 1e-4 * scale,
                "{name}: {what} gradients differ by {diff} (largest {scale})"
            );
        }
    }
}

#[test]
fn unet_matches_diffusers_and_trains_like_flex() {
    assert_matches_diffusers_and_trains_like_flex(&Device::libtorch(), "libtorch");
}
