// <ddpm-interpolate>: samples whose initial noise moves from one seed to another.
//
//   <script type="module" src="https://HOST/interpolate.js"></script>
//   <ddpm-interpolate from="0" to="1" count="8"></ddpm-interpolate>
//
// Image i starts from the x_T that lies i / (count - 1) of the way along the great circle from
// seed `from`'s x_T to seed `to`'s (spherical interpolation: Gaussian noise in many dimensions
// has nearly one norm, and the arc keeps to it where a straight line would not), and a
// deterministic sampler takes each to an image, so the ends are the two seeds' own samples and
// the strip shows how the model's output changes along the way. The engine draws and mixes the
// noise (Engine.start with {toSeed, count}); this file draws.
//
// Attributes: model (a diffusers folder URL or hf: id; default the shipped MNIST model next to this
// script), hub, backend (cpu to skip WebGPU), from (seed, default 0), to (seed, default 1), count
// (images, 2-16, default 8), sampler (default dpm++; ddim at eta 0 and dpm++-karras are the other
// deterministic ones), steps (the sampler's default). Events: ready {T}, result {from, to, count,
// sampler, steps, width, height, images}, error {message}. data-state: waiting (until it nears the
// view) | loading | working | ready | error. `result` is the last result.

import { Figure, define, sampleFor, showStrip } from './figure.js';
import { DEFAULT_SAMPLER } from './util.js';

const CSS = `
.strip { display: grid; grid-template-columns: repeat(auto-fill, minmax(64px, 1fr)); gap: 6px; }
`;
const HTML = `
  <div class="row"><strong>Interpolating the noise</strong>
    <span class="muted">x<sub>T</sub> on the arc from one seed’s noise to another’s</span></div>
  <div class="strip" aria-live="polite"></div>
  <div class="row">
    <button type="button" class="new-from">New start seed</button>
    <button type="button" class="new-to">New end seed</button>
    <label>Images <select class="count" aria-label="how many images">${[4, 6, 8, 12, 16].map((k) => `<option>${k}</option>`).join('')}</select></label>
    <span class="muted status" aria-live="polite"></span>
  </div>
  <div class="row"><span class="muted where"></span></div>`;

class DdpmInterpolate extends Figure {
  static observedAttributes = ['from', 'to', 'count', 'sampler', 'steps'];

  constructor() {
    super(CSS, HTML);
    this.result = null;
  }

  wire() {
    // the next seed that is neither end
    const next = (seed, other) => String(seed + 1 === other ? seed + 2 : seed + 1);
    this.$('.new-from').addEventListener('click', () => this.setAttribute('from', next(this.from, this.to)));
    this.$('.new-to').addEventListener('click', () => this.setAttribute('to', next(this.to, this.from)));
    this.$('.count').addEventListener('change', (e) => this.setAttribute('count', e.target.value));
  }

  attributeChangedCallback() {
    this.refresh({});
  }

  get from() { return this.number('from', 0, 0, 2 ** 32 - 1); }
  get to() { return this.number('to', 1, 0, 2 ** 32 - 1); }
  get count() { return this.number('count', 8, 2, 16); }
  get sampler() { return this.samplerOr(DEFAULT_SAMPLER); }
  get steps() { return this.stepsFor(this.sampler); }

  async render() {
    const { from, to, count, sampler, steps } = this;
    const select = this.$('.count');
    if (![...select.options].some((o) => o.value === String(count))) select.append(new Option(String(count)));
    select.value = String(count);
    const result = await sampleFor(this, { n: count, sampler, steps, eta: 0, seed: from, from: { toSeed: to, count } });
    if (!result) return;
    const label = (i) => (i === 0 ? `seed ${from}` : i === count - 1 ? `seed ${to}` : `${i}/${count - 1}`);
    showStrip(this.$('.strip'), result, label);
    this.result = { from, to, count, sampler, steps, ...result };
    this.dispatchEvent(new CustomEvent('result', { detail: this.result }));
  }
}

define('ddpm-interpolate', DdpmInterpolate);
