//! The two reshapes of the up path, in the layout the device's convolutions read. burn's cubecl
//! convolution reads channels-last and copies any other input first, and when sampling on a GPU
//! every convolution, group norm and residual add already leaves its output channels-last
//! (`channels_last_weights`). So there the skip concatenation and the nearest upsampling work in
//! that layout too, and the convolution after each reads its input as it is. Elsewhere (the CPU,
//! LibTorch, training) they work in [N, C, H, W] as before.

use burn::tensor::Tensor;

use super::channels_last_weights;

/// `Tensor::cat(tensors, 1)`: the skip concatenation of an up block.
pub fn cat_channels(tensors: Vec<Tensor<4>>) -> Tensor<4> {
    if !channels_last_weights(&tensors[0].device()) {
        return Tensor::cat(tensors, 1);
    }
    let nhwc = tensors.into_iter().map(|t| t.permute([0, 2, 3, 1])).collect();
    Tensor::cat(nhwc, 3).permute([0, 3, 1, 2])
}

/// Nearest-neighbour upsampling by 2 in H and W (Upsample2D's `interpolate(scale_factor=2.0)`).
pub fn upsample_nearest_2x(x: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    if !channels_last_weights(&x.device()) {
        return x.reshape([n, c, h, 1, w, 1]).expand([n, c, h, 2, w, 2]).reshape([n, c, 2 * h, 2 * w]);
    }
    let nhwc = x.permute([0, 2, 3, 1]).reshape([n, h, 1, w, 1, c]).expand([n, h, 2, w, 2, c]);
    nhwc.reshape([n, 2 * h, 2 * w, c]).permute([0, 3, 1, 2])
}
