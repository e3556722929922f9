//! ddpm-web's patch (PATCH.md): the weight gradient of a 2D convolution as gemms of a good shape.
//!
//! dW[co, (ci, kh, kw)] = sum over images b and output pixels p of gO[b, co, p] * cols[(ci, kh, kw), (b, p)],
//! where `cols` is x unfolded in NCHW order: each row one input plane shifted by (kh, kw), with
//! zeros where the kernel overhangs the padding. burn's default instead runs a convolution of x
//! with gO as a kernel of the output's size (batch and channels swapped): per input channel an
//! im2col of `batch * H * W` columns and a gemm only kh * kw wide, which repacks gO each time.
//! On the UNet that made the weight gradient the largest part of a fine-tuning step in the browser.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use burn_backend::ops::ConvOptions;
use burn_backend::ops::conv::calculate_conv_output_size;
use burn_std::{Bytes, Shape, bf16, f16};

use super::module::{cast_from_f32, cast_to_f32};
use crate::{FlexTensor, Layout};

/// Upper bound on the elements of one chunk of `cols` (16 MB of f32): images are taken a few at a
/// time so that a large batch does not unfold all at once.
const COLS_CHUNK: usize = 1 << 22;

/// The gradient of `conv2d(x, w, options)` with respect to `w`, of shape `weight_shape`, given
/// the gradient `output_grad` of its output. `options` has symmetric padding.
pub fn conv2d_weight_grad(x: FlexTensor, output_grad: FlexTensor, weight_shape: Shape, options: &ConvOptions<2>) -> FlexTensor {
    match x.dtype() {
        DType::F32 => weight_grad_typed::<f32>(x, output_grad, weight_shape, options, 0.0, 1.0, COLS_CHUNK),
        DType::F64 => weight_grad_typed::<f64>(x, output_grad, weight_shape, options, 0.0, 1.0, COLS_CHUNK),
        // Half precision through f32, as flex's bf16 convolutions (and one copy less of this code in wasm).
        DType::F16 => via_f32(x, output_grad, weight_shape, options, f16::to_f32, f16::from_f32),
        DType::BF16 => via_f32(x, output_grad, weight_shape, options, bf16::to_f32, bf16::from_f32),
        dtype => panic!("conv2d_weight_backward: unsupported dtype {:?}", dtype),
    }
}

fn via_f32<E: burn_backend::Element + bytemuck::Pod>(
    x: FlexTensor,
    output_grad: FlexTensor,
    weight_shape: Shape,
    options: &ConvOptions<2>,
    to_f32: fn(E) -> f32,
    from_f32: fn(f32) -> E,
) -> FlexTensor {
    let (x, output_grad) = (cast_to_f32(x, to_f32), cast_to_f32(output_grad, to_f32));
    cast_from_f32(weight_grad_typed::<f32>(x, output_grad, weight_shape, options, 0.0, 1.0, COLS_CHUNK), from_f32)
}

fn weight_grad_typed<T: bytemuck::Pod + burn_backend::Element + 'static>(
    x: FlexTensor,
    output_grad: FlexTensor,
    weight_shape: Shape,
    options: &ConvOptions<2>,
    zero: T,
    one: T,
    cols_chunk: usize,
) -> FlexTensor {
    let dtype = x.dtype();
    let x = x.to_contiguous();
    let output_grad = output_grad.to_contiguous();
    let [batch, c_in, in_h, in_w] = [0, 1, 2, 3].map(|i| x.layout().shape()[i]);
    let [c_out, c_in_group, k_h, k_w] = [0, 1, 2, 3].map(|i| weight_shape[i]);
    let [stride_h, stride_w] = options.stride;
    let [pad_h, pad_w] = options.padding_begin();
    let [dil_h, dil_w] = options.dilation;
    let out_h = calculate_conv_output_size(k_h, stride_h, pad_h, dil_h, in_h);
    let out_w = calculate_conv_output_size(k_w, stride_w, pad_w, dil_w, in_w);
    let [groups, c_out_group] = [options.groups, c_out / options.groups];
    let pixels = out_h * out_w;
    assert_eq!(
        output_grad.layout().shape().dims::<4>(),
        [batch, c_out, out_h, out_w],
        "conv2d_weight_backward: output gradient of the wrong shape"
    );
    let x_data: &[T] = x.storage();

    // gO as [c_out, batch * pixels], so that a run of images is one stretch of each row.
    let g_data: &[T] = output_grad.storage();
    let mut g = vec![zero; c_out * batch * pixels];
    for b in 0..batch {
        for co in 0..c_out {
            let src = (b * c_out + co) * pixels;
            let dst = (co * batch + b) * pixels;
            g[dst..dst + pixels].copy_from_slice(&g_data[src..src + pixels]);
        }
    }

    let rows = c_in_group * k_h * k_w;
    let per_chunk = (cols_chunk / (rows * pixels).max(1)).clamp(1, batch.max(1));
    let mut grad = vec![zero; c_out * rows];
    let mut cols: Vec<T> = Vec::new();
    for g_idx in 0..groups {
        for (chunk, first) in (0..batch).step_by(per_chunk).enumerate() {
            let images = per_chunk.min(batch - first);
            let width = images * pixels;
            cols.clear();
            cols.resize(rows * width, zero);
            for r in 0..rows {
                let (ci, kh, kw) = (g_idx * c_in_group + r / (k_h * k_w), r / k_w % k_h, r % k_w);
                for i in 0..images {
                    let plane = &x_data[((first + i) * c_in + ci) * in_h * in_w..][..in_h * in_w];
                    let dst = &mut cols[r * width + i * pixels..][..pixels];
                    unfold_plane(dst, plane, [in_h, in_w], [out_h, out_w], [kh * dil_h, kw * dil_w], [stride_h, stride_w], [pad_h, pad_w]);
                }
            }
            // grad[g's rows] (+)= g[g's rows, this chunk] @ colsᵀ
            let (m, n, k) = (c_out_group, rows, width);
            #[cfg(feature = "rayon")]
            let parallelism = if m * n * k >= super::matmul::PARALLEL_THRESHOLD { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
            #[cfg(not(feature = "rayon"))]
            let parallelism = gemm::Parallelism::None;
            let lhs = &g[g_idx * c_out_group * batch * pixels + first * pixels..];
            let dst = &mut grad[g_idx * c_out_group * rows..];
            unsafe {
                gemm::gemm(
                    m, n, k,
                    dst.as_mut_ptr(), 1, rows as isize, chunk > 0,
                    lhs.as_ptr(), 1, (batch * pixels) as isize,
                    cols.as_ptr(), width as isize, 1,
                    one, one, false, false, false, parallelism,
                );
            }
        }
    }
    FlexTensor::new(Bytes::from_elems(grad), Layout::contiguous(weight_shape), dtype)
}

/// One row of `cols`: `dst[oh * out_w + ow] = plane[oh * stride - pad + offset, ...]` (2D), zero
/// where that falls outside the plane.
fn unfold_plane<T: Copy>(
    dst: &mut [T],
    plane: &[T],
    [in_h, in_w]: [usize; 2],
    [out_h, out_w]: [usize; 2],
    [off_h, off_w]: [usize; 2],
    [stride_h, stride_w]: [usize; 2],
    [pad_h, pad_w]: [usize; 2],
) {
    // Output columns ow with 0 <= ow * stride_w + off_w - pad_w < in_w.
    let first_w = pad_w.saturating_sub(off_w).div_ceil(stride_w).min(out_w);
    let end_w = (in_w + pad_w).saturating_sub(off_w).div_ceil(stride_w).clamp(first_w, out_w);
    for oh in 0..out_h {
        let ih = (oh * stride_h + off_h) as isize - pad_h as isize;
        if ih < 0 || ih >= in_h as isize || first_w == end_w {
            continue;
        }
        let src = &plane[ih as usize * in_w..][..in_w];
        let dst = &mut dst[oh * out_w..][..out_w];
        let iw0 = first_w * stride_w + off_w - pad_w;
        if stride_w == 1 {
            dst[first_w..end_w].copy_from_slice(&src[iw0..iw0 + end_w - first_w]);
        } else {
            for (d, s) in dst[first_w..end_w].iter_mut().zip(src[iw0..].iter().step_by(stride_w)) {
                *d = *s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(shape: [usize; 4], salt: usize) -> (Vec<f32>, FlexTensor) {
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| ((i * 7919 + salt * 104_729) % 2000) as f32 / 1000.0 - 1.0).collect();
        let t = FlexTensor::new(Bytes::from_elems(v.clone()), Layout::contiguous(Shape::from(vec![shape[0], shape[1], shape[2], shape[3]])), DType::F32);
        (v, t)
    }

    /// dW by its definition: a sum over images and output pixels, one weight at a time.
    fn naive(x: &[f32], xs: [usize; 4], g: &[f32], gs: [usize; 4], ws: [usize; 4], o: &ConvOptions<2>) -> Vec<f32> {
        let [batch, c_in, h, w] = xs;
        let [_, c_out, out_h, out_w] = gs;
        let [_, c_in_group, k_h, k_w] = ws;
        let c_out_group = c_out / o.groups;
        let [pad_h, pad_w] = o.padding_begin();
        let mut dw = vec![0.0f32; ws.iter().product()];
        for co in 0..c_out {
            for ci in 0..c_in_group {
                let ci_x = co / c_out_group * c_in_group + ci;
                for kh in 0..k_h {
                    for kw in 0..k_w {
                        let mut acc = 0.0f64;
                        for b in 0..batch {
                            for oh in 0..out_h {
                                for ow in 0..out_w {
                                    let ih = (oh * o.stride[0] + kh * o.dilation[0]) as isize - pad_h as isize;
                                    let iw = (ow * o.stride[1] + kw * o.dilation[1]) as isize - pad_w as isize;
                                    if ih >= 0 && iw >= 0 && (ih as usize) < h && (iw as usize) < w {
                                        let xv = x[((b * c_in + ci_x) * h + ih as usize) * w + iw as usize];
                                        acc += (g[((b * c_out + co) * out_h + oh) * out_w + ow] * xv) as f64;
                                    }
                                }
                            }
                        }
                        dw[((co * c_in_group + ci) * k_h + kh) * k_w + kw] = acc as f32;
                    }
                }
            }
        }
        dw
    }

    #[test]
    fn weight_gradient_matches_its_definition() {
        let cases = [
            ([4, 8, 16, 16], [16, 8, 3, 3], ConvOptions::new([1, 1], [1, 1], [1, 1], 1)),
            ([4, 8, 16, 16], [8, 8, 3, 3], ConvOptions::new([2, 2], [1, 1], [1, 1], 1)),
            ([3, 8, 8, 8], [16, 8, 1, 1], ConvOptions::new([1, 1], [0, 0], [1, 1], 1)),
            ([2, 4, 12, 12], [6, 2, 3, 3], ConvOptions::new([1, 1], [2, 2], [2, 2], 2)),
            ([2, 3, 9, 7], [5, 3, 2, 4], ConvOptions::new([3, 2], [0, 2], [1, 1], 1)),
        ];
        for (xs, ws, options) in cases {
            let out = |i: usize| calculate_conv_output_size(ws[2 + i], options.stride[i], options.padding_begin()[i], options.dilation[i], xs[2 + i]);
            let gs = [xs[0], ws[0], out(0), out(1)];
            let ((xv, x), (gv, g)) = (tensor(xs, 1), tensor(gs, 2));
            let want = naive(&xv, xs, &gv, gs, ws, &options);
            // The whole batch in one chunk, and one image per chunk.
            for chunk in [COLS_CHUNK, 1] {
                let got = weight_grad_typed::<f32>(x.clone(), g.clone(), Shape::from(ws.to_vec()), &options, 0.0, 1.0, chunk);
                let got: &[f32] = got.storage();
                let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let diff = got.iter().zip(&want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(scale > 0.0 && diff <= 1e-5 * scale, "{xs:?} {ws:?} {options:?} chunk {chunk}: off by {diff} (largest {scale})");
            }
        }
    }
}
