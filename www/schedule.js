// <ddpm-schedule>: a diffusion model's noise schedule as figures, for blog posts.
//
//   <script type="module" src="https://HOST/schedule.js"></script>
//   <ddpm-schedule compare="linear,squaredcos_cap_v2" t="500"></ddpm-schedule>
//
// Over the paper's t = 1..T (as <ddpm-forward>'s t; beta_1 is diffusers' betas[0]) it plots beta_t
// beside the posterior variance beta~_t (DDPM's fixed_large and fixed_small variances; log scale),
// alpha_bar_t, and log-SNR_t = ln(alpha_bar_t / (1 - alpha_bar_t)), one curve per schedule, with
// a legend and a read-out of every curve at one t.
// Attributes: compare (named presets, comma-separated: linear = DDPM's 1e-4..0.02, scaled_linear =
// Stable Diffusion's 0.00085..0.012, squaredcos_cap_v2 = Nichol & Dhariwal's cosine; all T = 1000),
// src (URLs of scheduler_config.json files, comma-separated, fetched), t (the step the read-out
// shows, so that a figure is reproducible; the pointer moves it while over the plots), curves
// (the panels, comma-separated: beta, alpha_bar, log_snr; default all). Without compare or src:
// linear. Events: ready {names, lengths, t, values}, tchange {t, values} (pointer or keyboard),
// error {message}. Read-only properties: curves (per schedule {name, T, beta, alpha_bar, log_snr,
// beta_tilde}, Float32Arrays) and t. The state is on data-state: loading | ready | error.
// The plots are a slider: focus them (Tab), then the arrow keys move t (Shift: 10 steps; Page
// Up/Down: T/10; Home/End).
//
// The math is the engine's (src/schedule.rs, through the wasm's schedule_curves): this file only
// draws. It asks the page's one engine host (ddpm.js's scheduleCurves: the wasm module, with no
// model and no GPU), so a page with <ddpm-demo> elements too starts one wasm instance.
// The plots are SVG drawn here (about 150 lines) rather than a plotting library such as uPlot:
// uPlot draws to a canvas and needs its stylesheet in the document (not in a shadow root) and a
// new npm dependency shipped in dist/; three line charts of a few thousand points are small in
// SVG, scale crisply, take the CSS variables (light and dark) through classes (nothing inline,
// for a strict CSP), and can be read by tests.

import { scheduleCurves } from './ddpm.js';
import { make, styles } from './element.js';

/** The presets `compare` names: scheduler_config.json fields, as diffusers reads them. */
export const PRESETS = {
  linear: { num_train_timesteps: 1000, beta_schedule: 'linear', beta_start: 0.0001, beta_end: 0.02 },
  scaled_linear: { num_train_timesteps: 1000, beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012 },
  squaredcos_cap_v2: { num_train_timesteps: 1000, beta_schedule: 'squaredcos_cap_v2' },
};

/** The panels, in order: the arrays each draws (the first solid, a second dashed), the read-out's
 *  column labels, and how the y axis is scaled. */
const PANELS = {
  beta: { title: 'β_t (solid: fixed_large) and β̃_t (dashed: fixed_small posterior variance), log scale',
    arrays: ['beta', 'beta_tilde'], labels: ['β_t', 'β̃_t'], log: true },
  alpha_bar: { title: 'ᾱ_t (signal kept in x_t)', arrays: ['alpha_bar'], labels: ['ᾱ_t'], log: false },
  log_snr: { title: 'log-SNR_t = ln(ᾱ_t / (1 − ᾱ_t))', arrays: ['log_snr'], labels: ['log-SNR_t'], log: false },
};

const W = 640;
const H = 190;
const M = { left: 58, right: 14, top: 10, bottom: 26 };
const SVG = 'http://www.w3.org/2000/svg';
const COLOURS = 4;

const CSS = `
.box { border: 1px solid var(--line); border-radius: 8px; padding: 10px; background: var(--bg); color: var(--fg); display: grid; gap: 8px;
  --c0: #0072b2; --c1: #d55e00; --c2: #009e73; --c3: #cc79a7; }
@media (prefers-color-scheme: dark) { .box { --c0: #56b4e9; --c1: #e69f00; --c2: #3fd6a8; --c3: #e59cc8; } }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 0; padding: 0; list-style: none; font-size: 13px; }
.legend li { display: inline-flex; align-items: center; gap: 6px; }
.swatch { display: inline-block; width: 18px; height: 3px; border-radius: 2px; }
.plots { display: grid; gap: 4px; border-radius: 6px; touch-action: pan-y; cursor: crosshair; min-height: 44px; }
.plots:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }
figure { margin: 0; }
figcaption { font-size: 12px; color: var(--muted); }
svg { width: 100%; height: auto; display: block; overflow: visible; }
.axis { stroke: var(--line); stroke-width: 1; }
.grid-line { stroke: var(--line); stroke-width: 0.5; stroke-dasharray: 2 3; }
.tick { fill: var(--muted); font-size: 11px; font-family: system-ui, sans-serif; }
.curve { fill: none; stroke-width: 1.8; stroke-linejoin: round; }
.curve.second { stroke-dasharray: 5 4; stroke-width: 1.4; }
.cursor { stroke: var(--fg); stroke-width: 1; opacity: 0.6; }
.s0 { stroke: var(--c0); fill: var(--c0); } .s1 { stroke: var(--c1); fill: var(--c1); }
.s2 { stroke: var(--c2); fill: var(--c2); } .s3 { stroke: var(--c3); fill: var(--c3); }
.curve.s0, .curve.s1, .curve.s2, .curve.s3 { fill: none; }
.swatch.s0 { background: var(--c0); } .swatch.s1 { background: var(--c1); }
.swatch.s2 { background: var(--c2); } .swatch.s3 { background: var(--c3); }
.readout { font-size: 13px; overflow-x: auto; }
.readout table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
.readout th, .readout td { text-align: right; padding: 2px 10px 2px 0; }
.readout th:first-child { text-align: left; }
.status { font-size: 12px; color: var(--muted); min-height: 1.2em; }
`;

/** A comma-separated attribute's items, trimmed, empty ones dropped. */
const list = (raw) => (raw ?? '').split(',').map((s) => s.trim()).filter(Boolean);

/** What the legend calls a fetched config: its folder's name (…/NAME/scheduler_config.json). */
function labelOf(url) {
  const parts = new URL(url, document.baseURI).pathname.split('/').filter(Boolean);
  if (parts.length > 1 && parts.at(-1).endsWith('.json')) parts.pop();
  return parts.at(-1) ?? url;
}

/** A number for the read-out and the ticks: 4 significant digits. */
const num = (v) => (v === undefined ? '—' : Number.isFinite(v) ? String(Number(v.toPrecision(4))) : String(v));

/** About `n` round values from lo to hi; `outward`: from the round value at or below lo to the
 *  one at or above hi (an axis's range), else only those inside. */
function ticks(lo, hi, n = 4, outward = false) {
  const rough = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= rough);
  const [first, last] = outward ? [Math.floor(lo / step), Math.ceil(hi / step)] : [Math.ceil(lo / step), Math.floor(hi / step)];
  const out = [];
  for (let k = first; k <= last; k++) out.push(Number((k * step).toPrecision(12)));
  return out;
}

function svg(tag, attrs = {}) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

class DdpmSchedule extends HTMLElement {
  static observedAttributes = ['compare', 'src', 't', 'curves'];

  #data = null;    // [{name, T, beta, alpha_bar, log_snr, beta_tilde}]
  #panels = [];    // [{key, spec, x, y, cursor, dots}]
  #t = 0;         // the read-out's index into the arrays: the paper's t - 1
  #loads = 0;
  #queued = false;

  /** Per schedule {name, T, beta, alpha_bar, log_snr, beta_tilde} (Float32Arrays), once ready. */
  get curves() {
    return this.#data ? this.#data.map((d) => ({ ...d })) : null;
  }

  /** The step the read-out shows (the paper's t, 1..T). */
  get t() {
    return this.#t + 1;
  }

  connectedCallback() {
    if (!this.shadowRoot) this.#build();
    this.#reload();
  }

  attributeChangedCallback(name, old, value) {
    if (!this.shadowRoot || old === value) return;
    if (name === 't' && this.dataset.state === 'ready') {
      try {
        this.#show(this.#pinned() ?? this.#t);
      } catch (err) {
        this.#fail(err.message);
      }
      return;
    }
    this.#reload();
  }

  #build() {
    const root = this.attachShadow({ mode: 'open' });
    styles(root, CSS);
    const ui = this.ui = {};
    ui.legend = make('ul', { class: 'legend', part: 'legend' });
    ui.legend.setAttribute('aria-label', 'Schedules');
    ui.plots = make('div', { class: 'plots', tabIndex: 0, role: 'slider', part: 'plots' });
    ui.plots.setAttribute('aria-label', 'Timestep t of the read-out');
    ui.readout = make('div', { class: 'readout', part: 'readout' });
    ui.readout.setAttribute('aria-live', 'polite');
    ui.status = make('div', { class: 'status', role: 'status' });
    ui.error = make('div', { class: 'error', role: 'alert', hidden: true });
    root.append(make('div', { class: 'box', part: 'box' }, [ui.legend, ui.plots, ui.readout, ui.status, ui.error]));
    ui.plots.addEventListener('keydown', (e) => this.#key(e));
    ui.plots.addEventListener('pointermove', (e) => this.#point(e));
    ui.plots.addEventListener('pointerdown', (e) => this.#point(e));
    ui.plots.addEventListener('pointerleave', () => {
      const pinned = this.#safePinned();
      if (pinned !== null && this.#data) this.#move(pinned);
    });
  }

  /** Loads again once, after every attribute set in the same task. */
  #reload() {
    if (this.#queued) return;
    this.#queued = true;
    queueMicrotask(() => {
      this.#queued = false;
      if (this.isConnected) this.#load();
    });
  }

  /** The index the `t` attribute (the paper's t, 1..T) names (null when absent); throws naming it. */
  #pinned() {
    const raw = this.getAttribute('t');
    if (raw === null || raw.trim() === '') return null;
    const T = this.#maxT();
    const v = Number(raw);
    if (!Number.isInteger(v) || v < 1 || v > T) throw new Error(`t="${raw}" must be a whole number from 1 to ${T}`);
    return v - 1;
  }

  #safePinned() {
    try {
      return this.#pinned();
    } catch {
      return null;
    }
  }

  #maxT() {
    return Math.max(...this.#data.map((d) => d.T));
  }

  /** The schedules the attributes name: [{name, label, config: () => text}]. */
  #sources() {
    const compare = list(this.getAttribute('compare'));
    const src = list(this.getAttribute('src'));
    if (!compare.length && !src.length) compare.push('linear');
    const out = compare.map((name) => {
      if (!Object.hasOwn(PRESETS, name)) {
        throw new Error(`compare: unknown schedule "${name}" (presets: ${Object.keys(PRESETS).join(', ')})`);
      }
      return { name, label: name, config: async () => JSON.stringify(PRESETS[name]) };
    });
    for (const raw of src) {
      let url;
      try {
        url = new URL(raw, document.baseURI).href;
      } catch {
        throw new Error(`src: "${raw}" is not a valid URL`);
      }
      out.push({ name: url, label: labelOf(url), config: () => fetchText(url) });
    }
    if (out.length > COLOURS) throw new Error(`at most ${COLOURS} schedules at once (got ${out.length})`);
    return out;
  }

  /** The panels `curves` names, in its order. */
  #panelKeys() {
    const keys = list(this.getAttribute('curves'));
    if (!keys.length) return Object.keys(PANELS);
    for (const k of keys) {
      if (!Object.hasOwn(PANELS, k)) throw new Error(`curves: unknown panel "${k}" (panels: ${Object.keys(PANELS).join(', ')})`);
    }
    return [...new Set(keys)];
  }

  async #load() {
    const mine = ++this.#loads;
    this.dataset.state = 'loading';
    this.ui.status.textContent = 'Computing the schedules…';
    this.ui.status.hidden = false;
    this.ui.error.hidden = true;
    let data;
    let keys;
    try {
      keys = this.#panelKeys();
      data = await Promise.all(this.#sources().map(async (s) => ({ name: s.label, ...(await scheduleCurves(s.name, await s.config())) })));
    } catch (err) {
      if (mine === this.#loads) this.#fail(err.message);
      return;
    }
    if (mine !== this.#loads) return;
    this.#data = data;
    this.ui.legend.hidden = false;
    this.#draw(keys);
    let t;
    try {
      t = this.#pinned() ?? Math.floor((this.#maxT() - 1) / 2);
    } catch (err) {
      return this.#fail(err.message);
    }
    this.#show(t);
    this.ui.status.hidden = true;
    this.ui.plots.hidden = false;
    this.ui.readout.hidden = false;
    this.dataset.state = 'ready';
    const lengths = data.map((d) => ({ T: d.T, beta: d.beta.length, alpha_bar: d.alpha_bar.length, log_snr: d.log_snr.length, beta_tilde: d.beta_tilde.length }));
    this.dispatchEvent(new CustomEvent('ready', { detail: { names: data.map((d) => d.name), lengths, t: t + 1, values: this.#values(t) } }));
  }

  #fail(message) {
    this.#loads += 1;  // a load in flight is stale now
    this.ui.error.textContent = message;
    this.ui.error.hidden = false;
    this.ui.status.hidden = true;
    for (const part of [this.ui.legend, this.ui.plots, this.ui.readout]) part.hidden = true;
    this.dataset.state = 'error';
    this.dispatchEvent(new CustomEvent('error', { detail: { message } }));
  }

  // ---- drawing -----------------------------------------------------------------------------

  #draw(keys) {
    const data = this.#data;
    const T = this.#maxT();
    this.ui.legend.replaceChildren(...data.map((d, i) =>
      make('li', {}, [make('span', { class: `swatch s${i}`, 'aria-hidden': 'true' }), `${d.name} (T = ${d.T})`])));
    const x = (t) => M.left + (t / Math.max(1, T - 1)) * (W - M.left - M.right);
    this.#panels = keys.map((key) => this.#panel(key, x, T));
    this.ui.plots.replaceChildren(...this.#panels.map((p) => p.figure));
    this.ui.plots.setAttribute('aria-valuemin', '1');
    this.ui.plots.setAttribute('aria-valuemax', String(T));
  }

  #panel(key, x, T) {
    const spec = PANELS[key];
    const data = this.#data;
    // y's range over every curve drawn (log: the positive values; beta~_0 is diffusers' 1e-20 floor)
    let lo = Infinity;
    let hi = -Infinity;
    for (const d of data) {
      for (const a of spec.arrays) {
        for (let t = a === 'beta_tilde' ? 1 : 0; t < d.T; t++) {
          const v = d[a][t];
          if (!Number.isFinite(v) || (spec.log && v <= 0)) continue;
          lo = Math.min(lo, v);
          hi = Math.max(hi, v);
        }
      }
    }
    if (key === 'alpha_bar') [lo, hi] = [0, 1];
    let yTicks;
    let f = (v) => v;
    if (spec.log) {
      [lo, hi] = [10 ** Math.floor(Math.log10(lo)), 10 ** Math.ceil(Math.log10(hi))];
      if (lo === hi) lo /= 10;
      f = Math.log10;
      const every = Math.ceil((Math.log10(hi) - Math.log10(lo)) / 5);
      yTicks = [];
      for (let e = Math.log10(lo); e <= Math.log10(hi); e += every) yTicks.push(10 ** e);
    } else {
      if (lo === hi) [lo, hi] = [lo - 1, hi + 1];
      yTicks = ticks(lo, hi, 4, true);
      [lo, hi] = [yTicks[0], yTicks.at(-1)];
    }
    const [flo, fhi] = [f(lo), f(hi)];
    const y = (v) => {
      const c = Math.min(fhi, Math.max(flo, spec.log && !(v > 0) ? flo : f(v)));
      return H - M.bottom - ((c - flo) / (fhi - flo)) * (H - M.top - M.bottom);
    };
    const plot = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'data-panel': key });
    plot.setAttribute('aria-label', `${spec.title}, against t from 1 to ${T}`);
    for (const v of yTicks) {
      plot.append(svg('line', { class: 'grid-line', x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }));
      const label = svg('text', { class: 'tick', x: M.left - 6, y: y(v) + 4, 'text-anchor': 'end' });
      label.textContent = spec.log ? `1e${Math.round(Math.log10(v))}` : num(v);
      plot.append(label);
    }
    for (const t of ticks(1, T, 5)) {
      const label = svg('text', { class: 'tick', x: x(t - 1), y: H - 8, 'text-anchor': 'middle' });
      label.textContent = String(t);
      plot.append(label);
    }
    plot.append(svg('line', { class: 'axis', x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom }),
      svg('line', { class: 'axis', x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom }));
    data.forEach((d, i) => spec.arrays.forEach((a, k) => {
      let path = '';
      for (let t = 0; t < d.T; t++) path += `${t ? 'L' : 'M'}${x(t).toFixed(1)},${y(d[a][t]).toFixed(1)}`;
      plot.append(svg('path', { class: `curve s${i}${k ? ' second' : ''}`, d: path, 'data-curve': a, 'data-schedule': d.name }));
    }));
    const cursor = svg('line', { class: 'cursor', y1: M.top, y2: H - M.bottom });
    const dots = data.flatMap((d, i) => spec.arrays.map((a) => ({ d, a, dot: svg('circle', { class: `s${i}`, r: 3.5 }) })));
    plot.append(cursor, ...dots.map((e) => e.dot));
    const caption = make('figcaption', { textContent: spec.title });
    return { key, spec, x, y, cursor, dots, figure: make('figure', {}, [caption, plot]), svg: plot };
  }

  // ---- the read-out ------------------------------------------------------------------------

  /** Every curve's value at index t, per schedule (undefined past a schedule's T). */
  #values(t) {
    return this.#data.map((d) => ({ name: d.name, beta: d.beta[t], beta_tilde: d.beta_tilde[t], alpha_bar: d.alpha_bar[t], log_snr: d.log_snr[t] }));
  }

  /** Shows index `t` (cursor, dots, read-out); no event. */
  #show(t) {
    this.#t = t;
    for (const p of this.#panels) {
      const px = p.x(t);
      p.cursor.setAttribute('x1', px);
      p.cursor.setAttribute('x2', px);
      for (const { d, a, dot } of p.dots) {
        dot.toggleAttribute('hidden', t >= d.T);
        if (t < d.T) {
          dot.setAttribute('cx', px);
          dot.setAttribute('cy', p.y(d[a][t]));
        }
      }
    }
    const cols = this.#panels.flatMap((p) => p.spec.arrays.map((a, k) => [a, p.spec.labels[k]]));
    const head = make('tr', {}, [make('th', { scope: 'col', textContent: `t = ${t + 1}` }), ...cols.map(([, label]) => make('th', { scope: 'col', textContent: label }))]);
    const rows = this.#values(t).map((v, i) => make('tr', { 'data-schedule': v.name }, [
      make('th', { scope: 'row' }, [make('span', { class: `swatch s${i}`, 'aria-hidden': 'true' }), ` ${v.name}`]),
      ...cols.map(([a]) => make('td', { 'data-curve': a, textContent: num(v[a]) })),
    ]));
    this.ui.readout.replaceChildren(make('table', {}, [make('thead', {}, [head]), make('tbody', {}, rows)]));
    this.ui.plots.setAttribute('aria-valuenow', String(t + 1));
    this.ui.plots.setAttribute('aria-valuetext', `t = ${t + 1}`);
  }

  /** Moves the read-out to index `t` and says so (tchange, with the paper's t), if it changed. */
  #move(t) {
    t = Math.max(0, Math.min(this.#maxT() - 1, Math.round(t)));
    if (t === this.#t) return;
    this.#show(t);
    this.dispatchEvent(new CustomEvent('tchange', { detail: { t: t + 1, values: this.#values(t) } }));
  }

  #point(e) {
    const p = this.#panels.find((q) => q.svg.contains(e.target));
    if (!p || !this.#data) return;
    const box = p.svg.getBoundingClientRect();
    const vx = ((e.clientX - box.left) / box.width) * W;
    this.#move(((vx - M.left) / (W - M.left - M.right)) * (this.#maxT() - 1));
  }

  #key(e) {
    if (!this.#data) return;
    const T = this.#maxT();
    const big = Math.max(1, Math.round(T / 10));
    const step = e.shiftKey ? 10 : 1;
    const to = {
      ArrowLeft: this.#t - step, ArrowDown: this.#t - step, ArrowRight: this.#t + step, ArrowUp: this.#t + step,
      PageDown: this.#t - big, PageUp: this.#t + big, Home: 0, End: T - 1,
    }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    this.#move(to);
  }
}

/** A config file's text; throws naming the URL and what went wrong. */
async function fetchText(url) {
  let res;
  try {
    res = await fetch(url);
  } catch (err) {
    throw new Error(`src: ${url} could not be fetched (${err.message}; is the host up and does it allow CORS?)`);
  }
  if (!res.ok) throw new Error(`src: ${url}: HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`);
  return res.text();
}

if (!customElements.get('ddpm-schedule')) customElements.define('ddpm-schedule', DdpmSchedule);
