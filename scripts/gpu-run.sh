#!/usr/bin/env bash
# One run on a GPU machine (NVIDIA, Vulkan driver, no Rust toolchain): check that burn's wgpu
# backend trains like the CPU there, train the MNIST model with it, and time a training step
# beside PyTorch on the same GPU. `make gpu-pack` prepares what it needs: .carry/ (the CLI, the
# digits, and with GPU_RESUME a training state to continue), .gl/ (Debian's Vulkan loader and
# glvnd, which the NVIDIA driver's ICD needs) and .whl/ (diffusers; leave it out of `carry` when
# a training state rides along). Results go to $OUT (default ./gpu-out): the log, the EMA
# weights and the training state (the optimizer state split in two), which `make gpu-unpack`
# puts back for `ddpm train --resume` to continue. With a trained model in .carry/model it
# evaluates that model instead (`ddpm eval`, DDIM-50 and DDPM-1000, n = 2,000).
# The training stops BUDGET seconds after the start less 110 s for what follows (or after
# TRAIN_SECONDS): SIGINT makes `ddpm train` write its checkpoint and stop (the learning rate is
# constant after warm-up, so that is a model of that many steps).
set -u
OUT=${OUT:-gpu-out}
BUDGET=${BUDGET:-580}
STEPS=${STEPS:-11200}
BATCH=${BATCH:-64}
source scripts/gpu-setup.sh
python3 -c 'import tarfile; tarfile.open(".carry/digits.tar.xz").extractall("/tmp/mnist")'
M=/tmp/model
D=/tmp/mnist/digits
rm -rf $M /tmp/g

# The gate: from one shared checkpoint of the tiny parity model, 5 Adam steps on the CPU and on the
# GPU must land on the same weights (the same noise: it comes from the checkpoint's generator).
stamp gate
T="--data tests/e2e/fixtures --config tests/data/tiny/config.json --scheduler tests/data/tiny/scheduler_config.json --batch 4 --warmup 0 --lr 1e-3"
/tmp/ddpm train $T --out /tmp/g/base --steps 1 --checkpoint-every 1 --backend cpu 2>&1 | tail -1
cp -r /tmp/g/base /tmp/g/cpu && cp -r /tmp/g/base /tmp/g/gpu
/tmp/ddpm train $T --out /tmp/g/cpu --steps 6 --checkpoint-every 6 --backend cpu --resume 2>&1 | tail -1
timeout 120 /tmp/ddpm train $T --out /tmp/g/gpu --steps 6 --checkpoint-every 6 --backend wgpu --resume 2>&1 | grep -v XDG | tail -3
python3 - <<'EOF' || { stamp "gate failed: not training"; exit 1; }
import sys
import numpy as np
from safetensors.numpy import load_file
w = {d: load_file(f"/tmp/g/{d}/train_state/diffusion_pytorch_model.safetensors") for d in ("base", "cpu", "gpu")}
norm = lambda a, b: np.sqrt(sum(((w[a][k] - w[b][k]).astype(np.float64) ** 2).sum() for k in w["base"]))
update, diff = norm("cpu", "base"), norm("cpu", "gpu")
print(f"gate: |CPU - GPU| / |update| = {diff:.3e} / {update:.3e} = {diff / update:.2e} (must be < 1e-2)")
sys.exit(0 if diff < 1e-2 * update else 1)
EOF

# A trained model in .carry/model (diffusers layout): evaluate it instead of training (on a CPU,
# DDPM-1000 for 2,000 images takes about 10 hours).
if [ -f .carry/model/config.json ]; then
    for s in "ddim 50" "ddpm 1000"; do
        set -- $s
        stamp "eval $1-$2 n=2000"
        timeout $([ $1 = ddim ] && echo 150 || echo $((BUDGET - SECONDS - 10))) /tmp/ddpm eval --model .carry/model --n 2000 --sampler $1 --steps $2 \
            --batch 250 --mnist-dir $D --backend wgpu
        stamp "eval exit $?"
    done
    exit
fi

# A training state in .carry/train_state (`make gpu-pack GPU_RESUME=DIR`): continue it. Its EMA
# weights stay behind (the upload limit), so the EMA restarts from the training weights.
RESUME=
if [ -f .carry/train_state/state.json ]; then
    mkdir -p $M && cp -r .carry/train_state $M/train_state && RESUME=--resume
fi
TRAIN_SECONDS=${TRAIN_SECONDS:-$((BUDGET - SECONDS - 110))}
stamp "train for $TRAIN_SECONDS s"
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader -l 60 &
timeout -s INT "$TRAIN_SECONDS" /tmp/ddpm train --data mnist --mnist-dir $D --out $M --steps "$STEPS" \
    --batch $BATCH --lr 2e-4 --warmup 500 --ema 0.999 --seed 0 --checkpoint-every 500 --backend wgpu $RESUME
stamp "train exit $?"
kill %1
head -c 120 $M/train_state/state.json; echo
cp $M/diffusion_pytorch_model.safetensors "$OUT/ema.safetensors"
cp $M/train_state/diffusion_pytorch_model.safetensors "$OUT/raw.safetensors"
cp $M/train_state/state.json "$OUT/state.json"
split -b 15M -d $M/train_state/optimizer.bin "$OUT/optimizer.bin."

stamp bench
timeout 50 /tmp/ddpm bench --model $M --batch $BATCH --runs 5 --backend wgpu
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
PYTHONPATH=/tmp/site timeout 45 python3 benches/pytorch_bench.py --model $M --batch 1 16 128 --device cuda --sample 2000
stamp done
