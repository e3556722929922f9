// What the explorable figures (<ddpm-forward>, <ddpm-trajectory>, <ddpm-sdedit>,
// <ddpm-interpolate>) share: the engine and the model from the `model`, `hub` and `backend`
// attributes, whole-number attributes checked with the attribute's name, one render at a time with
// only the latest request waiting, an error box, and the real MNIST digits and the drawing pad as
// images of the model's size. The figures only draw: every number comes from the engine.

import { backendSentence, backendWords } from './backend-words.js';
import { connect } from './ddpm.js';
import { styles } from './element.js';
import { modelUrl } from './hub.js';
import { defaultSteps, drawRgba, samplerNamed, wholeNumber } from './util.js';

export const DEFAULT_MODEL = new URL('./models/mnist/', import.meta.url).href;
const DIGITS = new URL('./explore/digits.json', import.meta.url).href;

export const FIGURE_CSS = `
.box { border: 1px solid var(--line); border-radius: 8px; padding: 10px; background: var(--bg); color: var(--fg); display: grid; gap: 8px; }
.row { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; }
figure { margin: 0; display: grid; gap: 2px; justify-items: center; text-align: center; }
figcaption { font-size: 12px; color: var(--muted); }
figcaption b { color: var(--fg); font-weight: 600; font-size: 14px; }
canvas.img { image-rendering: pixelated; background: #000; width: 100%; max-width: 128px; height: auto; }
input[type=range] { flex: 1 1 200px; min-height: 44px; }
select, button { font: inherit; min-height: 44px; }
button { padding: 4px 14px; border-radius: 6px; border: 1px solid var(--accent); background: var(--bg); color: var(--accent); cursor: pointer; }
button:disabled { opacity: 0.5; cursor: default; }
.numbers { font-variant-numeric: tabular-nums; }
.muted { color: var(--muted); font-size: 12px; }
.pad { touch-action: none; width: 168px; height: 168px; border-radius: 6px; background: #000; }
`;

let digits = null;  // the real digits, fetched once per page

/** Real MNIST digit `k` (0-9) as an RGBA image of `size` x `size`. */
export async function realDigit(k, size) {
  digits ??= fetch(DIGITS).then((r) => {
    if (!r.ok) throw new Error(`${DIGITS}: HTTP ${r.status}`);
    return r.json();
  });
  const { size: have, digits: all } = await digits;
  if (have !== size) throw new Error(`the real digits are ${have}x${have}, the model's images ${size}x${size}`);
  const gray = Uint8Array.from(atob(all[k]), (c) => c.charCodeAt(0));
  const rgba = new Uint8Array(size * size * 4);
  gray.forEach((g, i) => rgba.set([g, g, g, 255], i * 4));
  return rgba;
}

/** The drawing on `pad` as an RGBA image of `size` x `size`, padded as MNIST digits are. */
export async function drawnDigit(pad, size) {
  const inner = size - 4;
  const bitmap = await createImageBitmap(await pad.toBlob(inner));
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = size;
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, size, size);
  ctx.drawImage(bitmap, 2, 2, inner, inner);
  return new Uint8Array(ctx.getImageData(0, 0, size, size).data.buffer);
}

/** A labelled canvas for one image, in a figure with a caption. */
export function imageFigure(label, what) {
  const fig = document.createElement('figure');
  fig.innerHTML = `<canvas class="img" width="28" height="28" role="img"></canvas><figcaption><b>${label}</b>${what ? `<br>${what}` : ''}</figcaption>`;
  const canvas = fig.querySelector('canvas');
  canvas.setAttribute('aria-label', what ? `${label}: ${what}` : label);
  return { fig, canvas };
}

/**
 * An explorable figure: `html` in a shadow root with the figure styles and `css`, an error box
 * after it. A subclass implements `render(request)` (and may `wire()` its controls, check the
 * model in `accept(info)`, and set `interrupt` to stop a long render); `refresh(request)` asks
 * for a render.
 */
export class Figure extends HTMLElement {
  constructor(css, html) {
    super();
    const root = this.attachShadow({ mode: 'open' });
    styles(root, FIGURE_CSS + css);
    const box = document.createElement('div');
    box.className = 'box';
    box.innerHTML = `${html}<div class="error" role="alert" hidden></div>`;
    root.append(box);
    this.$ = (sel) => box.querySelector(sel);
    this.pending = null;
    this.busy = false;
  }

  connectedCallback() {
    if (this.started) return;
    this.started = true;
    this.wire();
    // A post may hold several figures: each loads the model and runs once it nears the view,
    // so a reader's CPU is not busy with figures far down the page.
    const go = () => this.start().catch((err) => this.fail(err));
    if (!('IntersectionObserver' in globalThis)) return void go();
    this.dataset.state = 'waiting';
    const seen = new IntersectionObserver((entries) => {
      if (!entries.some((e) => e.isIntersecting)) return;
      seen.disconnect();
      go();
    }, { rootMargin: '200px' });
    seen.observe(this);
  }

  wire() {}

  /** Checks the model's info ({sample_size, in_channels, num_train_timesteps}); throws if unfit. */
  accept() {}

  /** Attribute `name` as a whole number from `lo` to `hi` (`fallback` when absent). */
  number(name, fallback, lo, hi) {
    const raw = this.getAttribute(name);
    return raw === null || raw === '' ? fallback : wholeNumber(raw, lo, hi, `${name} of <${this.localName}>`);
  }

  /** Attribute `name` as a number from `lo` to `hi` (`fallback` when absent). */
  fraction(name, fallback, lo, hi) {
    const raw = this.getAttribute(name);
    if (raw === null || raw === '') return fallback;
    const v = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(v) || v < lo || v > hi) {
      throw new Error(`${name} of <${this.localName}> must be a number from ${lo} to ${hi} (got "${raw}").`);
    }
    return v;
  }

  /** The `sampler` attribute's sampler name (`fallback` when absent); throws naming the names. */
  samplerOr(fallback) {
    return samplerNamed(this.getAttribute('sampler') || fallback, `sampler of <${this.localName}>`).name;
  }

  /** The `steps` attribute, 1..T (the sampler's default when absent). */
  stepsFor(sampler) {
    return this.number('steps', defaultSteps(sampler, this.T), 1, this.T);
  }

  async start() {
    this.dataset.state = 'loading';
    this.ddpm = await connect({ backend: this.getAttribute('backend') === 'cpu' ? 'cpu' : 'auto' });
    const where = this.$('.where');
    if (where) where.textContent = backendSentence(backendWords(this.ddpm.backend));
    let url;
    try {
      url = modelUrl(this.getAttribute('model') || DEFAULT_MODEL, document.baseURI, this.getAttribute('hub') || undefined);
    } catch (err) {
      throw new Error(`model="${this.getAttribute('model')}" of <${this.localName}>: ${err.message}`);
    }
    const model = await this.ddpm.load(url);
    const { sample_size: [h, w], in_channels: c } = model.info;
    this.accept(model.info, url);
    this.model = model;
    this.T = model.info.num_train_timesteps;
    this.size = h;
    this.shape = [c, h, w];
    this.dispatchEvent(new CustomEvent('ready', { detail: { T: this.T } }));
    await this.refresh({ first: true });
  }

  /** Renders `request` (merged into any waiting one) once the render in flight ends; a failure
   *  shows in the error box. Does nothing before the model is loaded. */
  async refresh(request = {}) {
    if (!this.model) return;
    this.pending = { ...this.pending, ...request };
    if (this.busy) {
      this.interrupt?.();  // a long render (a sampling run) stops for the newer request
      return;
    }
    this.busy = true;
    try {
      while (this.pending) {
        const next = this.pending;
        this.pending = null;
        this.dataset.state = 'working';
        this.$('.error').hidden = true;
        await this.render(next);
        this.dataset.state = 'ready';
      }
    } catch (err) {
      this.pending = null;
      this.fail(err);
    } finally {
      this.busy = false;
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

/**
 * Samples with `figure`'s engine and model (`options` as ddpm.generate takes them), showing
 * "step k of N" in its `.status`; a newer request interrupts it. Resolves to the images, or null
 * when interrupted.
 */
export async function sampleFor(figure, options) {
  const status = figure.$('.status');
  const run = figure.ddpm.generate(figure.model, {
    ...options,
    onProgress: ({ done, total }) => { status.textContent = `step ${done} of ${total}`; },
  });
  figure.interrupt = run.cancel;
  try {
    const result = await run.result;
    status.textContent = result ? `${options.sampler}, ${(result.ms / 1000).toFixed(1)} s` : '';
    return result;
  } finally {
    figure.interrupt = null;
  }
}

/** Draws `images` (RGBA, `width` x `height` each) on the canvases of `strip`, one figure per
 *  image captioned by `caption(i)`, reusing the figures it has. */
export function showStrip(strip, { images, width, height }, caption) {
  while (strip.children.length > images.length) strip.lastChild.remove();
  images.forEach((rgba, i) => {
    if (!strip.children[i]) strip.append(imageFigure('').fig);
    const fig = strip.children[i];
    const text = caption(i);
    fig.querySelector('b').textContent = text;
    fig.querySelector('canvas').setAttribute('aria-label', text);
    drawRgba(fig.querySelector('canvas'), { width, height, rgba });
  });
}

/** Defines `tag` as `cls` unless the page already has it. */
export function define(tag, cls) {
  if (!customElements.get(tag)) customElements.define(tag, cls);
}
