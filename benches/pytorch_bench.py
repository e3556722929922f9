"""The PyTorch anchor for `ddpm bench`: diffusers' UNet2DModel on the same model folder.

Prints one JSON line per batch, shaped like `ddpm bench`'s:
{"backend": "pytorch", "batch", "forward_ms", "train_step_ms"} (medians after a warm-up).
The training step is Algorithm 1 with Adam, as `ddpm train` does it. On a GPU (`--device cuda`,
optionally `--bf16` autocast) `--sample N` also times DDIM-50 for N images, as `ddpm sample` does.

    python benches/pytorch_bench.py --model bench-models/mnist --batch 1 16 --threads 2
    python benches/pytorch_bench.py --model M --batch 1 16 128 --device cuda --sample 2000
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel


def median_ms(runs, f):
    f()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        f()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def bench(unet, scheduler, batch, runs, device, autocast):
    c, s = unet.config.in_channels, unet.config.sample_size
    x = torch.full((batch, c, s, s), 0.5, device=device)
    t = torch.full((batch,), 500, device=device)

    def forward():
        with torch.no_grad(), autocast():
            unet(x, t).sample.sum().item()

    opt = torch.optim.Adam(unet.parameters(), lr=1e-4)

    def train_step():
        noise = torch.randn_like(x)
        steps = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), device=device)
        x_t = scheduler.add_noise(x, noise, steps)  # Eq. 4
        with autocast():
            loss = F.mse_loss(unet(x_t, steps).sample.float(), noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()

    return {"batch": batch, "forward_ms": median_ms(runs, forward),
            "train_step_ms": median_ms(runs, train_step)}


def sample_seconds(unet, model, n, steps, device, autocast):
    """Wall time of DDIM-`steps` (eta 0) for n images in one batch, after a warm-up run."""
    scheduler = DDIMScheduler.from_pretrained(model)
    c, s = unet.config.in_channels, unet.config.sample_size

    def run():
        scheduler.set_timesteps(steps)
        x = torch.randn((n, c, s, s), device=device)
        with torch.no_grad(), autocast():
            for t in scheduler.timesteps:
                eps = unet(x, t.to(device)).sample.float()
                x = scheduler.step(eps, t, x).prev_sample
        x.sum().item()

    run()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def per_batch_main(time_batch, default_batch):
    """The command line of the per-operation benches: one JSON line of time_batch(model, batch, runs)
    per --batch."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="a folder with the UNet's config.json")
    parser.add_argument("--batch", type=int, nargs="+", default=[default_batch])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for batch in args.batch:
        print(json.dumps(time_batch(args.model, batch, args.runs)), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="diffusers model folder")
    p.add_argument("--batch", type=int, nargs="+", default=[16])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (on cuda)")
    p.add_argument("--sample", type=int, default=0, help="also time DDIM-50 for this many images")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    unet = UNet2DModel.from_pretrained(a.model).to(a.device)
    scheduler = DDPMScheduler.from_pretrained(a.model)
    def autocast():
        return torch.autocast(a.device, dtype=torch.bfloat16, enabled=a.bf16)
    backend = "pytorch-bf16" if a.bf16 else "pytorch"
    for batch in a.batch:
        print(json.dumps({"backend": backend} | bench(unet, scheduler, batch, a.runs, a.device, autocast)), flush=True)
    if a.sample:
        secs = sample_seconds(unet, a.model, a.sample, 50, a.device, autocast)
        print(json.dumps({"backend": backend, "ddim50_images": a.sample, "seconds": secs}), flush=True)


if __name__ == "__main__":
    main()
