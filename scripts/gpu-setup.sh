# Sourced by scripts/gpu-run.sh, gpu-bench.sh and gpu-dawn.sh on the GPU machine: the log to
# $OUT/run.log, Debian's Vulkan loader and glvnd from .gl/ (the NVIDIA driver's ICD needs them),
# the CLI from .carry/ddpm.xz as /tmp/ddpm where it was packed (`unpack`), `stamp` to mark the log with the
# time and `bounded` to run a step within what is left of $BUDGET seconds.
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_LOADER_DEBUG=${VK_LOADER_DEBUG:-error}
# An xz-compressed program from .carry/ ($1) as the executable $2 (python3 is there; xz may not be).
unpack() {
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"
    chmod +x "$2"
}
[ ! -f .carry/ddpm.xz ] || unpack .carry/ddpm.xz /tmp/ddpm
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
