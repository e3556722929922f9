// Module worker that owns the wasm Engine: fetches (and caches) a diffusers model, runs sampling
// one step at a time, and talks to the page by messages (see the protocol in README/app.js).
//
// In:  {type:'init', preferGpu} {type:'load', url} {type:'generate', n, sampler, steps, eta, seed,
//      previewEvery} {type:'cancel'} {type:'clear-cache'}
// Out: {type:'backend', name, isGpu, note} {type:'download', file, url, loaded, total, cached}
//      {type:'ready', info, model, layout, cached} {type:'progress', done, total, stepsPerSec, etaSec}
//      {type:'preview', done, total, xt, x0} {type:'done', images, width, height, ms}
//      {type:'cancelled', done, total} {type:'cache-cleared', deleted} {type:'error', message, where}
import { fetchModelFiles, clearModelCache, commitToCache, forgetInCache } from './model-files.js';

let engine = null;
let queue = Promise.resolve();  // init / load / generate / clear-cache run one after another
let received = 0;               // generate messages received so far
let cancelledUpTo = 0;          // every generate with id <= this is cancelled

const post = (msg, transfer = []) => self.postMessage(msg, transfer);

self.onmessage = (event) => {
  const msg = event.data || {};
  if (msg.type === 'cancel') {
    cancelledUpTo = received;  // handled at once, also while a step is in flight
    return;
  }
  const job = msg.type === 'generate' ? { ...msg, id: ++received } : msg;
  queue = queue.then(() => handle(job));
};

async function handle(msg) {
  const where = msg.type === 'generate' ? 'generate' : msg.type === 'init' ? 'init' : 'load';
  try {
    switch (msg.type) {
      case 'init': return await initEngine(msg.preferGpu !== false);
      case 'load': return await loadModel(String(msg.url));
      case 'generate': return await generate(msg);
      case 'clear-cache': return post({ type: 'cache-cleared', deleted: await clearModelCache() });
      default: throw new Error(`worker: unknown message type ${JSON.stringify(msg.type)}`);
    }
  } catch (err) {
    post({ type: 'error', where, message: describeError(err) });
  }
}

async function initEngine(preferGpu) {
  if (engine) return postBackend();
  const jsUrl = new URL('../pkg/ddpm_web.js', import.meta.url);
  let wasm;
  try {
    wasm = await import(jsUrl.href);
  } catch (err) {
    throw new Error(`${jsUrl.href}: could not load the WebAssembly glue module (${describeError(err)}). ` +
      'Is pkg/ built? Run `make build-web`.');
  }
  const wasmUrl = new URL('../pkg/ddpm_web_bg.wasm', import.meta.url);
  try {
    await wasm.default({ module_or_path: wasmUrl });
  } catch (err) {
    throw new Error(`${wasmUrl.href}: could not load the WebAssembly module (${describeError(err)})`);
  }
  engine = await wasm.Engine.create(preferGpu);
  postBackend();
}

function postBackend() {
  post({ type: 'backend', name: String(engine.backend ?? ''), isGpu: Boolean(engine.is_gpu), note: engine.gpu_note ?? null });
}

async function loadModel(url) {
  if (!engine) throw new Error('the engine did not start, so no model can be loaded (see the error above)');
  const onProgress = (p) => post({ type: 'download', ...p });
  let files = await fetchModelFiles(url, { onProgress, useCache: true });
  try {
    await engine.load_model(...loadArgs(files));
  } catch (err) {
    if (!files.list.some((f) => f.cached)) throw err;
    // Something read from Cache Storage did not load: drop it and fetch afresh once.
    await forgetInCache(files.list);
    files = await fetchModelFiles(url, { onProgress, useCache: false });
    await engine.load_model(...loadArgs(files));
  }
  await commitToCache(files.list);
  const info = JSON.parse(await engine.model_info());
  post({ type: 'ready', info, model: files.prefix, layout: files.layout, cached: files.list.every((f) => f.cached) });
}

function loadArgs({ config, scheduler, weights }) {
  const text = (bytes) => new TextDecoder().decode(bytes);
  return [config.url, text(config.bytes), scheduler.url, scheduler.bytes ? text(scheduler.bytes) : null, weights.url, weights.bytes];
}

const isCancelled = (id) => id <= cancelledUpTo;
const nextTask = () => new Promise((resolve) => setTimeout(resolve, 0));

async function generate({ id, n, sampler, steps, eta, seed, previewEvery }) {
  if (!engine) throw new Error('the engine did not start');
  if (isCancelled(id)) return post({ type: 'cancelled', done: 0, total: steps });
  const t0 = performance.now();
  await engine.start(n, sampler, steps, eta, seed >>> 0);
  const every = Math.max(1, Math.floor(previewEvery) || 1);
  const times = [];  // end times of the last steps, for a steps/s that forgets shader compilation
  let done = 0;
  let total = steps;
  try {
    while (done < total) {
      if (isCancelled(id)) {
        engine.cancel();
        return post({ type: 'cancelled', done, total });
      }
      const preview = (done + 1) % every === 0 || done + 1 >= total;
      const r = await engine.step(preview);
      if (r === undefined || r === null) break;
      done = Number(field(r, 'done'));
      total = Number(field(r, 'total'));
      times.push(performance.now());
      if (times.length > 11) times.shift();
      postProgress(done, total, t0, times);
      if (preview) postPreview(r, done, total);
      free(r);
      await nextTask();  // lets a 'cancel' message in
    }
    const out = await engine.result();
    const images = Array.from(field(out, 'images'), toBytes);
    const msg = { type: 'done', images, width: field(out, 'width'), height: field(out, 'height'), ms: performance.now() - t0, done, total };
    free(out);
    post(msg, images.map((a) => a.buffer));
  } catch (err) {
    try { engine.cancel(); } catch { /* already dropped */ }
    throw err;
  }
}

function postProgress(done, total, t0, times) {
  const span = times.length > 1 ? times[times.length - 1] - times[0] : times[0] - t0;
  const count = times.length > 1 ? times.length - 1 : 1;
  const stepsPerSec = span > 0 ? (1000 * count) / span : 0;
  const etaSec = stepsPerSec > 0 ? (total - done) / stepsPerSec : null;
  post({ type: 'progress', done, total, stepsPerSec, etaSec });
}

function postPreview(r, done, total) {
  const xt = frame(field(r, 'x_t'));
  const x0 = frame(field(r, 'x0'));
  if (!xt && !x0) return;
  const transfer = [xt, x0].filter(Boolean).map((f) => f.rgba.buffer);
  post({ type: 'preview', done, total, xt, x0 }, transfer);
}

/** A Frame from the engine (plain object, Map or wasm-bindgen class) as a plain, transferable object. */
function frame(f) {
  if (f === undefined || f === null) return null;
  const out = { width: Number(field(f, 'width')), height: Number(field(f, 'height')), rgba: toBytes(field(f, 'rgba')) };
  free(f);
  return out;
}

const field = (o, key) => (o instanceof Map ? o.get(key) : o?.[key]);
const free = (o) => { if (o && typeof o.free === 'function') o.free(); };

/** A Uint8Array that owns its whole buffer (safe to transfer; never a view of wasm memory). */
function toBytes(a) {
  if (a instanceof Uint8Array || a instanceof Uint8ClampedArray) {
    const owns = a.byteOffset === 0 && a.byteLength === a.buffer.byteLength && a.buffer instanceof ArrayBuffer;
    return owns ? new Uint8Array(a.buffer) : new Uint8Array(a);
  }
  return new Uint8Array(a instanceof ArrayBuffer ? a : Array.from(a ?? []));
}

function describeError(err) {
  if (err === undefined || err === null) return 'unknown error';
  if (typeof err === 'string') return err;
  let text = err.message ? String(err.message) : String(err);
  if (typeof WebAssembly !== 'undefined' && err instanceof WebAssembly.RuntimeError) {
    text = `the engine crashed (${text}); reload the page`;
  }
  return text;
}
