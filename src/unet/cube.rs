//! Group norm (and the SiLU that follows it in a ResNet block) as one cubecl kernel, for
//! sampling on burn's cubecl backends (WebGPU in the browser, wgpu natively). burn composes group
//! norm from small ops, two reductions and about ten element-wise kernels, and SiLU adds four:
//! with 41 norms they were half of a forward's launches (BENCHMARKS.md, "Fewer launches"). Here
//! one workgroup normalises one (image, group), so each norm is a single launch. Training keeps
//! burn's ops (autodiff needs their backward), and so does every other backend.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, DispatchDevice, backend_extension};
use burn::tensor::{DType, Device, Tensor};
use burn_cubecl::cubecl::ir::{ElemType, FloatKind};
use burn_cubecl::cubecl::prelude::{CubeCount, CubeDim};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::ops::permute;
use burn_cubecl::{CubeBackend, tensor::CubeTensor};

/// Units of one workgroup: a power of two (the tree reduction halves it), within WebGPU's
/// guaranteed 256 invocations per workgroup.
const UNITS: u32 = 256;

/// Whether `device` is a cubecl device outside autodiff.
pub fn on_cube(device: &Device) -> bool {
    !device.is_autodiff() && matches!(device.clone().inner().as_dispatch(), DispatchDevice::Cube(_))
}

/// Whether `x` is f32 on a cubecl device outside autodiff, where the kernels here apply.
pub fn applies<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == DType::F32 && on_cube(&x.device())
}

/// What one group norm computes besides its tensors.
#[derive(Clone, Copy, Debug)]
pub struct Norm {
    pub groups: usize,
    pub eps: f64,
    /// SiLU of the output (x * sigmoid(x)), as a ResNet block applies next.
    pub silu: bool,
}

/// A ResNet block's projected time embedding, added per (image, channel) before its second norm:
/// `proj` [n, c] (the projection's matmul) plus `bias` [c] (the projection's bias), so neither the
/// bias nor the sum is a launch of its own.
pub struct Shift {
    pub proj: Tensor<2>,
    pub bias: Tensor<1>,
}

/// Group norm of x [n, c, h, w] (plus `shift`) in `norm.groups` groups, `* gamma + beta` per
/// channel, then SiLU if `norm.silu`: the numbers of burn's `GroupNorm::forward` (and
/// `activation::silu`) on `x + (proj + bias)`.
pub fn group_norm(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    shift: Option<Shift>,
    norm: Norm,
) -> Tensor<4> {
    let shifted = shift.is_some();
    // Without a shift the kernel reads neither tensor (its code for them is compiled out), so
    // gamma stands in.
    let Shift { proj, bias } =
        shift.unwrap_or_else(|| Shift { proj: gamma.clone().unsqueeze(), bias: gamma.clone() });
    let (x, gamma, beta) = (x.into_dispatch(), gamma.into_dispatch(), beta.into_dispatch());
    let (proj, bias) = (proj.into_dispatch(), bias.into_dispatch());
    let out = <burn::backend::Dispatch as CubeOps>::group_norm(x, proj, bias, gamma, beta, norm, shifted);
    Tensor::from_dispatch(out)
}

/// The widest attention head the attention kernel takes: each unit keeps a query and its
/// output's running sum of `head_dim` values in registers. Wider heads (a Hub model with one
/// head over 256 or 512 channels) take burn's attention.
pub const MAX_HEAD_DIM: usize = 64;

/// Multi-head softmax((q + b_q) (k + b_k)ᵀ / sqrt(d)) (v + b_v) over q, k, v of [batch, tokens,
/// heads * d] (the projections' matmuls, unsplit), as [batch, tokens, heads * d]; d at most
/// `MAX_HEAD_DIM`. b_k is not needed: it adds (q + b_q) · b_k to every score of a query, which
/// the softmax cancels. b_v comes out of the weighted sum as b_v itself, so it is added once.
pub fn attention(qkv: [Tensor<3>; 3], [q_bias, v_bias]: [Tensor<1>; 2], heads: usize) -> Tensor<3> {
    let [q, k, v] = qkv.map(Tensor::into_dispatch);
    let (q_bias, v_bias) = (q_bias.into_dispatch(), v_bias.into_dispatch());
    Tensor::from_dispatch(<burn::backend::Dispatch as CubeOps>::attention(q, k, v, q_bias, v_bias, heads))
}

#[backend_extension(Cube)]
pub trait CubeOps: Backend {
    #[allow(clippy::too_many_arguments)]
    fn group_norm(
        x: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        shift_bias: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        norm: Norm,
        shifted: bool,
    ) -> FloatTensor<Self>;
    #[allow(clippy::too_many_arguments)]
    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        q_bias: FloatTensor<Self>,
        v_bias: FloatTensor<Self>,
        heads: usize,
    ) -> FloatTensor<Self>;
}

impl CubeOps for CubeBackend {
    fn group_norm(
        x: CubeTensor,
        shift: CubeTensor,
        shift_bias: CubeTensor,
        gamma: CubeTensor,
        beta: CubeTensor,
        norm: Norm,
        shifted: bool,
    ) -> CubeTensor {
        let Norm { groups, eps, silu } = norm;
        let [n, c, h, w] = x.meta.shape().dims();
        // Written channels-last ([n, h, w, c] in memory, seen as [n, c, h, w]): the layout
        // burn's convolution reads, so the conv after a norm copies nothing first.
        let nhwc = empty_device_dtype(x.client.clone(), x.device.clone(), [n, h, w, c].into(), x.dtype);
        kernel::group_norm_kernel::launch(
            &nhwc.client,
            CubeCount::Static((n * groups) as u32, 1, 1),
            CubeDim::new_1d(UNITS),
            x.into_tensor_arg(),
            shift.into_tensor_arg(),
            into_contiguous(shift_bias).into_tensor_arg(),
            into_contiguous(gamma).into_tensor_arg(),
            into_contiguous(beta).into_tensor_arg(),
            nhwc.clone().into_tensor_arg(),
            (c / groups) as u32,
            w as u32,
            eps as f32,
            UNITS as usize,
            silu,
            shifted,
            ElemType::Float(FloatKind::F32),
        );
        permute(nhwc, &[0, 3, 1, 2])
    }

    fn attention(
        q: CubeTensor,
        k: CubeTensor,
        v: CubeTensor,
        q_bias: CubeTensor,
        v_bias: CubeTensor,
        heads: usize,
    ) -> CubeTensor {
        let [b, tokens, c] = q.meta.shape().dims();
        let head_dim = c / heads;
        let out = empty_device_dtype(q.client.clone(), q.device.clone(), [b, tokens, c].into(), q.dtype);
        let rows = b * heads * tokens;
        let units = UNITS.min(rows as u32);
        kernel::attention_kernel::launch(
            &out.client,
            CubeCount::Static(rows.div_ceil(units as usize) as u32, 1, 1),
            CubeDim::new_1d(units),
            q.into_tensor_arg(),
            k.into_tensor_arg(),
            v.into_tensor_arg(),
            into_contiguous(q_bias).into_tensor_arg(),
            into_contiguous(v_bias).into_tensor_arg(),
            out.clone().into_tensor_arg(),
            heads as u32,
            (head_dim as f32).sqrt().recip(),
            head_dim,
            ElemType::Float(FloatKind::F32),
        );
        out
    }
}

mod kernel {
    use burn_cubecl::cubecl;
    use cubecl::prelude::*;

    /// One workgroup per (image, group) of x [n, c, h, w] in any layout (plus, if `shifted`,
    /// shift [n, c] + shift_bias [c] per channel): its mean, then its variance about that mean
    /// (two passes, as burn computes it, rather than E[x²] - mean²), then the output, into `out`
    /// [n, h, w, c] (contiguous). Units walk a group channel-first, so neighbouring units touch
    /// neighbouring values in a channels-last x and in `out`.
    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub fn group_norm_kernel<F: Float>(
        x: &Tensor<F>,
        shift: &Tensor<F>,
        shift_bias: &Tensor<F>,
        gamma: &Tensor<F>,
        beta: &Tensor<F>,
        out: &mut Tensor<F>,
        channels_per_group: u32,
        width: u32,
        eps: f32,
        #[comptime] units: usize,
        #[comptime] silu: bool,
        #[comptime] shifted: bool,
        #[define(F)] _dtype: ElemType,
    ) {
        let cpg = channels_per_group as usize;
        let groups = x.shape(1) / cpg;
        let image = CUBE_POS_X as usize / groups;
        let first_channel = (CUBE_POS_X as usize % groups) * cpg;
        let (w, channels) = (width as usize, x.shape(1));
        let size = cpg * x.shape(2) * w;
        let base = image * x.stride(0) + first_channel * x.stride(1);
        let mut shared = Shared::new_slice(units);

        let mut sum = F::new(0.0);
        let mut i = UNIT_POS_X as usize;
        while i < size {
            let (c, p) = (i % cpg, i / cpg);
            sum += value(x, shift, shift_bias, image, base, first_channel, c, p / w, p % w, shifted);
            i += units;
        }
        shared[UNIT_POS_X as usize] = sum;
        let mean = tree_sum::<F>(&mut shared) / F::cast_from(size as u32);

        let mut squares = F::new(0.0);
        let mut i = UNIT_POS_X as usize;
        while i < size {
            let (c, p) = (i % cpg, i / cpg);
            let d = value(x, shift, shift_bias, image, base, first_channel, c, p / w, p % w, shifted) - mean;
            squares += d * d;
            i += units;
        }
        shared[UNIT_POS_X as usize] = squares;
        let variance = tree_sum::<F>(&mut shared) / F::cast_from(size as u32);
        let inv_std = F::new(1.0) / F::sqrt(variance + F::cast_from(eps));

        let out_base = image * x.shape(2) * w * channels + first_channel;
        let mut i = UNIT_POS_X as usize;
        while i < size {
            let (c, p) = (i % cpg, i / cpg);
            let channel = first_channel + c;
            let v = value(x, shift, shift_bias, image, base, first_channel, c, p / w, p % w, shifted);
            let mut y = (v - mean) * inv_std * gamma[channel] + beta[channel];
            if silu {
                y = y / (F::new(1.0) + F::exp(-y));
            }
            out[out_base + p * channels + c] = y;
            i += units;
        }
    }

    /// x at (image, first_channel + c, row, col), `base` being the offset of (image,
    /// first_channel); plus shift [image, channel] + shift_bias [channel] if `shifted`, in the
    /// order `x + (proj + bias)` of a Linear's output added to x.
    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn value<F: Float>(
        x: &Tensor<F>,
        shift: &Tensor<F>,
        shift_bias: &Tensor<F>,
        image: usize,
        base: usize,
        first_channel: usize,
        c: usize,
        row: usize,
        col: usize,
        #[comptime] shifted: bool,
    ) -> F {
        let mut v = x[base + c * x.stride(1) + row * x.stride(2) + col * x.stride(3)];
        if shifted {
            let channel = first_channel + c;
            v += shift[image * shift.stride(0) + channel * shift.stride(1)] + shift_bias[channel];
        }
        v
    }

    /// One unit per (image, head, query): the softmax over keys kept online (a running maximum
    /// and sum, rescaled as a larger score arrives, as flash attention does), so scores are
    /// never stored and the whole attention is one launch. q, k and v are the projections'
    /// matmuls; q's bias is added as q is read, v's to the output (`attention` says why k's is not
    /// needed).
    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub fn attention_kernel<F: Float>(
        q: &Tensor<F>,
        k: &Tensor<F>,
        v: &Tensor<F>,
        q_bias: &Tensor<F>,
        v_bias: &Tensor<F>,
        out: &mut Tensor<F>,
        heads: u32,
        scale: f32,
        #[comptime] head_dim: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let tokens = q.shape(1);
        let heads = heads as usize;
        if ABSOLUTE_POS >= q.shape(0) * heads * tokens {
            terminate!();
        }
        let query = ABSOLUTE_POS % tokens;
        let image = ABSOLUTE_POS / tokens / heads;
        let first = (ABSOLUTE_POS / tokens % heads) * head_dim;
        let mut q_row = Array::<F>::new(head_dim);
        let mut sum = Array::<F>::new(head_dim);
        let at_q = image * q.stride(0) + query * q.stride(1);
        for d in 0..head_dim {
            q_row[d] = (q[at_q + (first + d) * q.stride(2)] + q_bias[first + d]) * F::cast_from(scale);
            sum[d] = F::new(0.0);
        }
        // Below any score; a finite literal (WGSL has no infinity literal).
        let mut max = F::new(-3.0e38);
        let mut weight = F::new(0.0);
        for key in 0..tokens {
            let at_k = image * k.stride(0) + key * k.stride(1);
            let mut score = F::new(0.0);
            for d in 0..head_dim {
                score += q_row[d] * k[at_k + (first + d) * k.stride(2)];
            }
            let new_max = select(score > max, score, max);
            let rescale = F::exp(max - new_max);
            let p = F::exp(score - new_max);
            weight = weight * rescale + p;
            let at_v = image * v.stride(0) + key * v.stride(1);
            for d in 0..head_dim {
                sum[d] = sum[d] * rescale + p * v[at_v + (first + d) * v.stride(2)];
            }
            max = new_max;
        }
        let at_out = image * out.stride(0) + query * out.stride(1);
        let out_stride = out.stride(2);
        for d in 0..head_dim {
            out[at_out + (first + d) * out_stride] = sum[d] / weight + v_bias[first + d];
        }
    }

    /// The sum of `shared` (one value per unit, a power of two of them), read by every unit; the
    /// slice may be written again after this returns.
    #[cube]
    fn tree_sum<F: Float>(shared: &mut Shared<[F]>) -> F {
        sync_cube();
        let mut active = CUBE_DIM_X;
        while active > 1 {
            active /= 2;
            if UNIT_POS_X < active {
                let other = shared[(UNIT_POS_X + active) as usize];
                shared[UNIT_POS_X as usize] += other;
            }
            sync_cube();
        }
        let total = shared[0];
        sync_cube();
        total
    }
}

#[cfg(all(test, not(target_family = "wasm")))]
mod tests {
    use burn::nn::GroupNormConfig;
    use burn::tensor::{Device, Distribution, Tensor};

    /// This process's one wgpu device (lavapipe where there is no GPU; a second `init` is refused).
    fn gpu() -> Device {
        static GPU: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
        GPU.get_or_init(|| Device::wgpu_options().init().expect("a wgpu adapter")).clone()
    }

    /// The kernel against burn's `GroupNorm` (and SiLU) on wgpu: groups of fewer and of more
    /// values than a workgroup's units, several images, gamma and beta away from 1 and 0, with and
    /// without a time embedding's shift [n, c] and bias [c] added first.
    #[test]
    fn one_kernel_gives_burns_group_norm_and_silu() {
        let device = gpu();
        for (n, c, h, groups) in [(3, 32, 32, 8), (2, 128, 8, 8), (1, 12, 5, 3), (4, 64, 4, 32)] {
            let mut norm = GroupNormConfig::new(groups, c).with_epsilon(1e-5).init(&device);
            let gamma = Tensor::<1>::random([c], Distribution::Uniform(0.5, 1.5), &device);
            let beta = Tensor::<1>::random([c], Distribution::Uniform(-0.5, 0.5), &device);
            norm.gamma = Some(burn::module::Param::from_tensor(gamma));
            norm.beta = Some(burn::module::Param::from_tensor(beta));
            let (gamma, beta) = (norm.gamma.as_ref().unwrap().val(), norm.beta.as_ref().unwrap().val());
            // Laid out as [n, c, h, w], and channels-last as a convolution leaves its output.
            let x = Tensor::<4>::random([n, c, h, h], Distribution::Normal(0.3, 2.0), &device);
            let channels_last = Tensor::<4>::random([n, h, h, c], Distribution::Normal(0.3, 2.0), &device)
                .permute([0, 3, 1, 2]);
            let proj = Tensor::<2>::random([n, c], Distribution::Normal(0.0, 1.5), &device);
            let bias = Tensor::<1>::random([c], Distribution::Normal(0.0, 0.5), &device);
            let added = (proj.clone() + bias.clone().unsqueeze()).unsqueeze_dim::<3>(2).unsqueeze_dim::<4>(3);
            for (layout, x) in [("nchw", x.clone()), ("nhwc", channels_last)] {
                assert!(super::applies(&x));
                for shifted in [false, true] {
                    let want = norm.forward(if shifted { x.clone() + added.clone() } else { x.clone() });
                    for silu in [false, true] {
                        let norm = super::Norm { groups, eps: 1e-5, silu };
                        let shift = shifted.then(|| super::Shift { proj: proj.clone(), bias: bias.clone() });
                        let got = super::group_norm(x.clone(), gamma.clone(), beta.clone(), shift, norm);
                        let want =
                            if silu { burn::tensor::activation::silu(want.clone()) } else { want.clone() };
                        let err: f32 = (got - want).abs().max().into_scalar();
                        assert!(
                            err < 1e-4,
                            "{layout} [{n}, {c}, {h}, {h}] in {groups} groups, shifted {shifted}, silu {silu}: \
                             max abs error {err}"
                        );
                    }
                }
            }
        }
    }

    /// The kernel against burn's attention over the heads split out, on q, k, v with their biases
    /// added: one head and several, token counts off a workgroup's size, heads of 4 to
    /// `MAX_HEAD_DIM` values.
    #[test]
    fn one_kernel_gives_burns_multi_head_attention() {
        let device = gpu();
        for (b, tokens, heads, d) in [(2, 256, 8, 8), (1, 64, 1, super::MAX_HEAD_DIM), (3, 17, 2, 4)] {
            let c = heads * d;
            let random = || Tensor::<3>::random([b, tokens, c], Distribution::Normal(0.0, 2.0), &device);
            let (q, k, v) = (random(), random(), random());
            let biases = [0; 3].map(|_| Tensor::<1>::random([c], Distribution::Normal(0.0, 1.0), &device));
            let biased = |t: &Tensor<3>, i: usize| t.clone() + biases[i].clone().unsqueeze();
            let split = |t: Tensor<3>| t.reshape([b, tokens, heads, d]).swap_dims(1, 2);
            let options = burn::tensor::ops::AttentionModuleOptions::default();
            let want = burn::tensor::module::attention(
                split(biased(&q, 0)),
                split(biased(&k, 1)),
                split(biased(&v, 2)),
                None,
                None,
                options,
            )
            .swap_dims(1, 2)
            .reshape([b, tokens, c]);
            let [q_bias, _, v_bias] = biases;
            let got = super::attention([q, k, v], [q_bias, v_bias], heads);
            let err: f32 = (got - want).abs().max().into_scalar();
            assert!(err < 1e-4, "[{b}, {tokens}, {heads} x {d}]: max abs error {err}");
        }
    }
}
