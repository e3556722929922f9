"""Small UNet2DModel variants and diffusers' outputs on them, for tests/parity.rs: the config
options the `tiny` vectors leave at their defaults. Run with diffusers 0.42.1 and torch in the
venv of `make venv`: `python tests/data/variants/make.py` (writes next to this file)."""
import json, os
import torch
from diffusers import UNet2DModel
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
SMALL = dict(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, attention_head_dim=4)
VARIANTS = {
    # scale_shift resnets; the mid block's attention then has no GroupNorm
    "scale-shift": dict(SMALL, sample_size=8, in_channels=3, out_channels=3,
                        down_block_types=("AttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "AttnUpBlock2D"),
                        resnet_time_scale_shift="scale_shift", flip_sin_to_cos=False, freq_shift=1, center_input_sample=True),
    # no mid block, no padding in the downsampler, three layers per up block, a scaled mid factor
    "no-mid": dict(SMALL, sample_size=8, in_channels=2, out_channels=2, layers_per_block=2,
                   down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                   mid_block_type=None, downsample_padding=0, norm_eps=1e-6, attention_head_dim=None),
    # a non-square sample, the mid block without attention, its own attention groups elsewhere
    "wide": dict(SMALL, sample_size=(8, 12), in_channels=1, out_channels=1,
                 down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                 add_attention=False, mid_block_scale_factor=1.41),
    # scale_shift with attn_norm_num_groups given: the mid block's attention has a GroupNorm again
    "scale-shift-groups": dict(SMALL, sample_size=6, in_channels=1, out_channels=1,
                               down_block_types=("AttnDownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "AttnUpBlock2D"),
                               resnet_time_scale_shift="scale_shift", attn_norm_num_groups=2),
}

torch.manual_seed(2000)
for name, config in VARIANTS.items():
    model = UNet2DModel(**config).eval()
    with torch.no_grad():  # away from the init, so that every parameter matters
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    out = os.path.join(HERE, name)
    model.save_pretrained(out, safe_serialization=True)
    h, w = config["sample_size"] if isinstance(config["sample_size"], tuple) else (config["sample_size"],) * 2
    x = torch.randn(2, config["in_channels"], h, w)
    t = torch.tensor([3, 998])
    with torch.no_grad():
        y = model(x, t).sample
    save_file({"x": x, "t": t, "y": y.contiguous()}, os.path.join(out, "io.safetensors"))
    print(name, sum(p.numel() for p in model.parameters()), "parameters", tuple(y.shape))
