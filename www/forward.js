// <ddpm-forward>: the forward process of a post's derivation, live on the real model.
//
//   <script type="module" src="https://HOST/forward.js"></script>
//   <ddpm-forward t="500"></ddpm-forward>
//
// An image x_0 (a real MNIST digit, or one the reader draws) and a slider over the paper's t
// (0..T). It shows x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, the noise eps that
// was added, the model's prediction eps_hat(x_t, t), and the x_0 it implies, (x_t - sqrt(1 -
// alpha_bar_t) eps_hat) / sqrt(alpha_bar_t), with sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t) and the
// SNR alpha_bar_t / (1 - alpha_bar_t). The math runs in the engine (Engine.forward_view); this
// file only draws. The model runs once per slider position that settles, never per frame.
//
// Attributes: model (a diffusers folder URL or hf: id; default the shipped MNIST model next to
// this script), hub, t (0..T, default 500), seed (the noise; default 0), digit (which real digit,
// 0-9, default 3), backend (cpu to skip WebGPU). Events: ready {T}, view {t, seed,
// sqrtAlphaBar, sqrtOneMinusAlphaBar, snr}, error {message}. data-state: loading | ready |
// working | error. `view` (a property) is the last view with its values (Float32Array each).

import { backendSentence, backendWords } from './backend-words.js';
import { connect } from './ddpm.js';
import { styles } from './element.js';
import { modelUrl } from './hub.js';
import { drawRgba, wholeNumber } from './util.js';
import { createPad } from './ui/draw.js';

const DEFAULT_MODEL = new URL('./models/mnist/', import.meta.url).href;
const DIGITS = new URL('./explore/digits.json', import.meta.url).href;
const SETTLE_MS = 120;
const PANELS = [
  ['x0', 'x₀', 'the image'],
  ['x_t', 'xₜ', 'noised to t'],
  ['eps', 'ε', 'the noise added'],
  ['eps_hat', 'ε̂(xₜ, t)', 'the model’s estimate'],
  ['x0_hat', 'x̂₀', 'the x₀ it implies'],
];
const CSS = `
.box { border: 1px solid var(--line); border-radius: 8px; padding: 10px; background: var(--bg); color: var(--fg); display: grid; gap: 8px; }
.row { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; }
.panels { display: grid; grid-template-columns: repeat(auto-fill, minmax(88px, 1fr)); gap: 8px; }
figure { margin: 0; display: grid; gap: 2px; justify-items: center; text-align: center; }
figcaption { font-size: 12px; color: var(--muted); }
figcaption b { color: var(--fg); font-weight: 600; font-size: 14px; }
canvas.img { image-rendering: pixelated; background: #000; width: 100%; max-width: 128px; height: auto; }
input[type=range] { flex: 1 1 200px; min-height: 44px; }
select, button { font: inherit; min-height: 44px; }
button { padding: 4px 14px; border-radius: 6px; border: 1px solid var(--accent); background: var(--bg); color: var(--accent); cursor: pointer; }
.numbers { font-variant-numeric: tabular-nums; }
.muted { color: var(--muted); font-size: 12px; }
.pad { touch-action: none; width: 168px; height: 168px; border-radius: 6px; background: #000; }
`;

let digits = null;  // the real digits, fetched once per page

async function realDigit(k) {
  digits ??= fetch(DIGITS).then((r) => {
    if (!r.ok) throw new Error(`${DIGITS}: HTTP ${r.status}`);
    return r.json();
  });
  const { size, digits: all } = await digits;
  const bytes = Uint8Array.from(atob(all[k]), (c) => c.charCodeAt(0));
  return { size, values: Float32Array.from(bytes, (v) => (v / 255) * 2 - 1) };
}

/** The drawing on `pad` as a [size x size] image in [-1, 1], padded as MNIST digits are. */
async function drawnDigit(pad, size) {
  const inner = size - 4;
  const bitmap = await createImageBitmap(await pad.toBlob(inner));
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = size;
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, size, size);
  ctx.drawImage(bitmap, 2, 2, inner, inner);
  const rgba = ctx.getImageData(0, 0, size, size).data;
  return Float32Array.from({ length: size * size }, (_, i) => (rgba[i * 4] / 255) * 2 - 1);
}

/** A one-channel image in [-1, 1] as an RGBA frame. */
function grayFrame(values, size) {
  const rgba = new Uint8ClampedArray(size * size * 4);
  values.forEach((v, i) => {
    const g = Math.round(((Math.max(-1, Math.min(1, v)) + 1) / 2) * 255);
    rgba.set([g, g, g, 255], i * 4);
  });
  return { width: size, height: size, rgba };
}

const fixed = (v) => (Number.isFinite(v) ? v.toFixed(4) : '∞');

class DdpmForward extends HTMLElement {
  static observedAttributes = ['t', 'seed', 'digit'];

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    styles(root, CSS);
    const box = document.createElement('div');
    box.className = 'box';
    box.innerHTML = `
      <div class="row"><strong>The forward process</strong>
        <span class="muted">x<sub>t</sub> = √ᾱ<sub>t</sub> x<sub>0</sub> + √(1 − ᾱ<sub>t</sub>) ε</span></div>
      <div class="row"><label for="t">t = <output class="tval">…</output></label>
        <input id="t" type="range" min="0" max="1000" step="1" aria-describedby="numbers" disabled></div>
      <div class="panels"></div>
      <div id="numbers" class="row numbers" aria-live="polite"></div>
      <div class="row">
        <label>Digit <select class="digit" aria-label="real MNIST digit">${[...Array(10).keys()].map((k) => `<option>${k}</option>`).join('')}</select></label>
        <button type="button" class="renoise">New noise</button>
        <button type="button" class="draw">Draw your own</button>
        <span class="muted where"></span>
      </div>
      <div class="row" hidden><canvas class="pad" width="168" height="168" aria-label="drawing pad"></canvas>
        <button type="button" class="use">Use drawing</button><button type="button" class="clear">Clear</button></div>
      <div class="error" role="alert" hidden></div>`;
    root.append(box);
    this.$ = (sel) => box.querySelector(sel);
    this.canvases = {};
    for (const [key, label, what] of PANELS) {
      const fig = document.createElement('figure');
      fig.innerHTML = `<canvas class="img" width="32" height="32" role="img"></canvas><figcaption><b>${label}</b><br>${what}</figcaption>`;
      this.canvases[key] = fig.querySelector('canvas');
      this.canvases[key].setAttribute('aria-label', `${label}: ${what}`);
      this.$('.panels').append(fig);
    }
    this.pad = createPad(this.$('.pad'), { lineWidth: 14 });
    this.view = null;
    this.x0 = null;
    this.pending = null;
    this.busy = false;
    this.settle = 0;
  }

  connectedCallback() {
    if (this.started) return;
    this.started = true;
    const slider = this.$('#t');
    slider.addEventListener('input', () => {
      this.$('.tval').value = slider.value;
      clearTimeout(this.settle);
      this.settle = setTimeout(() => this.setAttribute('t', slider.value), SETTLE_MS);
    });
    this.$('.digit').addEventListener('change', (e) => this.setAttribute('digit', e.target.value));
    this.$('.renoise').addEventListener('click', () => this.setAttribute('seed', String(this.seed + 1)));
    this.$('.draw').addEventListener('click', () => { this.$('.pad').parentElement.hidden = false; });
    this.$('.clear').addEventListener('click', () => this.pad.clear());
    this.$('.use').addEventListener('click', () => this.useDrawing());
    this.start().catch((err) => this.fail(err));
  }

  attributeChangedCallback() {
    if (this.model) this.refresh(this.getAttribute('digit') !== this.shownDigit);
  }

  get t() { return this.number('t', 500, 0, this.T ?? 1000); }
  get seed() { return this.number('seed', 0, 0, 2 ** 32 - 1); }
  get digit() { return this.number('digit', 3, 0, 9); }

  number(name, fallback, lo, hi) {
    const raw = this.getAttribute(name);
    return raw === null || raw === '' ? fallback : wholeNumber(raw, lo, hi, `${name} of <ddpm-forward>`);
  }

  async start() {
    this.dataset.state = 'loading';
    this.ddpm = await connect({ backend: this.getAttribute('backend') === 'cpu' ? 'cpu' : 'auto' });
    this.$('.where').textContent = backendSentence(backendWords(this.ddpm.backend));
    const url = modelUrl(this.getAttribute('model') || DEFAULT_MODEL, document.baseURI, this.getAttribute('hub') || undefined);
    this.model = await this.ddpm.load(url);
    const { sample_size: [h, w], in_channels: c, num_train_timesteps: T } = this.model.info;
    if (c !== 1 || h !== w) throw new Error(`${url}: <ddpm-forward> shows one-channel square images (this model: ${c} channels, ${h}x${w})`);
    this.T = T;
    this.size = h;
    const slider = this.$('#t');
    slider.max = String(T);
    slider.disabled = false;
    this.dispatchEvent(new CustomEvent('ready', { detail: { T } }));
    await this.refresh(true);
  }

  /** Runs the model for the current attributes; while a run is in flight, only the latest
   *  request waits for it. */
  async refresh(newImage = false) {
    this.pending = { newImage: newImage || this.pending?.newImage };
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.pending) {
        const { newImage: fresh } = this.pending;
        this.pending = null;
        await this.render(fresh);
      }
    } catch (err) {
      this.fail(err);
    } finally {
      this.busy = false;
    }
  }

  async render(fresh) {
    const { t, seed } = this;
    if (fresh || !this.x0) {
      const k = this.digit;
      const { size, values } = await realDigit(k);
      if (size !== this.size) throw new Error(`the real digits are ${size}x${size}, the model's images ${this.size}x${this.size}`);
      this.x0 = values;
      this.shownDigit = this.getAttribute('digit');
      this.$('.digit').value = String(k);
    }
    this.dataset.state = 'working';
    this.$('.error').hidden = true;
    const view = await this.ddpm.forward(this.model, { x0: this.x0, n: 1, t, seed });
    this.show(view, seed);
  }

  show(view, seed) {
    drawRgba(this.canvases.x0, grayFrame(this.x0, this.size));
    for (const key of ['x_t', 'eps', 'eps_hat', 'x0_hat']) drawRgba(this.canvases[key], view.frames[key]);
    const slider = this.$('#t');
    slider.value = String(view.t);
    this.$('.tval').value = String(view.t);
    this.$('#numbers').textContent =
      `t = ${view.t}: √ᾱ = ${fixed(view.sqrtAlphaBar)}, √(1 − ᾱ) = ${fixed(view.sqrtOneMinusAlphaBar)}, SNR = ${view.snr >= 1e4 ? view.snr.toExponential(2) : fixed(view.snr)}`;
    this.view = { ...view, seed, x0: this.x0 };
    this.dataset.state = 'ready';
    const { t, sqrtAlphaBar, sqrtOneMinusAlphaBar, snr } = view;
    this.dispatchEvent(new CustomEvent('view', { detail: { t, seed, sqrtAlphaBar, sqrtOneMinusAlphaBar, snr } }));
  }

  async useDrawing() {
    if (this.pad.isEmpty()) return;
    try {
      this.x0 = await drawnDigit(this.pad, this.size);
      this.shownDigit = this.getAttribute('digit');
      await this.refresh(false);
    } catch (err) {
      this.fail(err);
    }
  }

  fail(err) {
    const message = err?.message || String(err);
    const box = this.$('.error');
    box.textContent = message;
    box.hidden = false;
    this.dataset.state = 'error';
    this.dispatchEvent(new CustomEvent('error', { detail: { message } }));
  }
}

if (!customElements.get('ddpm-forward')) customElements.define('ddpm-forward', DdpmForward);
