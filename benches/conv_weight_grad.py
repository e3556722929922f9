"""Where burn's LibTorch backend lost time in a training step: the convolutions' gradients.

burn-tch 0.22 does not implement `conv2d_x_backward` and `conv2d_weight_backward`, so burn's
defaults run: a transposed convolution for the input's, and a conv2d of the input (batch and
channels swapped) with the output gradient as the kernel for the weight's. PyTorch's autograd calls
`aten::convolution_backward` (oneDNN's backward kernels), which vendor/burn-tch now calls for the
weight's (the input's run the same kernel either way). This
times both ways, in the same libtorch, for every Conv2d of the model folder's UNet2DModel (shapes
from a forward pass with hooks), and prints one JSON line per batch with the totals for one
training step (BENCHMARKS.md).

    python benches/conv_weight_grad.py --model configs/mnist --batch 16 128 --threads 2
"""

import torch
from diffusers import UNet2DModel

from pytorch_bench import median_ms, per_batch_main


def conv_shapes(model_dir, batch):
    """(x, weight, stride, padding) of each Conv2d in one forward pass at this batch."""
    unet = UNet2DModel.from_config(UNet2DModel.load_config(model_dir))
    seen = []
    for conv in (m for m in unet.modules() if isinstance(m, torch.nn.Conv2d)):
        conv.register_forward_hook(
            lambda m, args, _out: seen.append((args[0].shape, m.weight.shape, m.stride, m.padding))
        )
    size = unet.config.sample_size
    with torch.no_grad():
        unet(torch.randn(batch, unet.config.in_channels, size, size), torch.zeros(batch))
    return seen


def time_batch(model_dir, batch, runs):
    """Milliseconds per training step, summed over the convolutions, for each gradient each way."""
    totals = {"weight_burn_ms": 0.0, "weight_pytorch_ms": 0.0, "input_burn_ms": 0.0, "input_pytorch_ms": 0.0}
    worst = 0.0
    shapes = conv_shapes(model_dir, batch)
    for x_shape, w_shape, stride, padding in shapes:
        x, w = torch.randn(x_shape), torch.randn(w_shape)
        grad = torch.randn(torch.conv2d(x, w, None, stride, padding).shape)

        def convolution_backward(mask):
            return torch.ops.aten.convolution_backward(
                grad, x, w, None, stride, padding, [1, 1], False, [0, 0], 1, mask
            )

        def weight_burn():  # burn-backend's conv2d_weight_grad_no_groups
            out = torch.conv2d(x.transpose(0, 1), grad.transpose(0, 1), None, 1, padding, stride)
            return out.transpose(0, 1)[:, :, : w_shape[2], : w_shape[3]]

        def input_burn():  # burn-backend's conv2d_x_backward: a transposed convolution
            out_padding = [x_shape[2 + i] - ((grad.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + w_shape[2 + i]) for i in (0, 1)]
            return torch.conv_transpose2d(grad, w, None, stride, padding, out_padding)

        pairs = {
            "weight": (weight_burn, lambda: convolution_backward([False, True, False])[1]),
            "input": (input_burn, lambda: convolution_backward([True, False, False])[0]),
        }
        for name, (burn, pytorch) in pairs.items():
            worst = max(worst, float((burn() - pytorch()).abs().max()))
            totals[f"{name}_burn_ms"] += median_ms(runs, burn)
            totals[f"{name}_pytorch_ms"] += median_ms(runs, pytorch)
    return {"batch": batch, "convs": len(shapes), **{k: round(v, 1) for k, v in totals.items()}, "max_abs_difference": worst}


if __name__ == "__main__":
    per_batch_main(time_batch, 64)
