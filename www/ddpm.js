// The engine as a promise-based JS API (types: ddpm.d.ts), for pages of your own. It talks to the
// same engine host as the page and <ddpm-demo> (in a Web Worker, shared by everything on a page):
//
//   import { connect } from './www/ddpm.js';
//   const ddpm = await connect();                      // ddpm.backend: {name, isGpu, software, note}
//   const model = await ddpm.load('www/models/mnist/', { onDownload: (d) => console.log(d.loaded) });
//   const run = ddpm.generate(model, { n: 4, sampler: 'dpm++', steps: 20, seed: 1, onProgress, onPreview });
//   const result = await run.result;                   // {images: RGBA Uint8Array[], width, height, ms}, null if cancelled
//   run.cancel();
//   const { beta, alpha_bar, log_snr, beta_tilde } = await scheduleCurves('mine', configText);  // Float32Arrays

import { connect as connectHub } from './engine/client.js';
import { modelUrl } from './hub.js';
import { DEFAULT_SAMPLER, defaultSteps } from './util.js';

/** Waits for the first message `pick` answers for: {value} resolves, {error} rejects. */
function answer(hub, pick) {
  return new Promise((resolve, reject) => {
    const stop = hub.listen((msg) => {
      const got = pick(msg);
      if (!got) return;
      stop();
      if ('error' in got) reject(Object.assign(new Error(got.error), got.details));
      else resolve(got.value);
    });
  });
}

/** Starts the engine (WebGPU when there is an adapter and `backend` is not 'cpu', else the CPU). */
export async function connect({ backend = 'auto' } = {}) {
  if (!['auto', 'cpu'].includes(backend)) throw new Error(`backend must be 'auto' or 'cpu' (got ${JSON.stringify(backend)})`);
  const hub = connectHub();
  const started = answer(hub, (msg) => (msg.type === 'backend' ? { value: msg }
    : msg.type === 'error' && msg.where === 'init' ? { error: msg.message } : null));
  hub.post({ type: 'init', preferGpu: backend !== 'cpu' });
  const { name, isGpu, software, note } = await started;
  return new Client(hub, { name, isGpu, software: Boolean(software), note: note ?? null });
}

/** The curves of a scheduler_config.json (its text; `name` names it in errors), computed by the
 *  engine's wasm (no 'init': no model, no GPU): {T, beta, alpha_bar, log_snr, beta_tilde}. */
export function scheduleCurves(name, config) {
  const hub = connectHub();
  const id = hub.newId();
  const got = answer(hub, (msg) => (msg.id !== id ? null
    : msg.type === 'schedule' ? { value: msg.curves }
      : msg.type === 'error' && msg.where === 'schedule' ? { error: msg.message }
        : msg.type === 'error' && msg.where === 'init' && msg.id === undefined ? { error: msg.message } : null));
  hub.post({ type: 'schedule', id, name, config });
  return got;
}

class Client {
  constructor(hub, backend) {
    this.hub = hub;
    this.backend = backend;
  }

  /** Loads a diffusers folder (flat or pipeline layout) from a URL prefix or an `hf:OWNER/NAME`
   *  id (under `hub`), from Cache Storage when kept. */
  async load(url, { sha256, hub, maxBytes, onDownload } = {}) {
    const key = modelUrl(url, globalThis.document?.baseURI ?? globalThis.location.href, hub);
    const stop = onDownload ? this.hub.listen((msg) => {
      if (msg.type === 'download' && msg.url === key) {
        const { file, loaded, total, cached, bytesPerSec, etaSec, attempt, converting } = msg;
        onDownload({ file, loaded, total, cached, bytesPerSec, etaSec, attempt, converting });
      }
    }) : () => {};
    const ready = answer(this.hub, (msg) => (msg.type === 'ready' && msg.url === key ? { value: msg }
      : msg.type === 'error' && msg.where === 'load' && msg.url === key ? { error: msg.message, details: { tooLarge: msg.tooLarge } } : null));
    this.hub.post({ type: 'load', url: key, sha256, maxBytes });
    try {
      const { info, layout, cached } = await ready;
      return { url: key, info, layout, cached };
    } finally {
      stop();
    }
  }

  /** Samples `n` images; callbacks get every step's progress and, every `previewEvery` steps,
   *  x_t and the predicted x_0 (RGBA). `from`: start from an image instead of x_T, {image: RGBA
   *  bytes of one image of the model's size, strength 0..1} (SDEdit: noised to `strength` of
   *  the way and denoised from there), or from the noise of an interpolation, {toSeed, count}:
   *  image i's x_T lies i / (count - 1) of the way from seed's image 0 to toSeed's, n = count. */
  generate(model, { n = 1, sampler = DEFAULT_SAMPLER, steps, eta = 0, seed = 0, previewEvery = 0, workers, from, onProgress, onPreview } = {}) {
    const T = model.info.num_train_timesteps;
    const id = this.hub.newId();
    const stop = this.hub.listen((msg) => {
      if (msg.id !== id) return;
      if (msg.type === 'progress') onProgress?.({ done: msg.done, total: msg.total, stepsPerSec: msg.stepsPerSec, etaSec: msg.etaSec });
      if (msg.type === 'preview') onPreview?.({ done: msg.done, total: msg.total, xt: msg.xt, x0: msg.x0 });
    });
    const result = answer(this.hub, (msg) => (msg.id !== id ? null
      : msg.type === 'done' ? { value: { images: msg.images, width: msg.width, height: msg.height, ms: msg.ms, workers: msg.workers } }
        : msg.type === 'cancelled' ? { value: null }
          : msg.type === 'error' ? { error: msg.message } : null));
    result.then(stop, stop);
    this.hub.post({
      type: 'generate', id, model: model.url ?? model, n, sampler, eta, seed,
      steps: steps ?? defaultSteps(sampler, T),
      previewEvery: previewEvery > 0 ? previewEvery : 1_000_000, workers, from,
    });
    return { id, result, cancel: () => this.hub.post({ type: 'cancel', id }) };
  }

  /** x_0 (`image`: `n` RGBA images of the model's size, as a canvas gives them) noised to the
   *  paper's step `t` (0..T) with the noise of `seed`, and the model's prediction there: resolves
   *  to {t, sqrtAlphaBar, sqrtOneMinusAlphaBar, snr, frames: {x0, x_t, eps, eps_hat, x0_hat}
   *  (RGBA grids), values: {the same, Float32Array in [-1, 1]}} (<ddpm-forward> draws it). */
  forward(model, { image, n = 1, t, seed = 0 }) {
    const id = this.hub.newId();
    const done = answer(this.hub, (msg) => (msg.id !== id ? null
      : msg.type === 'forward-view' ? { value: msg } : msg.type === 'error' ? { error: msg.message } : null));
    this.hub.post({ type: 'forward', id, model: model.url ?? model, image: Uint8Array.from(image), n, t, seed });
    return done;
  }

  /** Drops every kept model file from Cache Storage; resolves to whether there were any. */
  clearCache() {
    const done = answer(this.hub, (msg) => (msg.type === 'cache-cleared' ? { value: msg.deleted } : null));
    this.hub.post({ type: 'clear-cache' });
    return done;
  }
}
