//! ddpm-web's patch (PATCH.md): conv2d's input and weight gradients from PyTorch's
//! `aten::convolution_backward` (oneDNN's backward kernels), as PyTorch's autograd computes
//! them, instead of burn's generic fallbacks (a transposed convolution for the input, and a
//! convolution with the output gradient as the kernel for the weight: 2-3x slower at 32x32).

use burn_backend::ops::ConvOptions;
use std::ffi::{CStr, c_char};
use tch::Tensor;
use torch_sys::C_tensor;

unsafe extern "C" {
    fn burn_tch_conv2d_backward(
        x: *const C_tensor,
        weight: *const C_tensor,
        output_grad: *const C_tensor,
        stride: *const i64,
        padding: *const i64,
        dilation: *const i64,
        groups: i64,
        want_x: bool,
        error: *mut *mut c_char,
    ) -> *mut C_tensor;
}

/// The gradient of conv2d(x, weight) for `x` (`want_x`) or for `weight`, given the output's.
/// `options` must have symmetric padding (the caller pads the input first).
pub fn conv2d_backward(
    x: &Tensor,
    weight: &Tensor,
    output_grad: &Tensor,
    options: &ConvOptions<2>,
    want_x: bool,
) -> Tensor {
    let stride = options.stride.map(|i| i as i64);
    let padding = options.padding_begin().map(|i| i as i64);
    let dilation = options.dilation.map(|i| i as i64);
    let mut error = std::ptr::null_mut();
    // SAFETY: the three handles are live tch tensors; the result is a new at::Tensor* that
    // Tensor::from_ptr takes ownership of, or null with `error` set by strdup.
    unsafe {
        let grad = burn_tch_conv2d_backward(
            x.as_ptr(),
            weight.as_ptr(),
            output_grad.as_ptr(),
            stride.as_ptr(),
            padding.as_ptr(),
            dilation.as_ptr(),
            options.groups as i64,
            want_x,
            &mut error,
        );
        if grad.is_null() {
            let message = CStr::from_ptr(error).to_string_lossy().into_owned();
            libc::free(error.cast());
            panic!("aten::convolution_backward failed: {message}");
        }
        Tensor::from_ptr(grad)
    }
}
