// <ddpm-sdedit>: sketch to sample (SDEdit, Meng et al. 2022) on the real model.
//
//   <script type="module" src="https://HOST/sdedit.js"></script>
//   <ddpm-sdedit strength="0.4" seeds="4"></ddpm-sdedit>
//
// The reader draws a rough digit; the model noises it to the timestep t0 that `strength` of the
// reverse process lies back from its end, x_t0 = sqrt(alpha_bar_t0) x_drawing +
// sqrt(1 - alpha_bar_t0) eps, and denoises from there, once per seed. Strength 0 gives the
// drawing back, strength 1 starts from (almost) pure noise and forgets it. The engine does the
// math (Engine.start with an image); this file draws. It starts from a real digit until the
// reader draws, and runs again when a stroke ends or a setting settles; a newer request stops
// the run in flight.
//
// Attributes: model (a diffusers folder URL or hf: id; default the shipped MNIST model next to this
// script), hub, backend (cpu to skip WebGPU), strength (0..1, default 0.4), seeds (images, 1-16,
// default 4), seed (the first seed's noise; default 0), sampler (default ddim), steps (default 50),
// eta (DDIM's, 0..1, default 0), digit (the real digit shown before a drawing, 0-9, default 7).
// Events: ready {T}, result {strength, seed, seeds, sampler, steps, eta, width, height, images},
// error {message}. data-state: waiting (until it nears the view) | loading | working | ready |
// error. `image` (RGBA) is what the run started from, `result` the last result.

import { Figure, define, drawnDigit, imageFigure, realDigit, sampleFor, showStrip } from './figure.js';
import { createPad } from './ui/draw.js';
import { drawRgba } from './util.js';

const SETTLE_MS = 250;
// On DDPM's linear schedule t0 = 0.4 T keeps sqrt(alpha_bar) of about 0.5 of the drawing: its
// shape survives and the strokes become the model's; from about 0.6 on (0.2 of it) other digits
// come out.
const DEFAULT_STRENGTH = 0.4;
const CSS = `
.strip { display: grid; grid-template-columns: repeat(auto-fill, minmax(72px, 1fr)); gap: 8px; flex: 1 1 240px; }
.start { display: grid; gap: 6px; justify-items: start; }
`;
const HTML = `
  <div class="row"><strong>Sketch to sample (SDEdit)</strong>
    <span class="muted">noise the drawing to t₀, then denoise from there</span></div>
  <div class="row">
    <div class="start">
      <canvas class="pad" width="168" height="168" aria-label="drawing pad: draw a digit"></canvas>
      <div class="row"><button type="button" class="clear">Clear</button><button type="button" class="undo">Undo</button></div>
    </div>
    <div class="used"></div>
    <div class="strip" aria-live="polite"></div>
  </div>
  <div class="row"><label for="strength">strength = <output class="sval">…</output></label>
    <input id="strength" type="range" min="0" max="1" step="0.05" aria-describedby="status"></div>
  <div class="row">
    <label>Seeds <select class="seeds" aria-label="how many images">${[1, 2, 4, 8, 16].map((k) => `<option>${k}</option>`).join('')}</select></label>
    <button type="button" class="reseed">New seeds</button>
    <span id="status" class="muted status" aria-live="polite"></span>
  </div>
  <div class="row"><span class="muted where"></span></div>`;

class DdpmSdedit extends Figure {
  static observedAttributes = ['strength', 'seeds', 'seed', 'sampler', 'steps', 'eta', 'digit'];

  constructor() {
    super(CSS, HTML);
    this.pad = createPad(this.$('.pad'), { lineWidth: 14 });
    const used = imageFigure('x₀', 'what the model starts from');
    this.usedCanvas = used.canvas;
    this.$('.used').append(used.fig);
    this.image = null;
    this.result = null;
    this.settle = 0;
  }

  wire() {
    const slider = this.$('#strength');
    slider.addEventListener('input', () => {
      this.$('.sval').value = slider.value;
      this.later(() => this.setAttribute('strength', slider.value));
    });
    this.$('.seeds').addEventListener('change', (e) => this.setAttribute('seeds', e.target.value));
    this.$('.reseed').addEventListener('click', () => this.setAttribute('seed', String(this.seed + 1)));
    // A stroke ends: the drawing replaces what the run starts from.
    this.$('.pad').addEventListener('pointerup', () => this.later(() => this.refresh({ drawn: true })));
    this.$('.clear').addEventListener('click', () => { this.pad.clear(); this.refresh({ digit: true }); });
    this.$('.undo').addEventListener('click', () => { this.pad.undo(); this.refresh(this.pad.isEmpty() ? { digit: true } : { drawn: true }); });
  }

  later(fn) {
    clearTimeout(this.settle);
    this.settle = setTimeout(fn, SETTLE_MS);
  }

  accept({ sample_size: [h, w], in_channels: c }, url) {
    if (c !== 1 || h !== w) throw new Error(`${url}: <ddpm-sdedit> edits one-channel square images, as a pad draws them (this model: ${c} channels, ${h}x${w})`);
  }

  attributeChangedCallback(name) {
    this.refresh(name === 'digit' ? { digit: true } : {});
  }

  get strength() { return this.fraction('strength', DEFAULT_STRENGTH, 0, 1); }
  get seeds() { return this.number('seeds', 4, 1, 16); }
  get seed() { return this.number('seed', 0, 0, 2 ** 32 - 1); }
  get sampler() { return this.samplerOr('ddim'); }
  get steps() { return this.stepsFor(this.sampler); }
  get eta() { return this.fraction('eta', 0, 0, 1); }

  async render({ first, drawn, digit }) {
    const { strength, seeds, seed, sampler, steps, eta } = this;
    if (drawn && !this.pad.isEmpty()) this.image = await drawnDigit(this.pad, this.size);
    else if (first || digit || !this.image) this.image = await realDigit(this.number('digit', 7, 0, 9), this.size);
    drawRgba(this.usedCanvas, { width: this.size, height: this.size, rgba: this.image });
    this.$('#strength').value = String(strength);
    this.$('.sval').value = String(strength);
    this.$('.seeds').value = String(seeds);
    const result = await sampleFor(this, { n: seeds, sampler, steps, eta, seed, from: { image: this.image, strength } });
    if (!result) return;
    showStrip(this.$('.strip'), result, (i) => `seed ${seed}, image ${i}`);
    this.result = { strength, seed, seeds, sampler, steps, eta, ...result };
    this.dispatchEvent(new CustomEvent('result', { detail: this.result }));
  }
}

define('ddpm-sdedit', DdpmSdedit);
