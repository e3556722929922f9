//! ddpm-web's patch (PATCH.md): PyTorch's own backward kernels that tch 0.22 does not bind,
//! where burn's generic fallbacks are slower:
//! - conv2d's weight gradient from `aten::convolution_backward` (oneDNN's backward-weights
//!   kernel) instead of a convolution with the output gradient as the kernel (2.3x slower on the
//!   UNet's convolutions);
//! - `aten::native_group_norm_backward`, for an autodiff group norm built on
//!   `Tensor::native_group_norm` (ddpm-web's `unet/fused.rs`), instead of the backward passes of
//!   the dozen small ops burn composes group norm from.

use burn_backend::ops::ConvOptions;
use std::ffi::{CStr, c_char};
use tch::Tensor;
use torch_sys::C_tensor;

unsafe extern "C" {
    fn burn_tch_conv2d_weight_backward(
        x: *const C_tensor,
        weight: *const C_tensor,
        output_grad: *const C_tensor,
        stride: *const i64,
        padding: *const i64,
        dilation: *const i64,
        groups: i64,
        error: *mut *mut c_char,
    ) -> *mut C_tensor;

    fn burn_tch_group_norm_backward(
        output_grad: *const C_tensor,
        x: *const C_tensor,
        mean: *const C_tensor,
        rstd: *const C_tensor,
        gamma: *const C_tensor,
        n: i64,
        c: i64,
        hxw: i64,
        groups: i64,
        mask: *const bool,
        out: *mut *mut C_tensor,
        error: *mut *mut c_char,
    ) -> i32;
}

/// Panics with libtorch's message, as burn-tch does on other libtorch errors.
///
/// SAFETY: `error` was set by strdup in the shim.
unsafe fn fail(op: &str, error: *mut c_char) -> ! {
    let message = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
    unsafe { libc::free(error.cast()) };
    panic!("aten::{op} failed: {message}");
}

/// The gradient of conv2d(x, weight) for `weight`, given the output's. `options` must have
/// symmetric padding (the caller pads the input first).
pub fn conv2d_weight_backward(
    x: &Tensor,
    weight: &Tensor,
    output_grad: &Tensor,
    options: &ConvOptions<2>,
) -> Tensor {
    let stride = options.stride.map(|i| i as i64);
    let padding = options.padding_begin().map(|i| i as i64);
    let dilation = options.dilation.map(|i| i as i64);
    let mut error = std::ptr::null_mut();
    // SAFETY: the three handles are live tch tensors; the result is a new at::Tensor* that
    // Tensor::from_ptr takes ownership of, or null with `error` set.
    unsafe {
        let grad = burn_tch_conv2d_weight_backward(
            x.as_ptr(),
            weight.as_ptr(),
            output_grad.as_ptr(),
            stride.as_ptr(),
            padding.as_ptr(),
            dilation.as_ptr(),
            options.groups as i64,
            &mut error,
        );
        if grad.is_null() {
            fail("convolution_backward", error);
        }
        Tensor::from_ptr(grad)
    }
}

/// The gradients of `x.native_group_norm(gamma, beta, ..)` for x, gamma and beta, given the
/// output's and the mean and 1/std that the forward returned; `None` where `mask` says not wanted.
/// `x` is [n, c, hxw...] in `groups` groups.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_backward(
    output_grad: &Tensor,
    x: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    gamma: &Tensor,
    [n, c, hxw]: [i64; 3],
    groups: i64,
    mask: [bool; 3],
) -> [Option<Tensor>; 3] {
    let mut out = [std::ptr::null_mut(); 3];
    let mut error = std::ptr::null_mut();
    // SAFETY: the five handles are live tch tensors; on success `out` holds three new
    // at::Tensor* that Tensor::from_ptr takes ownership of (undefined tensors where masked out).
    unsafe {
        let status = burn_tch_group_norm_backward(
            output_grad.as_ptr(),
            x.as_ptr(),
            mean.as_ptr(),
            rstd.as_ptr(),
            gamma.as_ptr(),
            n,
            c,
            hxw,
            groups,
            mask.as_ptr(),
            out.as_mut_ptr(),
            &mut error,
        );
        if status != 0 {
            fail("native_group_norm_backward", error);
        }
        let [dx, dgamma, dbeta] = out.map(|t| Tensor::from_ptr(t));
        [mask[0].then_some(dx), mask[1].then_some(dgamma), mask[2].then_some(dbeta)]
    }
}
