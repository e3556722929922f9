"""Exports a diffusers UNet2DModel folder to ONNX for the onnxruntime-web anchor of the browser bench.

The graph takes `sample` [N, C, H, W] (f32) and `timestep` [N] (f32), any N, and returns the
predicted noise [N, C, H, W].

    python benches/export_onnx.py --model bench-models/mnist --out bench-models/mnist/unet.onnx
"""

import argparse

import torch
from diffusers import UNet2DModel


class Eps(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep):
        return self.unet(sample, timestep).sample


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="diffusers model folder")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    a = p.parse_args()
    unet = UNet2DModel.from_pretrained(a.model).eval()
    c, s = unet.config.in_channels, unet.config.sample_size
    example = (torch.zeros(2, c, s, s), torch.full((2,), 500.0))
    torch.onnx.export(Eps(unet), example, a.out, input_names=["sample", "timestep"], output_names=["eps"],
                      dynamic_axes={"sample": {0: "n"}, "timestep": {0: "n"}, "eps": {0: "n"}},
                      opset_version=17, dynamo=False)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
