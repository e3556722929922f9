// Module worker that owns the wasm Engine: fetches (and caches) a diffusers model, runs sampling
// one step at a time, and talks to the page (www/app.js) by messages.
//
// In:  {type:'init', preferGpu} {type:'load', url} {type:'generate', n, sampler, steps, eta, seed,
//      previewEvery} {type:'cancel'} {type:'clear-cache'}
// Out: {type:'backend', name, isGpu, note} {type:'download', file, url, loaded, total, cached}
//      {type:'ready', info, model, layout, cached} {type:'progress', done, total, stepsPerSec, etaSec}
//      {type:'preview', done, total, xt, x0} {type:'done', images, width, height, ms}
//      {type:'cancelled', done, total} {type:'cache-cleared', deleted} {type:'error', message, where}
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
  backendName = String(engine.backend ?? '');
  if (engine.is_gpu) backendName += `: ${await adapterName()}`;
  postBackend();
}

let backendName = '';

// The adapter's own description, for display only (the engine holds its own device).
async function adapterName() {
  try {
    const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
    const info = adapter?.info ?? {};
    return [info.description || info.vendor, info.architecture].filter(Boolean).join(' ') || 'unnamed adapter';
  } catch {
    return 'unnamed adapter';
  }
}

function postBackend() {
  post({ type: 'backend', name: backendName, isGpu: Boolean(engine.is_gpu), note: engine.gpu_note ?? null });
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
  const raw = await engine.model_info();
  const info = typeof raw === 'string' ? JSON.parse(raw) : raw;
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
    post(msg, buffers(images));
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
  post({ type: 'preview', done, total, xt, x0 }, buffers([xt, x0].filter(Boolean).map((f) => f.rgba)));
}

/** A Frame from the engine (plain object, Map or wasm-bindgen class) as a plain, transferable object. */
function frame(f) {
  if (f === undefined || f === null) return null;
  const out = { width: Number(field(f, 'width')), height: Number(field(f, 'height')), rgba: toBytes(field(f, 'rgba')) };
  free(f);
  return out;
}

const buffers = (arrays) => [...new Set(arrays.map((a) => a.buffer))];
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

// ---- Model files: diffusers layout, streaming download with progress, Cache Storage ----------

const CACHE_NAME = 'ddpm-web-models-v1';
const STATUS_TEXT = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 410: 'Gone',
  429: 'Too Many Requests', 500: 'Internal Server Error', 502: 'Bad Gateway',
  503: 'Service Unavailable', 504: 'Gateway Timeout',
};

/**
 * Fetches a diffusers model folder: flat (config.json, diffusion_pytorch_model.safetensors,
 * scheduler_config.json) or pipeline (model_index.json + unet/ + scheduler/). `prefix` is an
 * absolute URL. A missing scheduler config is allowed (bytes: null).
 */
async function fetchModelFiles(prefixIn, { onProgress, useCache }) {
  const prefix = new URL(prefixIn.endsWith('/') ? prefixIn : `${prefixIn}/`, self.location.href).href;
  const cache = useCache ? await openCache() : null;
  const list = [];
  const get = async (name, allow404) => {
    const file = await getFile(new URL(name, prefix).href, name, { cache, allow404, onProgress });
    list.push(file);
    return file;
  };
  const flatConfig = await get('config.json', true);
  if (flatConfig.bytes) {
    const scheduler = await get('scheduler_config.json', true);
    const weights = await get('diffusion_pytorch_model.safetensors', false);
    return { prefix, layout: 'flat', config: flatConfig, scheduler, weights, list };
  }
  const index = await get('model_index.json', true);
  if (!index.bytes) {
    throw new Error(`${flatConfig.url}: HTTP 404 Not Found (and ${index.url}: HTTP 404 Not Found): ` +
      `there is no diffusers model at ${prefix}`);
  }
  const config = await get('unet/config.json', false);
  const scheduler = await get('scheduler/scheduler_config.json', true);
  const weights = await get('unet/diffusion_pytorch_model.safetensors', false);
  return { prefix, layout: 'pipeline', config, scheduler, weights, list };
}

/** One file, from Cache Storage when there, else from the network: {url, name, bytes|null, cached}. */
async function getFile(url, name, { cache, allow404, onProgress }) {
  const report = (loaded, total, cached) => onProgress({ file: name, url, loaded, total, cached });
  const missing = (cached) => {
    if (allow404) return { url, name, bytes: null, cached };
    throw new Error(`${url}: HTTP 404 Not Found`);
  };
  const hit = cache ? await cache.match(url).catch(() => undefined) : undefined;
  if (hit) {
    if (hit.status === 404) return missing(true);
    const bytes = new Uint8Array(await hit.arrayBuffer());
    report(bytes.length, bytes.length, true);
    return { url, name, bytes, cached: true };
  }
  let resp;
  try {
    resp = await fetch(url);
  } catch (err) {
    throw new Error(`${url}: network error (${describeError(err)}): the server cannot be reached, ` +
      'or it does not allow cross-origin requests (CORS)');
  }
  if (resp.status === 404) return missing(false);
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status} ${resp.statusText || STATUS_TEXT[resp.status] || ''}`.trimEnd());
  const bytes = await readBody(url, resp, (loaded, total) => report(loaded, total, false));
  return { url, name, bytes, cached: false };
}

/** Reads a response body chunk by chunk, reporting progress at most every 100 ms. */
async function readBody(url, resp, report) {
  const encoding = resp.headers.get('content-encoding');
  let total = encoding && encoding !== 'identity' ? null : Number(resp.headers.get('content-length')) || null;
  const expected = total;
  if (!resp.body) {
    const bytes = new Uint8Array(await resp.arrayBuffer());
    report(bytes.length, bytes.length);
    return bytes;
  }
  const reader = resp.body.getReader();
  const chunks = [];
  let loaded = 0;
  let last = 0;
  report(0, total);
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (err) {
      throw new Error(`${url}: download interrupted after ${loaded} bytes (${describeError(err)})`);
    }
    if (chunk.done) break;
    chunks.push(chunk.value);
    loaded += chunk.value.length;
    if (total !== null && loaded > total) total = null;  // the length was not the body's
    const now = performance.now();
    if (now - last >= 100) {
      last = now;
      report(loaded, total);
    }
  }
  if (expected !== null && loaded < expected) {
    throw new Error(`${url}: download incomplete: got ${loaded} of ${expected} bytes`);
  }
  report(loaded, loaded);
  if (chunks.length === 1) return chunks[0];
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  return bytes;
}

async function openCache() {
  try {
    return self.caches ? await self.caches.open(CACHE_NAME) : null;
  } catch {
    return null;  // no Cache Storage here (insecure context, private mode): use the network only
  }
}

/** Stores freshly downloaded files (a 404 as a 404, so a second visit needs no network at all). */
async function commitToCache(list) {
  const cache = await openCache();
  if (!cache) return;
  for (const f of list) {
    if (f.cached) continue;
    const resp = f.bytes
      ? new Response(f.bytes, { headers: { 'Content-Type': 'application/octet-stream' } })
      : new Response(null, { status: 404, statusText: 'Not Found' });
    try {
      await cache.put(f.url, resp);
    } catch {
      return;  // over quota: the model still runs, it just is not cached
    }
  }
}

async function forgetInCache(list) {
  const cache = await openCache();
  if (cache) await Promise.all(list.map((f) => cache.delete(f.url).catch(() => false)));
}

async function clearModelCache() {
  try {
    return self.caches ? await self.caches.delete(CACHE_NAME) : false;
  } catch {
    return false;
  }
}
