# Sourced by scripts/gpu-run.sh and scripts/gpu-bench.sh on the GPU machine: the log to
# $OUT/run.log, Debian's Vulkan loader and glvnd from .gl/ (the NVIDIA driver's ICD needs them),
# the CLI from .carry/ddpm.xz as /tmp/ddpm, and `stamp` to mark the log with the time.
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_LOADER_DEBUG=${VK_LOADER_DEBUG:-error}
python3 -c 'import lzma, shutil; shutil.copyfileobj(lzma.open(".carry/ddpm.xz"), open("/tmp/ddpm", "wb"))'
chmod +x /tmp/ddpm
nvidia-smi -L
stamp() { echo "== $(date +%T) +${SECONDS}s $*"; }
