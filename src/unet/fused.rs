//! Group norm, SiLU and attention as the UNet calls them. On burn's LibTorch backend (`--backend
//! torch`, the `torch` feature) group norm and SiLU are one PyTorch kernel forward and one
//! backward each, as in PyTorch's autograd, and attention is PyTorch's flash attention; burn
//! composes them from small differentiable ops (group norm: nine forward, each with its own
//! backward), which made our training step slower than PyTorch's (BENCHMARKS.md, "Native CPU").
//! On burn's cubecl backends outside autodiff (sampling on WebGPU or wgpu), group norm and the
//! SiLU after it are one kernel, with a ResNet block's time embedding and its projection's bias
//! added inside it, and attention is one kernel with the q and v projections' biases added inside
//! it (`cube.rs`). Every other case takes burn's own versions.

use burn::nn::{GroupNorm, Linear};
use burn::tensor::Tensor;

/// `norm.forward(x)`, the same numbers.
pub fn group_norm(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    group_norm_then(norm, x, false)
}

/// `silu(norm.forward(x))`: one kernel when sampling on a GPU (`cube.rs`).
pub fn group_norm_silu(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    group_norm_then(norm, x, true)
}

/// `silu(norm.forward(x + proj.forward(temb)))`, the time embedding projected per channel and
/// added as a ResNet block adds it: on a GPU when sampling, the projection's matmul and then one
/// kernel (`cube.rs`).
pub fn add_time_group_norm_silu(norm: &GroupNorm, x: Tensor<4>, proj: &Linear, temb: Tensor<2>) -> Tensor<4> {
    #[cfg(any(feature = "gpu", target_family = "wasm"))]
    if let (true, Some(gamma), Some(beta), Some(bias)) =
        (cube::applies(&x), &norm.gamma, &norm.beta, &proj.bias)
    {
        let shift = cube::Shift {
            proj: burn::tensor::module::linear(temb, proj.weight.val(), None),
            bias: bias.val(),
        };
        return cube::group_norm(x, gamma.val(), beta.val(), Some(shift), cube_norm(norm, true));
    }
    let temb = proj.forward(temb).unsqueeze_dim::<3>(2).unsqueeze_dim::<4>(3);
    group_norm_silu(norm, x + temb)
}

/// `norm.forward(x)`, then SiLU when `then_silu`, by the fastest route the device has.
fn group_norm_then(norm: &GroupNorm, x: Tensor<4>, then_silu: bool) -> Tensor<4> {
    #[cfg(any(feature = "gpu", target_family = "wasm"))]
    if let (true, Some(gamma), Some(beta)) = (cube::applies(&x), &norm.gamma, &norm.beta) {
        return cube::group_norm(x, gamma.val(), beta.val(), None, cube_norm(norm, then_silu));
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

/// Multi-head softmax(q kᵀ / sqrt(d)) v over q, k, v of [batch, tokens, heads * d], the three
/// projections of `tokens`, as [batch, tokens, heads * d]: on a GPU when sampling, the three
/// projections' matmuls and one kernel (`cube.rs`); PyTorch's flash attention on LibTorch, burn's
/// attention otherwise.
pub fn attention(tokens: Tensor<3>, [to_q, to_k, to_v]: [&Linear; 3], heads: usize) -> Tensor<3> {
    #[cfg(any(feature = "gpu", target_family = "wasm"))]
    if let (true, Some(q_bias), Some(v_bias)) = (cube::applies(&tokens), &to_q.bias, &to_v.bias)
        && to_q.weight.dims()[1] / heads <= cube::MAX_HEAD_DIM
    {
        // to_k's bias cancels in the softmax (`cube::attention`).
        let project = |l: &Linear| burn::tensor::module::linear(tokens.clone(), l.weight.val(), None);
        let qkv = [project(to_q), project(to_k), project(to_v)];
        return cube::attention(qkv, [q_bias.val(), v_bias.val()], heads);
    }
    let [q, k, v] = [to_q, to_k, to_v].map(|l| l.forward(tokens.clone()));
    let [b, tokens, c] = q.dims();
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
