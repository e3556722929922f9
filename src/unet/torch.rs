//! Group norm, SiLU and attention as LibTorch kernels, forward and backward, for burn's LibTorch
//! backend (`--backend torch`, the `torch` feature): one PyTorch kernel each way, as PyTorch's
//! autograd runs them, where burn composes them from small differentiable ops. `fused.rs` picks
//! them when a tensor lives on LibTorch.
#![allow(deprecated)] // burn-tch is, in favour of backends that are slower on a CPU (BENCHMARKS.md).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::libtorch::{TchTensor, aten_backward};
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DispatchDevice, LibTorch, backend_extension};
use burn::tensor::Tensor;

pub fn on_libtorch<const D: usize>(x: &Tensor<D>) -> bool {
    matches!(x.device().inner().as_dispatch(), DispatchDevice::LibTorch(_))
}

pub fn group_norm(x: Tensor<4>, gamma: Tensor<1>, beta: Tensor<1>, groups: usize, eps: f64) -> Tensor<4> {
    let (x, gamma, beta) = (x.into_dispatch(), gamma.into_dispatch(), beta.into_dispatch());
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::group_norm(x, gamma, beta, groups, eps))
}

pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::silu(x.into_dispatch()))
}

pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let (q, k, v) = (q.into_dispatch(), k.into_dispatch(), v.into_dispatch());
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::attention(q, k, v))
}

#[backend_extension(LibTorch, Autodiff)]
pub trait FusedOps: Backend {
    /// Group norm of x [n, c, ...] in `groups` groups, then `* gamma + beta` per channel.
    fn group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        eps: f64,
    ) -> FloatTensor<Self>;
    fn silu(x: FloatTensor<Self>) -> FloatTensor<Self>;
    fn attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// [n, c, h * w] of an [n, c, ...] tensor.
fn ncl(x: &tch::Tensor) -> [i64; 3] {
    let size = x.size();
    [size[0], size[1], size[2..].iter().product()]
}

/// y, mean, 1 / std (mean and 1 / std per sample and group, for the backward).
fn group_norm_forward(
    x: &TchTensor,
    gamma: &TchTensor,
    beta: &TchTensor,
    groups: usize,
    eps: f64,
) -> [TchTensor; 3] {
    let [n, c, hw] = ncl(&x.tensor);
    let x = x.tensor.contiguous();
    let (y, mean, rstd) =
        x.native_group_norm(Some(&gamma.tensor), Some(&beta.tensor), n, c, hw, groups as i64, eps);
    [y, mean, rstd].map(TchTensor::new)
}

impl FusedOps for LibTorch {
    fn group_norm(x: TchTensor, gamma: TchTensor, beta: TchTensor, groups: usize, eps: f64) -> TchTensor {
        let [y, _, _] = group_norm_forward(&x, &gamma, &beta, groups, eps);
        y
    }

    fn silu(x: TchTensor) -> TchTensor {
        TchTensor::new(x.tensor.silu())
    }

    fn attention(q: TchTensor, k: TchTensor, v: TchTensor) -> TchTensor {
        // burn-tch's: PyTorch's scaled_dot_product_attention.
        <LibTorch as ModuleOps<LibTorch>>::attention(q, k, v, None, None, Default::default())
    }
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<LibTorch, 3> for AttentionBackward {
    /// q, k, v, the output and the log-sum-exp of each row of scores.
    type State = [TchTensor; 5];

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<LibTorch>(&ops.node).tensor.contiguous();
        let [q, k, v, out, lse] = ops.state.each_ref().map(|t| &t.tensor);
        let (dq, dk, dv) = tch::Tensor::internal_scaled_dot_product_flash_attention_for_cpu_backward(
            &grad,
            q,
            k,
            v,
            out,
            lse,
            0.0,
            false,
            None::<tch::Tensor>,
            None,
        );
        register(grads, &ops, [dq, dk, dv].map(Some));
    }
}

/// Each input's gradient, where the input is tracked and the gradient computed.
fn register<S>(grads: &mut Gradients, ops: &Ops<S, 3>, ds: [Option<tch::Tensor>; 3]) {
    for (node, d) in ops.parents.iter().zip(ds) {
        if let (Some(node), Some(d)) = (node, d) {
            grads.register::<LibTorch>(node.id, TchTensor::new(d));
        }
    }
}

#[derive(Debug)]
struct GroupNormBackward;

impl Backward<LibTorch, 3> for GroupNormBackward {
    /// x, gamma, mean, 1 / std, groups.
    type State = (TchTensor, TchTensor, TchTensor, TchTensor, usize);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<LibTorch>(&ops.node);
        let (x, gamma, mean, rstd, groups) = &ops.state;
        let mask = ops.parents.each_ref().map(|parent| parent.is_some());
        let x = x.tensor.contiguous();
        let (grad, groups) = (grad.tensor.contiguous(), *groups as i64);
        let dxgb = aten_backward::group_norm_backward(
            &grad,
            &x,
            &mean.tensor,
            &rstd.tensor,
            &gamma.tensor,
            ncl(&x),
            groups,
            mask,
        );
        register(grads, &ops, dxgb);
    }
}

#[derive(Debug)]
struct SiluBackward;

impl Backward<LibTorch, 1> for SiluBackward {
    /// x.
    type State = TchTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<LibTorch>(&ops.node);
        if let [Some(node)] = ops.parents {
            let dx = ops.state.tensor.silu_backward(&grad.tensor); // x.silu_backward(grad)
            grads.register::<LibTorch>(node.id, TchTensor::new(dx));
        }
    }
}

impl<C: CheckpointStrategy> FusedOps for Autodiff<LibTorch, C> {
    fn group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        eps: f64,
    ) -> FloatTensor<Self> {
        let ((x, x_node), (gamma, gamma_node), (beta, beta_node)) =
            (x.into_parts(), gamma.into_parts(), beta.into_parts());
        let [y, mean, rstd] = group_norm_forward(&x, &gamma, &beta, groups, eps);
        match GroupNormBackward.prepare::<C>([x_node, gamma_node, beta_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((x, gamma, mean, rstd, groups), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>) -> FloatTensor<Self> {
        let ((q, q_node), (k, k_node), (v, v_node)) = (q.into_parts(), k.into_parts(), v.into_parts());
        // PyTorch's flash attention for the CPU, as its scaled_dot_product_attention runs in
        // training: the [tokens, tokens] weights are never stored, the backward recomputes them.
        let (out, lse) = tch::Tensor::internal_scaled_dot_product_flash_attention_for_cpu(
            &q.tensor,
            &k.tensor,
            &v.tensor,
            0.0,
            false,
            None::<tch::Tensor>,
            None,
        );
        let out = TchTensor::new(out);
        match AttentionBackward.prepare::<C>([q_node, k_node, v_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish([q, k, v, out.clone(), TchTensor::new(lse)], out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn silu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let (x, node) = x.into_parts();
        let y = TchTensor::new(x.tensor.silu());
        match SiluBackward.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(x, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}
