// <ddpm-demo>: the live demo as one element, for blog posts.
//
//   <script type="module" src="https://HOST/embed.js"></script>
//   <ddpm-demo autoplay show-steps></ddpm-demo>
//
// Attributes: model (URL prefix of a diffusers model; default the shipped MNIST model next to
// this script), sampler (dpm++ | ddim | dpm++-karras | ddpm), steps, eta (DDIM: 0 to 1, default 0), seed (default: random per run), n (images), size
// (CSS pixels per image), controls (none | minimal | full), autoplay, show-steps (the denoising
// strip), backend (cpu to skip WebGPU), sha256 (the weights file's digest: any other file is
// refused). Events: progress {done, total}, done {images, width, height, ms, seed}, error {message}. The state is reflected on data-state: idle | loading |
// ready | generating | done | error. All elements of a page share one engine (one worker) and
// download each model once; an element starts when it scrolls into view. It is built on the JS
// API (ddpm.js), as a page of one's own would be. Where it runs is said in the page's plain words
// (backend-words.js), with the expected time of a run (speed.js: timed on two steps once the
// model is loaded, unless autoplay starts a run at once, then on each run).

import { backendSentence, backendWords } from './backend-words.js';
import { connect } from './ddpm.js';
import { make, styles } from './element.js';
import { modelUrl } from './hub.js';
import { Speed } from './speed.js';
import { DEFAULT_SAMPLER, SAMPLERS, defaultSteps, drawRgba, samplerNamed, stepsPerSecText, wholeNumber } from './util.js';

const DEFAULT_MODEL = new URL('./models/mnist/', import.meta.url).href;
const STRIP_FRAMES = 8;
const CSS = `
.demo { border: 1px solid var(--line); border-radius: 8px; padding: 10px; background: var(--bg); color: var(--fg); display: grid; gap: 8px; }
.row { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; }
label { display: inline-flex; gap: 4px; align-items: center; font-size: 13px; }
input, select, button { font: inherit; min-height: 44px; }
input[type=number] { width: 5.5em; }
button { padding: 4px 16px; border-radius: 6px; border: 1px solid var(--accent); background: var(--accent); color: var(--on-accent); cursor: pointer; }
button.secondary { background: var(--bg); color: var(--accent); }
button:disabled { opacity: 0.55; cursor: not-allowed; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(0, var(--size, 96px))); gap: 6px; }
canvas { image-rendering: pixelated; background: #000; width: var(--size, 96px); max-width: 100%; height: auto; display: block; }
.strip { display: flex; gap: 4px; overflow-x: auto; }
.strip figure { margin: 0; text-align: center; font-size: 11px; color: var(--muted); }
.strip canvas { width: calc(var(--size, 96px) * 0.75); }
canvas.live { width: calc(var(--size, 96px) * 2); }
progress { width: 100%; height: 8px; }
.backend, .status { font-size: 12px; color: var(--muted); min-height: 1.2em; }
details { font-size: 12px; color: var(--muted); }
summary { cursor: pointer; min-height: 44px; display: flex; align-items: center; width: max-content; }
details p { margin: 0; overflow-wrap: anywhere; font-family: ui-monospace, monospace; }
`;

class DdpmDemo extends HTMLElement {
  static observedAttributes = ['size'];

  constructor() {
    super();
    this.client = null;    // ddpm.js's connection
    this.model = null;     // the loaded model (ddpm.js's load)
    this.info = null;
    this.run = null;       // {seed, steps, strip, done, total, cancel}
    this.started = false;
    this.speed = new Speed();
  }

  // ---- attributes --------------------------------------------------------------------------

  get #sampler() {
    return samplerNamed(this.getAttribute('sampler') || DEFAULT_SAMPLER, 'attribute sampler').name;
  }

  /** DDIM's eta from the attribute: 0 (deterministic, the default) to 1 (DDPM-like noise). */
  get #eta() {
    const raw = this.getAttribute('eta');
    if (raw === null || raw.trim() === '') return 0;
    const v = Number(raw);
    if (!(v >= 0 && v <= 1)) throw new Error(`attribute eta="${raw}" must be a number from 0 to 1`);
    return v;
  }

  // ---- lifecycle ---------------------------------------------------------------------------

  connectedCallback() {
    if (!this.shadowRoot) this.#build();
    this.#setState(this.dataset.state || 'idle');
    if (this.started) return;
    if (typeof IntersectionObserver === 'undefined') return this.#start();
    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) {
        this.observer.disconnect();
        this.#start();
      }
    }, { rootMargin: '200px' });
    this.observer.observe(this);
  }

  disconnectedCallback() {
    this.observer?.disconnect();
    if (this.run && this.dataset.state === 'generating') this.run.cancel();
  }

  attributeChangedCallback() {
    const size = Number(this.getAttribute('size'));
    this.style.setProperty('--size', size > 0 ? `${size}px` : '96px');
  }

  #build() {
    const root = this.attachShadow({ mode: 'open' });
    styles(root, CSS);
    const controls = ['none', 'full'].includes(this.getAttribute('controls')) ? this.getAttribute('controls') : 'minimal';
    const ui = this.ui = {};
    ui.generate = make('button', { type: 'button', textContent: 'Generate', disabled: true, part: 'generate' });
    ui.cancel = make('button', { type: 'button', textContent: 'Cancel', class: 'secondary', disabled: true });
    ui.generate.addEventListener('click', () => this.generate());
    ui.cancel.addEventListener('click', () => this.cancel());
    const row = make('div', { class: 'row' });
    if (controls === 'full') {
      ui.sampler = make('select', {}, SAMPLERS.map((s) => make('option', { value: s.name, textContent: s.label })));
      // a bad attribute is reported when a run starts (#settings), not while building
      ui.sampler.value = SAMPLERS.some((x) => x.name === this.getAttribute('sampler')) ? this.getAttribute('sampler') : DEFAULT_SAMPLER;
      ui.steps = make('input', { type: 'number', min: 1, max: 1000, value: this.getAttribute('steps') ?? '' , placeholder: 'steps' });
      ui.n = make('input', { type: 'number', min: 1, max: 64, value: this.getAttribute('n') ?? '4' });
      ui.seed = make('input', { type: 'number', min: 0, value: this.getAttribute('seed') ?? '', placeholder: 'random' });
      row.append(make('label', {}, ['Sampler ', ui.sampler]), make('label', {}, ['Steps ', ui.steps]),
        make('label', {}, ['Images ', ui.n]), make('label', {}, ['Seed ', ui.seed]));
    }
    if (controls !== 'none') row.append(ui.generate, ui.cancel);
    ui.progress = make('progress', { value: 0, max: 1 });
    ui.status = make('div', { class: 'status', role: 'status', textContent: 'Scroll into view to start.' });
    ui.backend = make('div', { class: 'backend', part: 'backend' });
    ui.why = make('p');
    ui.details = make('details', { hidden: true }, [make('summary', { textContent: 'details' }), ui.why]);
    ui.error = make('div', { class: 'error', role: 'alert', hidden: true });
    ui.grid = make('div', { class: 'grid', part: 'results' });
    ui.strip = make('div', { class: 'strip', hidden: !this.hasAttribute('show-steps') });
    ui.progress.setAttribute('aria-label', 'Sampling progress');
    const demo = make('div', { class: 'demo', part: 'demo' }, [row, ui.grid, ui.strip, ui.progress, ui.status, ui.backend, ui.details, ui.error]);
    if (controls === 'none') demo.addEventListener('click', () => this.generate());
    root.append(demo);
  }

  #setState(state) {
    this.dataset.state = state;
    const busy = state === 'generating';
    this.ui.generate.disabled = busy || !this.info;
    this.ui.cancel.disabled = !busy;
  }

  #fail(message) {
    this.ui.error.textContent = message;
    this.ui.error.hidden = false;
    this.ui.status.textContent = '';
    this.#setState('error');
    this.dispatchEvent(new CustomEvent('error', { detail: { message } }));
  }

  /** Resolves once the reader agrees to download `file` of `bytes` (over the element's max-mb). */
  #askToDownload({ file, bytes }) {
    const mb = (bytes / 1e6).toFixed(0);
    this.ui.status.textContent = `This model's ${file} is ${mb} MB; it is downloaded once and kept in this browser.`;
    const button = Object.assign(document.createElement('button'), { type: 'button', textContent: `Download ${mb} MB` });
    button.part = 'confirm-download';
    this.ui.status.after(button);
    return new Promise((resolve) => button.addEventListener('click', () => {
      button.remove();
      this.ui.status.textContent = 'Loading the model…';
      resolve();
    }, { once: true }));
  }

  async #start() {
    this.started = true;
    this.#setState('loading');
    this.ui.status.textContent = 'Loading the model…';
    let url;
    try {
      url = modelUrl(this.getAttribute('model') || DEFAULT_MODEL, document.baseURI, this.getAttribute('hub'));
    } catch (err) {
      return this.#fail(`model="${this.getAttribute('model')}": ${err.message.startsWith('"') ? err.message : 'not a valid URL or hf: id'}`);
    }
    try {
      // each element asks for the engine; it starts once, on the first element's backend
      this.client = await connect({ backend: this.getAttribute('backend') === 'cpu' ? 'cpu' : 'auto' });
      this.#showBackend();
      const options = {
        sha256: this.getAttribute('sha256') || undefined,
        hub: this.getAttribute('hub') || undefined,
        // A page opts in to larger downloads with max-mb; past it the reader is asked first.
        maxBytes: Number(this.getAttribute('max-mb') || 100) * 1e6,
        onDownload: ({ file, loaded, total, bytesPerSec, etaSec, converting }) => {
          if (this.model) return;
          this.ui.status.textContent = converting ? `Converting ${file} to safetensors (once)…`
            : `Downloading ${file}: ${(loaded / 1e6).toFixed(1)} MB` + (total ? ` of ${(total / 1e6).toFixed(1)} MB` : '') +
              (bytesPerSec > 0 && loaded > 0 ? `, ${(bytesPerSec / 1e6).toFixed(1)} MB/s` : '') +
              (etaSec > 0 ? `, ${Math.ceil(etaSec)} s left` : '');
        },
      };
      this.model = await this.client.load(url, options).catch(async (err) => {
        if (!err.tooLarge) throw err;
        await this.#askToDownload(err.tooLarge);
        return this.client.load(url, { ...options, maxBytes: Infinity });
      });
    } catch (err) {
      return this.#fail(err.message);
    }
    this.info = this.model.info;
    this.#setState('ready');
    this.ui.status.textContent = 'Ready.';
    if (this.hasAttribute('autoplay')) this.generate();
    else this.#probe();
  }

  /** Where the engine runs, in words, the engine's own reason under "details", and the
   *  expected time of the current settings once a step was timed. */
  #showBackend() {
    const words = backendWords(this.client.backend);
    let estimate = '';
    try {
      const { n, steps } = this.#settings();
      estimate = this.speed.text(n, steps);
    } catch { /* settings the next run reports */ }
    this.ui.backend.textContent = backendSentence(words) + (estimate && ` Expected: ${estimate}.`);
    this.ui.why.textContent = words.details ?? '';
    this.ui.details.hidden = !words.details;
  }

  /** Times two steps of the current settings, for the expected time. */
  #probe() {
    let settings;
    try {
      settings = this.#settings();
    } catch {
      return;
    }
    const timer = this.speed.timer(settings.n);
    const probe = this.client.generate(this.model, { ...settings, steps: 2, onProgress: ({ done }) => timer.step(done) });
    this.probe = probe;
    probe.result.catch(() => null).then(() => {
      timer.end();
      if (this.probe === probe) this.probe = null;
      this.#showBackend();
    });
  }

  // ---- sampling ----------------------------------------------------------------------------

  /** Starts a run with the current attributes (or the full controls). */
  generate() {
    if (!this.info || this.dataset.state === 'generating') return;
    let settings;
    try {
      settings = this.#settings();
    } catch (err) {
      return this.#fail(err.message);
    }
    this.ui.error.hidden = true;
    this.probe?.cancel();
    const run = this.run = { ...settings, strip: this.hasAttribute('show-steps'), done: 0, total: settings.steps, timer: this.speed.timer(settings.n) };
    this.ui.grid.replaceChildren();
    this.ui.strip.replaceChildren();
    this.ui.progress.max = settings.steps;
    this.ui.progress.value = 0;
    this.#setState('generating');
    const every = Math.max(1, Math.round(settings.steps / (run.strip ? STRIP_FRAMES : 20)));
    const job = this.client.generate(this.model, {
      ...settings,
      previewEvery: every,
      onProgress: (p) => this.run === run && this.#progress(run, p),
      onPreview: (p) => this.run === run && this.#preview(run, p),
    });
    run.cancel = job.cancel;
    job.result.then((result) => this.run === run && this.#finish(run, result),
      (err) => this.run === run && this.#fail(err.message));
  }

  cancel() {
    this.run?.cancel();
  }

  #progress(run, { done, total, stepsPerSec }) {
    run.timer.step(done);
    run.done = done;
    run.total = total;
    this.ui.progress.max = total;
    this.ui.progress.value = done;
    this.ui.status.textContent = `step ${done}/${total}` + (stepsPerSec > 0 ? ` · ${stepsPerSecText(stepsPerSec)}` : '');
    this.dispatchEvent(new CustomEvent('progress', { detail: { done, total } }));
  }

  #preview(run, msg) {
    if (!msg.xt) return;
    this.#showLive(msg.xt);
    if (run.strip) this.#addToStrip(msg);
  }

  /** The run's images, or (`result` null) that it was cancelled. */
  #finish(run, result) {
    if (!result) {
      this.ui.status.textContent = `Cancelled at step ${run.done}/${run.total}.`;
      return this.#setState('ready');
    }
    const { images, width, height, ms, workers } = result;
    run.timer.end();
    this.#showBackend();
    this.#showImages(run, result);
    this.ui.progress.value = this.ui.progress.max;
    this.ui.status.textContent = `${images.length} image(s) in ${(ms / 1000).toFixed(1)} s · seed ${run.seed}`;
    this.#setState('done');
    this.dispatchEvent(new CustomEvent('done', { detail: { images: images.length, width, height, ms, seed: run.seed, workers } }));
  }

  #settings() {
    const T = this.info.num_train_timesteps;
    const ui = this.ui;
    // a control when there is one, else the attribute
    const read = (input, name, fallback, lo, hi) => {
      const raw = input ? input.value : this.getAttribute(name);
      if (raw === null || raw.trim() === '') return fallback;
      return wholeNumber(raw, lo, hi, input ? name : `attribute ${name}`);
    };
    const attribute = this.#sampler;
    const sampler = ui.sampler ? ui.sampler.value : attribute;
    const steps = read(ui.steps, 'steps', defaultSteps(sampler, T), 1, T);
    const n = read(ui.n, 'n', 4, 1, 64);
    const seed = read(ui.seed, 'seed', crypto.getRandomValues(new Uint32Array(1))[0], 0, 2 ** 32 - 1);
    return { sampler, steps, n, seed, eta: sampler === 'ddim' ? this.#eta : 0 };
  }

  #canvas(frame) {
    return drawRgba(document.createElement('canvas'), frame);
  }

  #showLive(frame) {
    const c = this.#canvas(frame);
    c.className = 'live';
    this.ui.grid.replaceChildren(c);
  }

  #addToStrip({ done, total, xt }) {
    const c = this.#canvas(xt);
    this.ui.strip.append(make('figure', {}, [c, make('figcaption', { textContent: `step ${done}/${total}` })]));
  }

  #showImages(run, { images, width, height }) {
    const how = `${samplerNamed(run.sampler).label}, ${run.steps} steps, seed ${run.seed}`;
    this.ui.grid.replaceChildren(...images.map((rgba, i) => {
      const c = this.#canvas({ width, height, rgba });
      c.setAttribute('role', 'img');
      c.setAttribute('aria-label', `Generated image ${i + 1} of ${images.length} (${how})`);
      return c;
    }));
  }
}

if (!customElements.get('ddpm-demo')) customElements.define('ddpm-demo', DdpmDemo);
