// <ddpm-trajectory>: one seed's reverse process under DDPM and DDIM, side by side, for blog posts.
//
//   <script type="module" src="https://HOST/trajectory.js"></script>
//   <ddpm-trajectory seed="3" eta="0"></ddpm-trajectory>
//
// The same seed sampled with DDPM (ancestral, all T steps unless told) and DDIM (50 steps unless
// told, its eta on a slider). Every step's x_t and the x_0 the model predicts there are kept; a
// scrubber over the reverse process, from the first step (nearly pure noise) to the samples,
// shows both samplers the same fraction of the way in, which on evenly spaced timesteps is the
// same t. DDIM runs first, being quick, so the reader can scrub it while DDPM runs; a new eta
// interrupts DDPM, reruns DDIM, and runs DDPM again (the same seed gives it the same frames).
// "PNG" saves a strip of x_t (a row per sampler), "GIF" an animation of x_t and the predicted
// x_0 of both. The sampling is the engine's (ddpm.js's generate); this file keeps and draws frames.
//
// Attributes: model (a diffusers folder URL or hf: id; default the shipped MNIST model next to this
// script), hub, backend (cpu to skip WebGPU), seed (default 0), ddpm-steps (1..T, default T),
// ddim-steps (1..T, default 50), eta (DDIM's, 0..1, default 0), position (where the scrubber
// stands, 0..1 of the way, default 1: the samples), autoplay (plays the scrubber once both are
// sampled). Events: ready {T}, progress {sampler, done, total}, done {sampler, seed, steps, eta,
// frames}, error {message}. data-state: waiting (until it nears the view) | loading | running |
// ready | error. Properties: `frames`, per sampler the kept frames {done, total, xt, x0} (RGBA), in
// step order; `samples`, per sampler its image {width, height, rgba} once sampled; png() and gif()
// resolve to the exports' Blobs.

import { make } from './element.js';
import { Figure, define } from './figure.js';
import { concatBytes, defaultSteps, drawRgba, stepsPerSecText } from './util.js';

const GIFENC = new URL('./vendor/gifenc.esm.js', import.meta.url).href;
const SHOWN = ['ddpm', 'ddim'];          // left to right, and the exports' rows
const RUN_ORDER = ['ddim', 'ddpm'];      // DDIM first: seconds where DDPM takes minutes
const NAMES = { ddpm: 'DDPM', ddim: 'DDIM' };
const SETTLE_MS = 250;
const PLAY_MS = 4000;
// A 256x256 model's 1000 steps would keep 0.5 GB of frames; past this a frame is kept every few steps.
const KEEP_BYTES = 64e6;
const STRIP_FRAMES = 10;
const GIF_FRAMES = 48;
const GIF_DELAY_MS = 80;
const GIF_HOLD_MS = 1500;
const TILE_PX = 96;   // an exported image's size at most, in whole multiples of the model's pixels
const GAP = 4;
const REVOKE_MS = 60_000;  // a download reads its object URL after click() returns
const CSS = `
.sides { display: grid; grid-template-columns: repeat(auto-fit, minmax(232px, 1fr)); gap: 12px; }
.side { display: grid; gap: 4px; align-content: start; }
.pair { display: flex; gap: 8px; }
canvas.img { width: 112px; }
canvas.stale { opacity: 0.35; }
input[type=range] { flex: 1 1 120px; }
button { min-width: 44px; }
progress { width: 100%; height: 8px; }
`;
const HTML = `
  <div class="row"><strong>One seed, two samplers</strong><span class="muted seedline"></span></div>
  <div class="row"><label for="pos">Reverse process</label>
    <input id="pos" type="range" min="1" max="1" step="1" value="1" disabled>
    <output class="posval numbers" for="pos"></output>
    <button type="button" class="play" aria-pressed="false" disabled>Play</button></div>
  <div class="sides"></div>
  <div class="row"><button type="button" class="png" disabled>Save PNG strip</button>
    <button type="button" class="gif" disabled>Save GIF</button><span class="muted where"></span></div>`;

/** What a run of `s` ({steps, eta, seed}) is told by: same key, same frames. */
const keyOf = (s) => `${s.steps} ${s.eta} ${s.seed}`;

/** The step (1..n) of an n-step run at position `v` of a scrubber over 1..max. */
const stepAt = (n, v, max) => Math.max(1, Math.ceil((v * n) / max));

/** `count` scrubber positions over 1..max, evenly spaced, the first and the last included. */
const spread = (count, max) => Array.from({ length: count }, (_, i) => (count > 1 ? Math.round(1 + (i * (max - 1)) / (count - 1)) : max));

class DdpmTrajectory extends Figure {
  static observedAttributes = ['seed', 'ddpm-steps', 'ddim-steps', 'eta', 'position'];

  constructor() {
    super(CSS, HTML);
    this.ui = {};
    for (const name of SHOWN) {
      const side = make('section', { class: 'side' });
      side.setAttribute('aria-label', NAMES[name]);
      side.innerHTML = `<strong class="head"></strong>
        <div class="pair"><figure><canvas class="img xt stale" width="32" height="32" role="img"></canvas><figcaption>xₜ</figcaption></figure>
          <figure><canvas class="img x0 stale" width="32" height="32" role="img"></canvas><figcaption>x̂₀, the x₀ it predicts</figcaption></figure></div>
        <div class="at muted numbers"></div>
        <progress max="1" value="0" aria-label="${NAMES[name]} sampling progress"></progress>
        <div class="status muted numbers" aria-live="polite"></div>
        ${name === 'ddim' ? `<div class="row"><label for="eta">η = <output class="etaval numbers" for="eta">0</output></label>
          <input id="eta" type="range" min="0" max="1" step="0.05" value="0" aria-describedby="etahint" disabled></div>
          <div id="etahint" class="muted">η 0: deterministic; 1: fresh noise at each step, as DDPM</div>` : ''}`;
      const $ = (sel) => side.querySelector(sel);
      this.ui[name] = { head: $('.head'), xt: $('.xt'), x0: $('.x0'), at: $('.at'), progress: $('progress'), status: $('.status') };
      this.$('.sides').append(side);
    }
    this.sides = Object.fromEntries(SHOWN.map((name) => [name, { key: '', every: 1, total: 0, frames: [], sample: null, complete: false }]));
    this.want = null;      // the settings the attributes ask for; null while one is bad
    this.inFlight = null;  // {name, key, cancel} of the run the engine is on
    this.busy = false;
    this.pos = null;       // where the scrubber stands, 0..1; null: the position attribute
    this.playing = 0;
    this.settle = 0;
  }

  connectedCallback() {
    if (this.started && this.model) this.refresh();  // back in the page: carry on
    super.connectedCallback();
  }

  wire() {
    const pos = this.$('#pos');
    pos.addEventListener('input', () => {
      this.pos = Number(pos.value) / Number(pos.max);
      this.draw();
    });
    const eta = this.$('#eta');
    eta.addEventListener('input', () => {
      this.$('.etaval').value = eta.value;
      clearTimeout(this.settle);
      this.settle = setTimeout(() => this.setAttribute('eta', eta.value), SETTLE_MS);
    });
    this.$('.play').addEventListener('click', () => (this.playing ? this.pause() : this.play()));
    this.$('.png').addEventListener('click', () => this.save('png'));
    this.$('.gif').addEventListener('click', () => this.save('gif'));
  }

  disconnectedCallback() {
    this.pause();
    this.inFlight?.cancel();
  }

  attributeChangedCallback(name) {
    if (name === 'position') this.pos = null;
    if (this.model) this.refresh();
  }

  get frames() { return Object.fromEntries(SHOWN.map((name) => [name, this.sides[name].frames.slice()])); }
  get samples() { return Object.fromEntries(SHOWN.map((name) => [name, this.sides[name].sample])); }

  /** The settings the attributes ask for, per sampler, and the scrubber's position; throws
   *  naming a bad attribute. */
  settings() {
    const T = this.T;
    const seed = this.number('seed', 0, 0, 2 ** 32 - 1);
    return {
      ddpm: { steps: this.number('ddpm-steps', defaultSteps('ddpm', T), 1, T), eta: 0, seed },
      ddim: { steps: this.number('ddim-steps', defaultSteps('ddim', T), 1, T), eta: this.fraction('eta', 0, 0, 1), seed },
      position: this.fraction('position', 1, 0, 1),
    };
  }

  accept({ sample_size: [h, w] }) {
    this.frameBytes = 2 * h * w * 4;  // x_t and x_0, RGBA, of one image
    this.tile = { w, h, scale: Math.max(1, Math.floor(TILE_PX / Math.max(w, h))) };
  }

  /** Follows the attributes: stops a run that is no longer wanted, or DDPM while DDIM waits,
   *  and starts the runs that are missing unless they are under way. */
  refresh() {
    try {
      this.want = this.settings();
    } catch (err) {
      this.want = null;
      this.inFlight?.cancel();
      return this.fail(err);
    }
    this.$('.error').hidden = true;
    this.layout();
    const run = this.inFlight;
    if (run && (run.key !== keyOf(this.want[run.name]) || (run.name === 'ddpm' && this.nextSide() === 'ddim'))) run.cancel();
    if (!this.busy) this.work();
  }

  /** The sampler that runs next: the first whose frames are not those of its settings. */
  nextSide() {
    if (!this.want || !this.isConnected) return undefined;
    return RUN_ORDER.find((name) => !this.sides[name].complete || this.sides[name].key !== keyOf(this.want[name]));
  }

  async work() {
    this.busy = true;
    try {
      for (let name = this.nextSide(); name; name = this.nextSide()) await this.sample(name, this.want[name]);
      if (this.want && this.isConnected) {
        this.dataset.state = 'ready';
        this.enable();
        if (this.hasAttribute('autoplay') && !this.autoplayed) {
          this.autoplayed = true;
          this.play();
        }
      }
    } catch (err) {
      this.fail(err);
    } finally {
      this.busy = false;
    }
  }

  /** One run of `name` with settings `s`, keeping every frame (or, for a large model, every few). */
  async sample(name, s) {
    const side = this.sides[name];
    const key = keyOf(s);
    if (side.key !== key) {
      Object.assign(side, { key, total: s.steps, frames: [], sample: null, every: Math.max(1, Math.ceil((s.steps * this.frameBytes) / KEEP_BYTES)) });
    }
    side.complete = false;
    this.dataset.state = 'running';
    this.enable();
    this.layout();
    const ui = this.ui[name];
    ui.status.textContent = 'sampling…';
    const job = this.ddpm.generate(this.model, {
      n: 1, sampler: name, steps: s.steps, eta: s.eta, seed: s.seed, previewEvery: side.every,
      onProgress: ({ done, total, stepsPerSec }) => {
        ui.progress.max = total;
        ui.progress.value = done;
        ui.status.textContent = `step ${done}/${total} · ${stepsPerSecText(stepsPerSec)}`;
        this.dispatchEvent(new CustomEvent('progress', { detail: { sampler: name, done, total } }));
      },
      onPreview: ({ done, total, xt, x0 }) => {
        side.frames[Math.ceil(done / side.every) - 1] = { done, total, xt: this.crop(xt), x0: this.crop(x0) };
        this.draw();
        this.enable();
      },
    });
    this.inFlight = { name, key, cancel: job.cancel };
    let result;
    try {
      result = await job.result;
    } finally {
      this.inFlight = null;
    }
    if (!result) return;
    side.sample = { width: result.width, height: result.height, rgba: result.images[0] };
    side.complete = true;
    ui.status.textContent = `${s.steps} steps in ${(result.ms / 1000).toFixed(1)} s`;
    this.draw();
    this.dispatchEvent(new CustomEvent('done', { detail: { sampler: name, seed: s.seed, steps: s.steps, eta: s.eta, frames: side.frames.length } }));
  }

  /** The image in a preview, which is a grid of one image with a border (a frame of another
   *  shape is kept as it is). */
  crop(frame) {
    const { w, h } = this.tile;
    const gap = (frame.width - w) / 2;
    if (!(Number.isInteger(gap) && gap > 0 && frame.height === h + 2 * gap)) return frame;
    const rgba = new Uint8Array(w * h * 4);
    for (let y = 0; y < h; y++) {
      const from = ((y + gap) * frame.width + gap) * 4;
      rgba.set(frame.rgba.subarray(from, from + w * 4), y * w * 4);
    }
    return { width: w, height: h, rgba };
  }

  /** The headings, the scrubber's range and the eta slider, for the wanted settings. */
  layout() {
    const { ddpm, ddim } = this.want;
    this.$('.seedline').textContent = `seed ${ddpm.seed}: xₜ on the way from noise to a sample, and the x₀ predicted there`;
    this.ui.ddpm.head.textContent = `DDPM · ${ddpm.steps} steps`;
    this.ui.ddim.head.textContent = `DDIM · ${ddim.steps} steps · η = ${ddim.eta}`;
    for (const name of SHOWN) {
      if (this.inFlight?.name !== name && !(this.sides[name].complete && this.sides[name].key === keyOf(this.want[name]))) {
        this.ui[name].status.textContent = 'waiting its turn';
      }
    }
    const eta = this.$('#eta');
    eta.value = String(ddim.eta);
    eta.disabled = false;
    this.$('.etaval').value = String(ddim.eta);
    const pos = this.$('#pos');
    const max = Math.max(ddpm.steps, ddim.steps);
    pos.max = String(max);
    pos.value = String(Math.max(1, Math.round((this.pos ?? this.want.position) * max)));
    this.draw();
  }

  /** The kept frame of `name` at scrubber position `v` of 1..max (the latest one while that
   *  step is still to come), and the step asked for. */
  frameAt(name, v, max) {
    const { total, every, frames } = this.sides[name];
    const step = stepAt(total, v, max);
    const at = Math.ceil(step / every) - 1;
    return { step, frame: frames[Math.min(at, frames.length - 1)], pending: !frames[at] };
  }

  /** Both samplers at the scrubber's position. */
  draw() {
    const pos = this.$('#pos');
    const v = Number(pos.value);
    const max = Number(pos.max);
    const said = [];
    for (const name of SHOWN) {
      const ui = this.ui[name];
      const { total, key } = this.sides[name];
      const { step, frame, pending } = this.frameAt(name, v, max);
      // frames of other settings stay in sight, faded, until the new ones come
      for (const c of [ui.xt, ui.x0]) c.classList.toggle('stale', !frame || !this.want || key !== keyOf(this.want[name]));
      if (!frame) {
        ui.at.textContent = total ? `step ${step} of ${total}: not sampled yet` : '';
        continue;
      }
      drawRgba(ui.xt, frame.xt);
      drawRgba(ui.x0, frame.x0);
      const after = `after step ${frame.done} of ${total}`;
      ui.xt.setAttribute('aria-label', `${NAMES[name]}: x_t ${after}`);
      ui.x0.setAttribute('aria-label', `${NAMES[name]}: the x_0 predicted ${after}`);
      ui.at.textContent = pending ? `step ${step} of ${total} not sampled yet: showing step ${frame.done}` : after;
      said.push(`${NAMES[name]} step ${frame.done} of ${total}`);
    }
    const percent = `${Math.round((100 * v) / max)}%`;
    this.$('.posval').value = percent;
    pos.setAttribute('aria-valuetext', `${percent} of the way from noise to the samples${said.length ? `: ${said.join(', ')}` : ''}`);
  }

  /** The controls a reader can use now: the scrubber once a frame is there, the exports once
   *  both samplers are done. */
  enable() {
    const any = SHOWN.some((name) => this.sides[name].frames.length > 0);
    const all = this.dataset.state === 'ready';
    this.$('#pos').disabled = !any;
    this.$('.play').disabled = !any;
    this.$('.png').disabled = !all;
    this.$('.gif').disabled = !all;
  }

  play() {
    const pos = this.$('#pos');
    const max = Number(pos.max);
    const from = Number(pos.value) >= max ? 1 : Number(pos.value);
    const t0 = performance.now();
    const tick = (now) => {
      const v = Math.min(max, Math.round(from + ((now - t0) / PLAY_MS) * max));
      pos.value = String(v);
      this.pos = v / max;
      this.draw();
      if (v < max) this.playing = requestAnimationFrame(tick);
      else this.pause();
    };
    this.playing = requestAnimationFrame(tick);
    this.$('.play').textContent = 'Pause';
    this.$('.play').setAttribute('aria-pressed', 'true');
  }

  pause() {
    cancelAnimationFrame(this.playing);
    this.playing = 0;
    this.$('.play').textContent = 'Play';
    this.$('.play').setAttribute('aria-pressed', 'false');
  }

  /** A white canvas for `cols` x `rows` images; `put(frame, col, row)` draws one, pixels kept. */
  sheet(cols, rows) {
    const { w, h, scale } = this.tile;
    const canvas = make('canvas', { width: cols * w * scale + (cols + 1) * GAP, height: rows * h * scale + (rows + 1) * GAP });
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.imageSmoothingEnabled = false;
    const one = document.createElement('canvas');
    const put = (frame, col, row) => ctx.drawImage(drawRgba(one, frame), GAP + col * (w * scale + GAP), GAP + row * (h * scale + GAP), w * scale, h * scale);
    return { canvas, ctx, put };
  }

  /** The exports' scrubber positions: `count` at most, evenly spaced, over 1..max. */
  positions(count) {
    const max = Math.max(...SHOWN.map((name) => this.sides[name].total));
    return { max, at: spread(Math.min(count, max), max) };
  }

  /** x_t of each sampler (a row each), STRIP_FRAMES evenly spaced from the first step to the
   *  sample, as a PNG. */
  png() {
    const { max, at } = this.positions(STRIP_FRAMES);
    const { canvas, put } = this.sheet(at.length, SHOWN.length);
    SHOWN.forEach((name, row) => at.forEach((v, col) => put(this.frameAt(name, v, max).frame.xt, col, row)));
    return new Promise((resolve, reject) => canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error('the PNG could not be made'))), 'image/png'));
  }

  /** x_t and the predicted x_0 of each sampler (a row each), GIF_FRAMES evenly spaced from the
   *  first step to the sample, as an animated GIF that holds the samples a moment. */
  async gif() {
    const { GIFEncoder, quantize, applyPalette } = await import(GIFENC);
    const { max, at } = this.positions(GIF_FRAMES);
    const { canvas, ctx, put } = this.sheet(2, SHOWN.length);
    const pictures = at.map((v) => {
      SHOWN.forEach((name, row) => {
        const { frame } = this.frameAt(name, v, max);
        put(frame.xt, 0, row);
        put(frame.x0, 1, row);
      });
      return ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    });
    // One palette for every frame, from the noisiest and the cleanest: no colour table per frame.
    const palette = quantize(concatBytes([pictures[0], pictures.at(-1)]), 256);
    const gif = GIFEncoder();
    pictures.forEach((rgba, i) => gif.writeFrame(applyPalette(rgba, palette), canvas.width, canvas.height, {
      ...(i === 0 ? { palette } : {}), delay: i === pictures.length - 1 ? GIF_HOLD_MS : GIF_DELAY_MS,
    }));
    gif.finish();
    return new Blob([gif.bytes()], { type: 'image/gif' });
  }

  /** Downloads the PNG strip or the GIF, named after the settings that make it again. */
  async save(kind) {
    try {
      const blob = await (kind === 'png' ? this.png() : this.gif());
      const { ddpm, ddim } = this.want;
      const url = URL.createObjectURL(blob);
      make('a', { href: url, download: `ddpm-trajectory-seed${ddpm.seed}-ddpm${ddpm.steps}-ddim${ddim.steps}-eta${ddim.eta}.${kind}` }).click();
      setTimeout(() => URL.revokeObjectURL(url), REVOKE_MS);
    } catch (err) {
      this.fail(err);
    }
  }

  fail(err) {
    super.fail(err);
    this.enable();
  }
}

define('ddpm-trajectory', DdpmTrajectory);
