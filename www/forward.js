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
// Attributes: model (a diffusers folder URL or hf: id; default the shipped MNIST model next to this
// script), hub, t (0..T, default 500), seed (the noise; default 0), digit (which real digit, 0-9,
// default 3), backend (cpu to skip WebGPU). Events: ready {T}, view {t, seed, sqrtAlphaBar,
// sqrtOneMinusAlphaBar, snr}, error {message}. data-state: waiting (until it nears the view) |
// loading | working | ready | error. `view` (a property) is the last view with its values
// (Float32Array each).

import { Figure, define, drawnDigit, imageFigure, realDigit } from './figure.js';
import { createPad } from './ui/draw.js';
import { drawRgba } from './util.js';

const SETTLE_MS = 120;
const PANELS = [
  ['x0', 'x₀', 'the image'],
  ['x_t', 'xₜ', 'noised to t'],
  ['eps', 'ε', 'the noise added'],
  ['eps_hat', 'ε̂(xₜ, t)', 'the model’s estimate'],
  ['x0_hat', 'x̂₀', 'the x₀ it implies'],
];
const CSS = `
.panels { display: grid; grid-template-columns: repeat(auto-fill, minmax(88px, 1fr)); gap: 8px; }
`;
const HTML = `
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
    <button type="button" class="use">Use drawing</button><button type="button" class="clear">Clear</button></div>`;

const fixed = (v) => (Number.isFinite(v) ? v.toFixed(4) : '∞');

class DdpmForward extends Figure {
  static observedAttributes = ['t', 'seed', 'digit'];

  constructor() {
    super(CSS, HTML);
    this.canvases = {};
    for (const [key, label, what] of PANELS) {
      const { fig, canvas } = imageFigure(label, what);
      this.canvases[key] = canvas;
      this.$('.panels').append(fig);
    }
    this.pad = createPad(this.$('.pad'), { lineWidth: 14 });
    this.view = null;
    this.image = null;  // x_0 as RGBA, the real digit or a drawing
    this.settle = 0;
  }

  wire() {
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
  }

  accept({ sample_size: [h, w], in_channels: c, num_train_timesteps: T }, url) {
    if (c !== 1 || h !== w) throw new Error(`${url}: <ddpm-forward> shows one-channel square images (this model: ${c} channels, ${h}x${w})`);
    const slider = this.$('#t');
    slider.max = String(T);
    slider.disabled = false;
  }

  attributeChangedCallback() {
    this.refresh({ newDigit: this.getAttribute('digit') !== this.shownDigit });
  }

  get t() { return this.number('t', 500, 0, this.T ?? 1000); }
  get seed() { return this.number('seed', 0, 0, 2 ** 32 - 1); }
  get digit() { return this.number('digit', 3, 0, 9); }

  async render({ first, newDigit }) {
    const { t, seed } = this;
    if (first || newDigit || !this.image) {
      const k = this.digit;
      this.image = await realDigit(k, this.size);
      this.shownDigit = this.getAttribute('digit');
      this.$('.digit').value = String(k);
    }
    const view = await this.ddpm.forward(this.model, { image: this.image, n: 1, t, seed });
    for (const [key] of PANELS) drawRgba(this.canvases[key], view.frames[key]);
    const slider = this.$('#t');
    slider.value = String(view.t);
    this.$('.tval').value = String(view.t);
    this.$('#numbers').textContent =
      `t = ${view.t}: √ᾱ = ${fixed(view.sqrtAlphaBar)}, √(1 − ᾱ) = ${fixed(view.sqrtOneMinusAlphaBar)}, SNR = ${view.snr >= 1e4 ? view.snr.toExponential(2) : fixed(view.snr)}`;
    this.view = { ...view, seed, x0: view.values.x0 };
    const { sqrtAlphaBar, sqrtOneMinusAlphaBar, snr } = view;
    this.dispatchEvent(new CustomEvent('view', { detail: { t: view.t, seed, sqrtAlphaBar, sqrtOneMinusAlphaBar, snr } }));
  }

  async useDrawing() {
    if (this.pad.isEmpty() || !this.model) return;
    try {
      this.image = await drawnDigit(this.pad, this.size);
      this.shownDigit = this.getAttribute('digit');
      await this.refresh({});
    } catch (err) {
      this.fail(err);
    }
  }
}

define('ddpm-forward', DdpmForward);
