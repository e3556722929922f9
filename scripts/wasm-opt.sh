#!/usr/bin/env bash
# wasm-opt -O -Oz on the engine's wasm, in place (BENCHMARKS.md, "Sizes"). binaryen from npm is
# itself compiled to wasm and runs on one thread, about 5 minutes on this engine; its output
# depends only on the input's bytes, the flags and binaryen's version, and the input is the same
# from any checkout of a tree. So each output is kept under a hash of the three, beside cargo's
# crates outside the checkout, and a fresh clone of a tree built before copies it instead.
set -euo pipefail
wasm=${1:?usage: scripts/wasm-opt.sh path/to/file.wasm}
opt=node_modules/.bin/wasm-opt
flags=(-O -Oz)
cache=${WASM_OPT_CACHE:-$HOME/.cache/ddpm-web/wasm-opt}
key=$({ sha256sum <"$wasm"; echo "${flags[*]}"; "$opt" --version; } | sha256sum | cut -d' ' -f1)
if [ -s "$cache/$key.wasm" ]; then
	echo "wasm-opt ${flags[*]}: this input was optimised before, output from $cache/$key.wasm"
	cp "$cache/$key.wasm" "$wasm"
	exit 0
fi
"$opt" "${flags[@]}" "$wasm" -o "$wasm.opt"
mkdir -p "$cache"
# A copy then a rename, so that a run stopped half-way leaves no partial file under the key.
cp "$wasm.opt" "$cache/$key.wasm.part" && mv "$cache/$key.wasm.part" "$cache/$key.wasm"
mv "$wasm.opt" "$wasm"
# Only the latest few outputs are worth keeping: each is about 11 MB.
ls -t "$cache"/*.wasm | tail -n +6 | xargs -r rm -f
