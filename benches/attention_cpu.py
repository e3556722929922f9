"""Attention's forward and backward in a training step: the math path against flash attention.

src/unet/fused.rs ran attention on burn's LibTorch backend as PyTorch's "math" path (q kᵀ, one
softmax kernel, p v; its backward from the stored weights p), then as PyTorch's flash attention
for the CPU, which `scaled_dot_product_attention` takes in training and which never stores p.
This times both, in the same libtorch, for every attention of the model folder's UNet2DModel
(shapes from a forward pass with hooks), and prints one JSON line per batch with the totals for one
training step (BENCHMARKS.md).

    python benches/attention_cpu.py --model configs/mnist --batch 16 128 --threads 2
"""

import torch
from diffusers import UNet2DModel
from diffusers.models.attention_processor import Attention

from pytorch_bench import median_ms, per_batch_main


def attention_shapes(model_dir, batch):
    """[batch, heads, tokens, head dim] of each attention in one forward pass at this batch."""
    unet = UNet2DModel.from_config(UNet2DModel.load_config(model_dir))
    seen = []
    for attn in (m for m in unet.modules() if isinstance(m, Attention)):
        attn.register_forward_hook(
            lambda m, args, _out: seen.append(
                (batch, m.heads, args[0].shape[2] * args[0].shape[3], args[0].shape[1] // m.heads)
            )
        )
    size = unet.config.sample_size
    with torch.no_grad():
        unet(torch.randn(batch, unet.config.in_channels, size, size), torch.zeros(batch))
    return seen


def math_path(q, k, v, grad):
    """The output and q, k, v's gradients through the stored softmax weights p."""
    scale = q.shape[-1] ** -0.5
    p = (q @ k.transpose(-2, -1) * scale).softmax(-1)
    ds = torch.ops.aten._softmax_backward_data(grad @ v.transpose(-2, -1), p, -1, torch.float) * scale
    return p @ v, ds @ k, ds.transpose(-2, -1) @ q, p.transpose(-2, -1) @ grad


def flash(q, k, v, grad):
    """The same through PyTorch's flash attention for the CPU and its backward."""
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)
    return (out, *torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(grad, q, k, v, out, lse, 0.0, False))


def time_batch(model_dir, batch, runs):
    """Milliseconds per training step, summed over the attentions, each way."""
    totals = {"math_ms": 0.0, "flash_ms": 0.0}
    worst = 0.0
    shapes = attention_shapes(model_dir, batch)
    for shape in shapes:
        q, k, v, grad = (torch.randn(shape) for _ in range(4))
        worst = max(worst, max(float((a - b).abs().max()) for a, b in zip(math_path(q, k, v, grad), flash(q, k, v, grad))))
        totals["math_ms"] += median_ms(runs, lambda: math_path(q, k, v, grad))
        totals["flash_ms"] += median_ms(runs, lambda: flash(q, k, v, grad))
    return {"batch": batch, "attentions": len(shapes), **{k: round(v, 1) for k, v in totals.items()}, "max_abs_difference": worst}


if __name__ == "__main__":
    per_batch_main(time_batch, 16)
