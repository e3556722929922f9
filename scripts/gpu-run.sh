#!/usr/bin/env bash
# One run on a GPU machine (NVIDIA, Vulkan driver, no Rust toolchain): train the MNIST model with
# burn's wgpu backend on Vulkan, evaluate it, and benchmark it beside PyTorch on the same GPU.
# `make gpu-pack` prepares what it needs in .carry/ (the `vulkan` build of ddpm, the digits),
# .gl/ (Debian's libvulkan1) and .whl/ (diffusers). Results go to $OUT (default ./gpu-out).
# TRAIN_SECONDS bounds the training: past it, SIGINT makes `ddpm train` write its checkpoint
# and stop (the learning rate is constant after warm-up, so that is a model of that many steps).
set -u
OUT=${OUT:-gpu-out}
TRAIN_SECONDS=${TRAIN_SECONDS:-370}
STEPS=${STEPS:-5600}
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
python3 - <<'EOF'
import lzma, shutil, tarfile
with lzma.open(".carry/ddpm.xz") as src, open("/tmp/ddpm", "wb") as dst:
    shutil.copyfileobj(src, dst)
tarfile.open(".carry/digits.tar.xz").extractall("/tmp/mnist")
EOF
chmod +x /tmp/ddpm
nvidia-smi -L
M=/tmp/model
D=/tmp/mnist/digits
stamp() { echo "== $(date +%T) $*"; }

stamp train
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader -l 60 &
timeout -s INT "$TRAIN_SECONDS" /tmp/ddpm train --data mnist --mnist-dir $D --out $M --steps "$STEPS" \
    --batch 128 --lr 2e-4 --warmup 500 --ema 0.999 --seed 0 --checkpoint-every 500 --backend wgpu
stamp "train exit $?"
kill %1
cat $M/train_state/state.json | head -c 200; echo
cp $M/diffusion_pytorch_model.safetensors "$OUT/ema.safetensors"
cp $M/train_state/diffusion_pytorch_model.safetensors "$OUT/raw.safetensors"
cp $M/train_state/state.json "$OUT/state.json"
split -b 15M -d $M/train_state/optimizer.bin "$OUT/optimizer.bin."

stamp "eval ddim-50 n=2000"
timeout 60 /tmp/ddpm eval --model $M --n 2000 --sampler ddim --steps 50 --batch 500 --mnist-dir $D --backend wgpu
stamp "eval exit $?"
for b in 1 16 128; do timeout 20 /tmp/ddpm bench --model $M --batch $b --runs 5 --backend wgpu; done
stamp "ddpm sample ddim-50 n=2000"
timeout 25 /tmp/ddpm sample --model $M --n 2000 --sampler ddim --steps 50 --out /tmp/s --backend wgpu | tail -1
stamp "sample exit $?"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
for p in "" --bf16; do
    PYTHONPATH=/tmp/site timeout 30 python3 benches/pytorch_bench.py --model $M --batch 1 16 128 --device cuda --sample 2000 $p
done
stamp done
