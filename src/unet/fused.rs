//! Group norm, SiLU and attention as the UNet calls them. On burn's LibTorch backend (`--backend
//! torch`, the `torch` feature) group norm and SiLU are one PyTorch kernel forward and one
//! backward each, as in PyTorch's autograd, and attention is PyTorch's flash attention; burn
//! composes them from small differentiable ops (group norm: nine forward, each with its own
//! backward), which made our training step slower than PyTorch's (BENCHMARKS.md, "Native CPU").
//! On burn's cubecl backends outside autodiff (sampling on WebGPU or wgpu), group norm and the
//! SiLU after it are one kernel (`cube.rs`). Every other case takes burn's own versions.

use burn::nn::GroupNorm;
use burn::tensor::Tensor;

/// `norm.forward(x)`, the same numbers.
pub fn group_norm(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    group_norm_then(norm, x, false)
}

/// `silu(norm.forward(x))`: one kernel when sampling on a GPU (`cube.rs`).
pub fn group_norm_silu(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    group_norm_then(norm, x, true)
}

/// `norm.forward(x)`, then SiLU when `then_silu`, by the fastest route the device has.
fn group_norm_then(norm: &GroupNorm, x: Tensor<4>, then_silu: bool) -> Tensor<4> {
    #[cfg(any(feature = "gpu", target_family = "wasm"))]
    if let (true, Some(gamma), Some(beta)) = (cube::applies(&x), &norm.gamma, &norm.beta) {
        return cube::group_norm(x, gamma.val(), beta.val(), cube_norm(norm, then_silu));
    }
    let y = match (&norm.gamma, &norm.beta) {
        #[cfg(feature = "torch")]
        (Some(gamma), Some(beta)) if torch::on_libtorch(&x) => {
            torch::group_norm(x, gamma.val(), beta.val(), norm.num_groups, norm.epsilon)
        }
        _ => norm.forward(x),
    };
    if then_silu { silu(y) } else { y }
}

/// Multi-head softmax(q kᵀ / sqrt(d)) v over q, k, v of [batch, tokens, heads * d] (the
/// projections' outputs), as [batch, tokens, heads * d]: one kernel when sampling on a GPU
/// (`cube.rs`), PyTorch's flash attention on LibTorch, burn's attention otherwise.
pub fn attention(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, heads: usize) -> Tensor<3> {
    let [b, tokens, c] = q.dims();
    #[cfg(any(feature = "gpu", target_family = "wasm"))]
    if cube::applies(&q) && c / heads <= cube::MAX_HEAD_DIM {
        return cube::attention(q, k, v, heads);
    }
    let split = |t: Tensor<3>| t.reshape([b, tokens, heads, c / heads]).swap_dims(1, 2);
    let out = split_attention(split(q), split(k), split(v));
    out.swap_dims(1, 2).reshape([b, tokens, c])
}

/// softmax(q kᵀ / sqrt(d)) v, over q, k, v of [batch, heads, tokens, d].
fn split_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    #[cfg(feature = "torch")]
    if torch::on_libtorch(&q) {
        return torch::attention(q, k, v);
    }
    let options = burn::tensor::ops::AttentionModuleOptions::default();
    burn::tensor::module::attention(q, k, v, None, None, options)
}

/// x * sigmoid(x). Outside autodiff on a GPU (burn's cubecl backends) as x / (1 + exp(-x)): four
/// kernels, where burn's sigmoid is exp(-log(1 + exp(-x))) and then a product, seven (BENCHMARKS.md,
/// "Fewer launches"). Not under autodiff: where exp(-x) overflows, its backward would be 0 * inf.
/// flex has a one-pass sigmoid, so the CPU keeps burn's.
pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "torch")]
    if torch::on_libtorch(&x) {
        return torch::silu(x);
    }
    let device = x.device();
    if device.is_autodiff() || matches!(device.inner().as_dispatch(), burn::backend::DispatchDevice::Flex(_))
    {
        return burn::tensor::activation::silu(x);
    }
    x.clone() / x.neg().exp().add_scalar(1.0)
}

#[cfg(any(feature = "gpu", target_family = "wasm"))]
use super::cube;

#[cfg(any(feature = "gpu", target_family = "wasm"))]
fn cube_norm(norm: &GroupNorm, silu: bool) -> cube::Norm {
    cube::Norm { groups: norm.num_groups, eps: norm.epsilon, silu }
}
#[cfg(feature = "torch")]
use super::torch;
