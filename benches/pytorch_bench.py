"""The PyTorch anchor for `ddpm bench`: diffusers' UNet2DModel on the same model folder.

Prints one JSON line per batch, shaped like `ddpm bench`'s:
{"backend": "pytorch", "batch", "forward_ms", "train_step_ms"} (medians after a warm-up).
The training step is Algorithm 1 with Adam, as `ddpm train` does it.

    python benches/pytorch_bench.py --model bench-models/mnist --batch 1 16 --threads 2
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel


def median_ms(runs, f):
    f()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        f()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def bench(unet, scheduler, batch, runs):
    c, s = unet.config.in_channels, unet.config.sample_size
    x = torch.full((batch, c, s, s), 0.5)
    t = torch.full((batch,), 500)

    def forward():
        with torch.no_grad():
            unet(x, t).sample.sum().item()

    opt = torch.optim.Adam(unet.parameters(), lr=1e-4)

    def train_step():
        noise = torch.randn_like(x)
        steps = torch.randint(0, scheduler.config.num_train_timesteps, (batch,))
        x_t = scheduler.add_noise(x, noise, steps)  # Eq. 4
        loss = F.mse_loss(unet(x_t, steps).sample, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()

    return {"backend": "pytorch", "batch": batch, "forward_ms": median_ms(runs, forward),
            "train_step_ms": median_ms(runs, train_step)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="diffusers model folder")
    p.add_argument("--batch", type=int, nargs="+", default=[16])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    unet = UNet2DModel.from_pretrained(a.model)
    scheduler = DDPMScheduler.from_pretrained(a.model)
    for batch in a.batch:
        print(json.dumps(bench(unet, scheduler, batch, a.runs)), flush=True)


if __name__ == "__main__":
    main()
