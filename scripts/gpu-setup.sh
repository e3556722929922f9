# Sourced by scripts/gpu-run.sh, gpu-bench.sh and gpu-dawn.sh on the GPU machine: the log to
# $OUT/run.log, Debian's Vulkan loader and glvnd from .gl/ (the NVIDIA driver's ICD needs them),
# the CLI from .carry/ddpm.xz as /tmp/ddpm where it was packed, `stamp` to mark the log with the
# time and `bounded` to run a step within what is left of $BUDGET seconds.
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_LOADER_DEBUG=${VK_LOADER_DEBUG:-error}
if [ -f .carry/ddpm.xz ]; then
    python3 -c 'import lzma, shutil; shutil.copyfileobj(lzma.open(".carry/ddpm.xz"), open("/tmp/ddpm", "wb"))'
    chmod +x /tmp/ddpm
fi
nvidia-smi -L
stamp() { echo "== $(date +%T) +${SECONDS}s $*"; }
# Run "$@" for at most $1 seconds, less if BUDGET has less left; skip it when under 15 s are left.
bounded() {
    local limit=$1 left=$((BUDGET - SECONDS))
    shift
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 15 ]; then stamp "skipped (budget): $*"; return 1; fi
    stamp "start (<= ${limit}s): $*"
    timeout "$limit" "$@"
    stamp "exit $?"
}
