"""Check `ddpm unet` against diffusers on UNet2DModel configs the tests never saw.

Needs torch and diffusers (a venv from PyPI); not part of `make test`.
    python tools/diffusers_parity.py --ddpm PATH/TO/ddpm [--keep DIR] [--config config.json ...]
`--config` runs those config.json files instead of the built-in ones (e.g. the Hub's, in
tests/data/hub/), each on one image. For each config: build the model in diffusers (random weights, GroupNorms perturbed), save it,
run it on random x and t, run `ddpm unet` on the same tensors, print the max abs error.
"""
import argparse, json, subprocess, sys, tempfile
from pathlib import Path

import torch
from diffusers import UNet2DModel
from safetensors.torch import load_file, save_file

CONFIGS = {
    # google/ddpm-cifar10-32's architecture, narrower: no flip, freq_shift 1, one head of full width,
    # downsample_padding 0, eps 1e-6, 3 channels.
    "cifar-like": dict(sample_size=32, in_channels=3, out_channels=3, layers_per_block=2,
                       block_out_channels=(32, 64, 64, 64), norm_num_groups=16, norm_eps=1e-6,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
                       attention_head_dim=None, downsample_padding=0, flip_sin_to_cos=False, freq_shift=1),
    # The shipped MNIST config.
    "mnist": dict(sample_size=32, in_channels=1, out_channels=1, layers_per_block=2,
                  block_out_channels=(32, 64, 128), norm_num_groups=8,
                  down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                  up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D")),
    # Deeper attention, 4 heads of 16, scale-shift time conditioning, no mid attention, mid scale 2,
    # centred input, rectangular input, 2 in and 4 out channels.
    "odd": dict(sample_size=(16, 24), in_channels=2, out_channels=4, layers_per_block=3,
                block_out_channels=(16, 64), norm_num_groups=4, attention_head_dim=16,
                down_block_types=("AttnDownBlock2D", "AttnDownBlock2D"),
                up_block_types=("AttnUpBlock2D", "AttnUpBlock2D"),
                resnet_time_scale_shift="scale_shift", add_attention=False, mid_block_scale_factor=2.0,
                center_input_sample=True, time_embedding_dim=48),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ddpm", required=True)
    ap.add_argument("--keep")
    ap.add_argument("--config", action="append", default=[], help="a config.json to check instead of the built-in ones")
    args = ap.parse_args()
    root = Path(args.keep or tempfile.mkdtemp())
    worst = 0.0
    configs = {Path(c).parent.name: {k: v for k, v in json.load(open(c)).items() if not k.startswith("_")}
               for c in args.config} or CONFIGS
    for name, cfg in configs.items():
        torch.manual_seed(0)
        model = UNet2DModel(**cfg).eval()
        g = torch.Generator().manual_seed(1)
        for m in model.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.data = 1 + 0.25 * torch.randn(m.weight.shape, generator=g)
                m.bias.data = 0.25 * torch.randn(m.bias.shape, generator=g)
        d = root / name
        model.save_pretrained(d)
        h, w = (cfg["sample_size"],) * 2 if isinstance(cfg["sample_size"], int) else cfg["sample_size"]
        n = 3 if name in CONFIGS else 1
        x = torch.randn(n, cfg["in_channels"], h, w, generator=g)
        t = torch.tensor([0, 421, 999][:n] if n == 3 else [421], dtype=torch.int64)
        with torch.no_grad():
            want = model(x, t).sample
        save_file({"x": x, "t": t}, str(d / "in.safetensors"))
        subprocess.run([args.ddpm, "unet", "--model", str(d), "--input", str(d / "in.safetensors"),
                        "--out", str(d / "out.safetensors")], check=True)
        got = load_file(str(d / "out.safetensors"))["sample"]
        err = (got - want).abs().max().item()
        worst = max(worst, err)
        print(json.dumps({"config": name, "params": sum(p.numel() for p in model.parameters()),
                          "max_abs_error": err, "max_abs_output": want.abs().max().item()}))
    if args.config:
        sys.exit(0 if worst <= 1e-4 else 1)
    # The other direction: a model written by `ddpm init` opens in diffusers and computes the same.
    d = root / "written-by-ddpm"
    subprocess.run([args.ddpm, "init", "--config", str(root / "mnist" / "config.json"), "--out", str(d)], check=True)
    model = UNet2DModel.from_pretrained(d).eval()
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([3, 700], dtype=torch.int64)
    with torch.no_grad():
        want = model(x, t).sample
    save_file({"x": x, "t": t}, str(d / "in.safetensors"))
    subprocess.run([args.ddpm, "unet", "--model", str(d), "--input", str(d / "in.safetensors"),
                    "--out", str(d / "out.safetensors")], check=True)
    err = (load_file(str(d / "out.safetensors"))["sample"] - want).abs().max().item()
    worst = max(worst, err)
    print(json.dumps({"config": "written by ddpm, loaded by diffusers", "max_abs_error": err}))
    sys.exit(0 if worst <= 1e-4 else 1)


if __name__ == "__main__":
    main()
