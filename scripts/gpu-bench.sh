#!/usr/bin/env bash
# The native GPU benchmarks in one run on a GPU machine (NVIDIA, Vulkan driver, no Rust toolchain;
# BENCHMARKS.md, Native GPU): burn's wgpu backend beside PyTorch eager on the same GPU, the shipped
# model (www/models/mnist, as f32). `make gpu-pack` prepares .carry/ (the CLI; with
# GPU_FEATURES=burn/autotune, burn's kernel autotuning), .gl/ (Debian's Vulkan loader and glvnd)
# and .whl/ (diffusers); carry all three. In order, each step bounded by what is left of BUDGET
# seconds, the log and outputs in $OUT (default ./gpu-out):
#   1. `ddpm bench` on wgpu: forward and training step at BATCHES (default 128 16 8 1); DDIM-50
#      for 2,000 images (one process, so the kernels compile once);
#   2. benches/pytorch_bench.py on cuda, f32 and bf16 autocast, the same figures (PYTORCH=0: not);
#   3. fine-tuning as the page does it: 200 Adam steps at batch 8 from the shipped model on four
#      drawn sevens, wall time of the whole process (kernel compilation included);
#   4. the first image from a fresh process, twice (the second finds the driver's shader cache on
#      disk, like a page with cached weights; autotune's results are not kept): DDIM-50, one image;
#   5. correctness on this GPU: the tiny parity model's UNet output against diffusers' vectors,
#      and 16 DDIM-50 samples of the shipped model (grid.png).
set -u
OUT=${OUT:-gpu-out}
BUDGET=${BUDGET:-540}
source scripts/gpu-setup.sh
[ "${PYTORCH:-1}" = 0 ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
M=/tmp/mnist-f32
/tmp/ddpm convert --model www/models/mnist --out $M --dtype f32

bounded 240 /tmp/ddpm bench --model $M --batch ${BATCHES:-128 16 8 1} --runs 5 --sample 2000 --backend wgpu
[ "${PYTORCH:-1}" = 0 ] || for precision in "" --bf16; do
    bounded 70 python3 benches/pytorch_bench.py --model $M --batch 128 16 8 1 --runs 5 --device cuda --sample 2000 $precision
done
bounded 120 /tmp/ddpm train --init $M --data tests/e2e/fixtures --out /tmp/tuned --steps 200 --batch 8 \
    --lr 2e-4 --warmup 0 --checkpoint-every 200 --backend wgpu
for visit in first second; do
    start=$(date +%s.%N)
    bounded 30 /tmp/ddpm sample --model $M --n 1 --sampler ddim --steps 50 --seed 1 --out /tmp/first --backend wgpu &&
    python3 -c "print('first image, $visit process: %.2f s from its start' % ($(date +%s.%N) - $start))"
done
bounded 45 /tmp/ddpm unet --model tests/data/tiny --input tests/data/tiny/inputs.safetensors --out /tmp/unet.safetensors --backend wgpu &&
python3 - <<'EOF'
import numpy as np
from safetensors.numpy import load_file
ours = load_file("/tmp/unet.safetensors")["sample"]
want = load_file("tests/data/tiny/expected.safetensors")["unet_out"]
print(f"parity on this GPU: max |ours - diffusers| = {np.abs(ours - want).max():.3e} (the CPU test allows 1e-4)")
EOF
bounded 45 /tmp/ddpm sample --model $M --n 16 --sampler ddim --steps 50 --seed 0 --out /tmp/samples --backend wgpu &&
cp /tmp/samples/grid.png "$OUT/grid-wgpu.png"
stamp done
