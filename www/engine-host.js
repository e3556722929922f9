// The engine's host: owns the wasm Engine, fetches (and caches) diffusers models, samples one
// step at a time and fine-tunes, answering by messages. It runs in a Web Worker (www/worker.js)
// or, where a page's Content-Security-Policy forbids the worker, on the page itself.
//
// In:  {type:'init', preferGpu} {type:'load', url, sha256?} {type:'generate', id, model, n, sampler, steps,
//      eta, seed, previewEvery, workers?, first?, cols?, cpuOnSoftware?} {type:'cancel', id?} {type:'clear-cache'}
//      {type:'load-args', id, key, args} (a model's files as another host read them: cpu-pool.js)
//      {type:'tune', id, base, rgba, n, lr, seed, steps, batch, readEvery, workers?, onGpu?} {type:'tune-stop'}
//      {type:'tune-start', id, base, rgba, n, lr, seed} {type:'tune-shard', id, batch, shard, shards}
//      {type:'tune-apply', parts} {type:'tune-end'} (a helper's share of a fine-tuning run: cpu-pool.js)
//      {type:'load-weights', id, key, base, name, bytes} {type:'drop', key}
//      {type:'stats'} {type:'lose-device'} (destroys the WebGPU device, as a lost GPU would: for tests)
// Out: {type:'backend', name, isGpu, software, note} {type:'download', url, file, loaded, total, cached}
//      {type:'ready', url, info, layout, cached} {type:'progress', id, done, total, stepsPerSec, etaSec}
//      {type:'preview', id, done, total, xt, x0} {type:'done', id, images, width, height, ms, workers, cpu}
//      {type:'cancelled', id, done, total} {type:'cache-cleared', deleted}
//      {type:'tune-progress', id, step, total, loss, stepsPerSec, etaSec, workers, cpu?}
//      {type:'tuned', id, key, steps, stopped, workers, cpu?, weights} {type:'tune-started', id}
//      {type:'tune-gradient', id, gradient, loss} {type:'weights-loaded', id, key} {type:'loaded', id}
//      {type:'error', where, id, url, message} {type:'stats', wasmBytes, gpuBuffers, gpuBytes}
//      {type:'device-lost', message}
// Models are keyed by their absolute URL prefix; a fine-tuned model by the key the page gives.
// On the CPU, a batch is split across helper workers where it can be (cpu-pool.js; `workers`
// caps them, 1 keeps it on this engine), and so is each fine-tuning step's batch. On a software
// WebGPU adapter, fine-tuning runs on the CPU workers (`cpu: true` in its messages) unless
// `onGpu`, and so does a generation marked `cpuOnSoftware` (fine-tuning's before / after). When the WebGPU device is lost, a new engine starts on the CPU, reloads every model and
// fine-tuned weights it had, and reruns the generation that was in flight.

import { cancelParts, delegateTune, forgetModel, planParts, planShards, runParts, stopTune, tuneTeam } from './cpu-pool.js';

const PKG = '../pkg/';  // the wasm-pack output, relative to this file (`make dist` rewrites it)

let engine = null;
let epoch = 0;                  // bumped when the engine is replaced; older jobs then stay silent
let current = null;             // the job running now
let post = () => {};
let queue = Promise.resolve();  // jobs run one after another on the one engine
const loads = new Map();        // `url sha256` -> {url, sha256, answer, settle, ready} (one download per model)
const tuned = new Map();        // key -> {base, name, bytes}: fine-tuned weights, kept to reload after a device loss
const modelArgs = new Map();    // url -> engine.load_model's arguments after the key: to load a model into a helper
const cancelled = new Set();    // ids of generate jobs to stop
let received = [];              // ids of generate jobs not yet finished
let tuneStop = false;

/** Starts a host that answers through `send(message, transfer)`; returns its message handler. */
export function createHost(send) {
  post = send;
  watchGpu();
  return (msg) => {
    msg = msg || {};
    if (msg.type === 'cancel') {  // handled at once, also while a step is in flight
      for (const id of msg.id === undefined ? received : [msg.id]) cancelled.add(id);
      return cancelParts(msg.id);
    }
    if (msg.type === 'tune-stop') {
      tuneStop = true;
      return stopTune();
    }
    if (msg.type === 'generate') received.push(msg.id);
    if (msg.type === 'load') return void loadOnce(msg.url, msg.sha256);
    if (msg.type === 'stats') return void post({ type: 'stats', ...stats() });
    if (msg.type === 'lose-device') return void devices.forEach((d) => d.destroy());
    enqueue(msg);
  };
}

const WHERE = { init: 'init', generate: 'generate', tune: 'tune', 'load-weights': 'weights' };

function enqueue(msg) {
  const job = queue.then(() => handle(msg));
  queue = job.catch(() => {});
  return job;
}

async function handle(msg) {
  const mine = epoch;
  current = msg;
  try {
    switch (msg.type) {
      case 'init': return await initEngine(msg.preferGpu !== false, msg.note);
      case 'generate': return await generate(msg, mine);
      case 'clear-cache': return post({ type: 'cache-cleared', deleted: await clearModelCache() });
      case 'tune': return await tune(msg, mine);
      case 'tune-start':  // a helper's share of a fine-tuning run (cpu-pool.js)
        engineOf(mine).tune_start(String(msg.base), toBytes(msg.rgba), msg.n, msg.lr, msg.seed >>> 0);
        return post({ type: 'tune-started', id: msg.id });
      case 'tune-shard': {
        const [gradient, loss] = await engineOf(mine).tune_shard(msg.batch, msg.shard, msg.shards);
        return post({ type: 'tune-gradient', id: msg.id, gradient, loss }, [gradient.buffer]);
      }
      case 'tune-apply': return void engineOf(mine).tune_apply(msg.parts);
      case 'tune-end': return engine?.tune_end();
      case 'load-weights': return loadWeights(msg);
      case 'load-args':
        engineOf(mine).load_model(String(msg.key), ...msg.args);
        modelArgs.set(String(msg.key), msg.args);  // a helper fine-tuning for the host shares steps with helpers of its own
        return post({ type: 'loaded', id: msg.id });
      case 'drop':
        tuned.delete(String(msg.key));
        forgetModel(String(msg.key));
        return engine?.drop_model(String(msg.key));
      default: throw new Error(`engine host: unknown message type ${JSON.stringify(msg.type)}`);
    }
  } catch (err) {
    if (engine?.is_gpu) await lossOr(300);  // if the device was lost, its recovery takes over
    if (mine !== epoch) return;
    post({ type: 'error', where: WHERE[msg.type] || 'load', id: msg.id, message: describeError(err) });
  } finally {
    if (mine === epoch) current = null;
    if (msg.type === 'generate' && mine === epoch) {
      received = received.filter((id) => id !== msg.id);
      cancelled.delete(msg.id);
    }
  }
}

/** Loads each model URL once; a later request gets the same answer (ready or error) again.
 *  With `sha256`, the weights file must have that digest. */
function loadOnce(url, sha256) {
  url = String(url);
  const key = `${url} ${sha256 ?? ''}`;
  let entry = loads.get(key);
  if (!entry) {
    let settle;
    const answer = new Promise((resolve) => { settle = resolve; });
    entry = { key, url, sha256, answer, settle, ready: false };
    loads.set(key, entry);
    queueLoad(entry);
  }
  entry.answer.then((msg) => post(msg));
}

/** Loads `entry` into the engine after the jobs already queued; a reload after a device loss
 *  (entry.ready) says nothing unless it fails. */
function queueLoad(entry) {
  const mine = epoch;
  const job = queue.then(() => loadModel(entry.url, entry.sha256, !entry.ready)).then((msg) => {
    if (mine !== epoch) return;
    entry.ready = true;
    entry.settle(msg);
  }, (err) => {
    if (mine !== epoch) return;
    const msg = { type: 'error', where: 'load', url: entry.url, message: describeError(err) };
    loads.delete(entry.key);  // a later request tries again
    if (entry.ready) post(msg);
    else entry.settle(msg);
  });
  queue = job;
}

async function initEngine(preferGpu, note = null) {
  if (engine) return postBackend();
  const jsUrl = new URL(`${PKG}ddpm_web.js`, import.meta.url);
  if (epoch > 0) jsUrl.searchParams.set('engine', String(epoch));  // a fresh wasm instance after a device loss
  let wasm;
  try {
    wasm = await import(jsUrl.href);
  } catch (err) {
    throw new Error(`${jsUrl.href}: could not load the WebAssembly glue module (${describeError(err)}). ` +
      'Is pkg/ built? Run `make build-web`.');
  }
  const wasmUrl = new URL(`${PKG}ddpm_web_bg.wasm`, import.meta.url);
  try {
    wasmMemory = (await wasm.default({ module_or_path: wasmUrl })).memory;
    wasmGlue = wasm;
  } catch (err) {
    throw new Error(`${wasmUrl.href}: could not load the WebAssembly module (${describeError(err)})`);
  }
  engine = await wasm.Engine.create(preferGpu);
  backendName = String(engine.backend ?? '');
  backendNote = note;
  softwareAdapter = false;
  if (engine.is_gpu) {
    const adapter = await adapterInfo();
    backendName += `: ${adapter.name}`;
    softwareAdapter = adapter.software;
  }
  postBackend();
}

let backendName = '';
let backendNote = null;
let softwareAdapter = false;  // WebGPU on a fallback adapter (SwiftShader): the CPU emulating a GPU
let wasmMemory = null;
let wasmGlue = null;  // the wasm-bindgen module's exports

// The adapter's own description, and whether it is a fallback (software) adapter, for display
// only (the engine holds its own device).
async function adapterInfo() {
  try {
    const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
    const info = adapter?.info ?? {};
    return {
      name: [info.description || info.vendor, info.architecture].filter(Boolean).join(' ') || 'unnamed adapter',
      software: Boolean(info.isFallbackAdapter ?? adapter?.isFallbackAdapter),
    };
  } catch {
    return { name: 'unnamed adapter', software: false };
  }
}

function postBackend() {
  post({ type: 'backend', name: backendName, isGpu: Boolean(engine.is_gpu), software: softwareAdapter,
    note: backendNote ?? engine.gpu_note ?? null });
}

// ---- a lost WebGPU device: carry on on the CPU ------------------------------------------------

const devices = new Set();  // the WebGPU devices in use (wgpu asks for them through this realm's navigator.gpu)
const lossWaiters = new Set();  // called when a device loss is seen
/** Waits until a device loss is seen (an error may arrive just before its device's `lost`), at
 *  most `ms`: an error that was no device loss is reported after `ms`, one that was, at once. */
const lossOr = (ms) => new Promise((resolve) => {
  const done = () => { lossWaiters.delete(done); resolve(); };
  lossWaiters.add(done);
  setTimeout(done, ms);
});
const gpu = { buffers: 0, bytes: 0 };  // GPU buffers created and not yet destroyed
const bufferSizes = new WeakMap();

/** Watches the devices wgpu requests (so a loss is seen at once) and counts their buffers. */
function watchGpu() {
  const adapter = globalThis.GPUAdapter?.prototype;
  const device = globalThis.GPUDevice?.prototype;
  const buffer = globalThis.GPUBuffer?.prototype;
  if (!adapter || !device || !buffer || adapter.requestDevice.ddpmWatched) return;
  const requestDevice = adapter.requestDevice;
  adapter.requestDevice = Object.assign(async function (...args) {
    const d = await requestDevice.apply(this, args);
    devices.add(d);
    d.lost.then((info) => {
      devices.delete(d);
      if (engine?.is_gpu) recoverOnCpu(info?.message || info?.reason || 'unknown reason');
      for (const done of [...lossWaiters]) done();
    });
    return d;
  }, { ddpmWatched: true });
  const createBuffer = device.createBuffer;
  device.createBuffer = function (desc) {
    const b = createBuffer.call(this, desc);
    bufferSizes.set(b, Number(desc?.size) || 0);
    gpu.buffers += 1;
    gpu.bytes += bufferSizes.get(b);
    return b;
  };
  const destroy = buffer.destroy;
  buffer.destroy = function () {
    if (bufferSizes.has(this)) {
      gpu.buffers -= 1;
      gpu.bytes -= bufferSizes.get(this);
      bufferSizes.delete(this);
    }
    return destroy.call(this);
  };
}

/** Replaces the engine by one on the CPU with the same models and fine-tuned weights; reruns
 *  the generation in flight, and tells a fine-tuning run in flight that it stopped. */
function recoverOnCpu(why) {
  epoch += 1;
  const inFlight = current;
  current = null;
  const old = engine;
  engine = null;
  try { old?.free(); } catch { /* the old instance may have trapped */ }
  queue = Promise.resolve();  // jobs of the lost device may never settle
  why = String(why).replace(/\.$/, '');
  const note = `the WebGPU device was lost (${why}); running on the CPU now, your drawings and fine-tuned weights are kept`;
  post({ type: 'device-lost', message: note });
  enqueue({ type: 'init', preferGpu: false, note: `the WebGPU device was lost: ${why}` });
  for (const entry of loads.values()) queueLoad(entry);
  for (const [key, t] of tuned) enqueue({ type: 'load-weights', key, ...t, silent: true });
  if (inFlight?.type === 'generate') enqueue(inFlight);
  if (inFlight?.type === 'tune') {
    post({ type: 'error', where: 'tune', id: inFlight.id,
      message: `${note}. The fine-tuning run stopped; the weights from before it are kept: press Start to tune on the CPU.` });
  }
}

function stats() {
  return { wasmBytes: wasmMemory ? wasmMemory.buffer.byteLength : null, gpuBuffers: gpu.buffers, gpuBytes: gpu.bytes };
}

async function loadModel(url, sha256, report = true) {
  if (!engine) throw new Error('the engine did not start, so no model can be loaded (see the error above)');
  const onProgress = report ? (p) => post({ type: 'download', ...p, fileUrl: p.url, url }) : () => {};
  const load = async (files) => {
    if (sha256) await checkSha256(files.weights, sha256);
    const args = loadArgs(files);
    await engine.load_model(url, ...args);
    modelArgs.set(url, args);
  };
  let files = await fetchModelFiles(url, { onProgress, useCache: true });
  try {
    await load(files);
  } catch (err) {
    if (!files.list.some((f) => f.cached)) throw err;
    // Something read from Cache Storage did not load: drop it and fetch afresh once.
    await forgetInCache(files.list);
    files = await fetchModelFiles(url, { onProgress, useCache: false });
    await load(files);
  }
  await commitToCache(files.list);
  const info = JSON.parse(engine.model_info(url));
  const texts = { config: decode(files.config.bytes), scheduler: files.scheduler.bytes ? decode(files.scheduler.bytes) : null };
  return { type: 'ready', url, info, layout: files.layout, cached: files.list.every((f) => f.cached), texts };
}

const decode = (bytes) => new TextDecoder().decode(bytes);

/** Refuses a weights file whose SHA-256 is not `expected` (64 hex digits). */
async function checkSha256({ url, bytes }, expected) {
  const want = String(expected).trim().toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(want)) throw new Error(`sha256 "${expected}" is not 64 hexadecimal digits`);
  if (!globalThis.crypto?.subtle) {
    throw new Error(`${url}: the sha256 cannot be checked here (no crypto.subtle: the page is not https or localhost)`);
  }
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  const got = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
  if (got !== want) throw new Error(`${url}: sha256 mismatch: expected ${want}, the file has ${got}; the weights were refused`);
}

function loadArgs({ config, scheduler, weights }) {
  return [config.url, decode(config.bytes), scheduler.url, scheduler.bytes ? decode(scheduler.bytes) : null, weights.url, weights.bytes];
}

const isCancelled = (id) => cancelled.has(id);
const nextTask = () => new Promise((resolve) => setTimeout(resolve, 0));

async function generate(msg, mine) {
  const { id, model, n, sampler, steps, eta, seed, previewEvery, first = 0, cols = 0, workers, cpuOnSoftware } = msg;
  const engine = engineOf(mine);
  const live = () => mine === epoch;  // false once a lost device replaced the engine
  if (isCancelled(id)) return post({ type: 'cancelled', id, done: 0, total: steps });
  const t0 = performance.now();
  const times = [];  // end times of the last steps, for a steps/s that forgets shader compilation
  const progress = (done, total) => {
    times.push(performance.now());
    if (times.length > 11) times.shift();
    post({ type: 'progress', id, done, total, ...rate(done, total, t0, times) });
  };
  const preview = (done, total, xt, x0) => {
    if (xt || x0) post({ type: 'preview', id, done, total, xt, x0 }, buffers([xt, x0].filter(Boolean).map((f) => f.rgba)));
  };
  const finish = ({ images, width, height, done, total, cpu = false }, ran = 1) =>
    post({ type: 'done', id, images, width, height, ms: performance.now() - t0, done, total, workers: ran, cpu }, buffers(images));
  const gridCols = wasmGlue.preview_columns(n);
  const parts = first > 0 ? null
    : !engine.is_gpu ? planParts(n, gridCols, workers)
    : softwareAdapter && cpuOnSoftware ? planParts(n, gridCols, workers, 1) : null;  // even one CPU worker beats it
  if (parts) {
    engine.start(String(model), n, sampler, steps, eta, seed >>> 0, 0, 0);  // refuses a bad request as a whole
    engine.cancel();
    const r = await runParts(msg, parts, gridCols, setupOf, { onProgress: progress, onPreview: preview });
    if (!live()) return;
    if (r) return r.cancelled ? post({ type: 'cancelled', id, done: r.done, total: r.total }) : finish({ ...r, cpu: engine.is_gpu }, parts.length);
    // no helper could run it: on this engine, as below
  }
  await engine.start(String(model), n, sampler, steps, eta, seed >>> 0, first, cols);
  const every = Math.max(1, Math.floor(previewEvery) || 1);
  let done = 0;
  let total = steps;
  try {
    while (done < total) {
      if (isCancelled(id)) {
        engine.cancel();
        return post({ type: 'cancelled', id, done, total });
      }
      const wanted = (done + 1) % every === 0 || done + 1 >= total;
      const r = await engine.step(wanted);
      if (!live()) return;
      if (r === undefined || r === null) break;
      done = Number(field(r, 'done'));
      total = Number(field(r, 'total'));
      progress(done, total);
      if (wanted) preview(done, total, frame(field(r, 'x_t')), frame(field(r, 'x0')));
      free(r);
      await nextTask();  // lets a 'cancel' message in
    }
    const out = await engine.result();
    if (!live()) return;
    const result = { images: Array.from(field(out, 'images'), toBytes), width: field(out, 'width'), height: field(out, 'height'), done, total };
    free(out);
    finish(result);
  } catch (err) {
    if (live()) try { engine.cancel(); } catch { /* already dropped */ }
    throw err;
  }
}

/** What loads the model `key` into a helper engine: [key, message] pairs, a fine-tuned model's
 *  base first (cpu-pool.js). */
function setupOf(key) {
  const t = tuned.get(key);
  if (t) return [...setupOf(t.base), [key, { type: 'load-weights', key, base: t.base, name: t.name, bytes: t.bytes }]];
  const args = modelArgs.get(key);
  if (!args) throw new Error(`no files kept for the model "${key}"`);
  return [[key, { type: 'load-args', key, args }]];
}

/** The engine of the jobs of `mine` (throws when it did not start). */
function engineOf(mine) {
  if (!engine || mine !== epoch) throw new Error('the engine did not start');
  return engine;
}

/** Steps/s over the last steps (forgetting shader compilation) and the time left. */
function rate(done, total, t0, times) {
  const span = times.length > 1 ? times[times.length - 1] - times[0] : times[0] - t0;
  const count = times.length > 1 ? times.length - 1 : 1;
  const stepsPerSec = span > 0 ? (1000 * count) / span : 0;
  const etaSec = stepsPerSec > 0 ? (total - done) / stepsPerSec : null;
  return { stepsPerSec, etaSec };
}

// ---- fine-tuning and weights ----------------------------------------------------------------

/** Fine-tunes the model `base` on `n` RGBA images; the weights reached go under `key`. On the
 *  CPU, each step's batch is shared with helper workers where it can be (`workers` caps them). */
async function tune(msg, mine) {
  const { id, base, key = 'tuned', rgba, n, lr, seed, steps, batch, readEvery, workers, onGpu } = msg;
  const engine = engineOf(mine);
  tuneStop = false;
  const bytes = toBytes(rgba);
  engine.tune_start(String(base), bytes, n, lr, seed >>> 0);  // refuses a bad request before any helper starts
  if (engine.is_gpu && softwareAdapter && !onGpu) {
    // the adapter emulates a GPU on the CPU, ~35x slower at training than the CPU workers
    engine.tune_end();
    const done = await delegateTune({ ...msg, key: String(key) }, () => setupOf(String(base)),
      (m) => post({ ...m, cpu: true }));
    if (done) return mine === epoch ? keepTuned(engine, done, String(base), String(key)) : undefined;
    engine.tune_start(String(base), bytes, n, lr, seed >>> 0);  // no helper: on this engine after all
  }
  const shards = engine.is_gpu ? 0 : planShards(batch, workers);
  const team = shards ? await tuneTeam(shards - 1, () => setupOf(String(base)), { base: String(base), rgba: bytes, n, lr, seed }) : null;
  const ran = team ? shards : 1;
  const t0 = performance.now();
  const times = [];
  const every = Math.max(1, Math.floor(readEvery) || 1);
  let step = 0;
  try {
    while (step < steps && !tuneStop && mine === epoch) {
      const read = (step + 1) % every === 0 || step + 1 === steps;
      const loss = team ? await sharedStep(engine, team, batch, shards) : await engine.tune_step(batch, read);
      if (mine !== epoch) return;
      step += 1;
      times.push(performance.now());
      if (times.length > 11) times.shift();
      if (read) {
        if (!Number.isFinite(loss)) throw new Error(`the loss became ${loss} at step ${step}: lower the learning rate`);
        post({ type: 'tune-progress', id, step, total: steps, loss, workers: ran, ...rate(step, steps, t0, times) });
      }
      await nextTask();  // lets 'tune-stop' in
    }
    engine.tune_save(String(key));
  } finally {
    team?.end();
    if (mine === epoch) engine.tune_end();
  }
  const weights = toBytes(await engine.export_weights(String(key)));
  if (mine !== epoch) return;
  tuned.set(String(key), { base: String(base), name: 'fine-tuned weights', bytes: weights.slice() });
  forgetModel(String(key));
  post({ type: 'tuned', id, key, steps: step, stopped: step < steps, workers: ran, weights }, [weights.buffer]);
}

/** Takes the weights that a fine-tuning run on the CPU workers reached (its 'tuned' message)
 *  into this engine under `key`, and passes the message on. */
function keepTuned(engine, done, base, key) {
  const weights = toBytes(done.weights);
  engine.load_weights(key, base, 'fine-tuned weights', weights);
  tuned.set(key, { base, name: 'fine-tuned weights', bytes: weights.slice() });
  forgetModel(key);
  post({ ...done, cpu: true, weights }, [weights.buffer]);
}

/** One fine-tuning step shared with the helpers of `team`, this engine taking shard 0: all
 *  apply the sum of the shards' gradients. Resolves to the step's loss. */
async function sharedStep(engine, team, batch, shards) {
  const others = team.shard(batch, shards);
  others.catch(() => {});  // awaited below, after this engine's own shard
  const parts = [await engine.tune_shard(batch, 0, shards), ...(await others)];
  team.apply(engine.tune_apply(parts.map(([gradient]) => gradient)));
  return parts.reduce((sum, [, loss]) => sum + loss, 0);
}

function loadWeights({ id, key, base, name, bytes, silent }) {
  if (!engine) throw new Error('the engine did not start');
  bytes = toBytes(bytes);
  engine.load_weights(String(key), String(base), String(name), bytes);
  tuned.set(String(key), { base: String(base), name: String(name), bytes });
  forgetModel(String(key));
  if (!silent) post({ type: 'weights-loaded', id, key });
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
  const prefix = new URL(prefixIn.endsWith('/') ? prefixIn : `${prefixIn}/`, import.meta.url).href;
  const cache = useCache ? await openCache() : null;
  const list = [];
  const get = async (name, allow404) => {
    const file = await getFile(new URL(name, prefix).href, name, { cache, allow404, onProgress });
    list.push(file);
    return file;
  };
  // A folder with only diffusers' older diffusion_pytorch_model.bin (a pickle, which a page
  // should not unpickle) gets an error that says how to convert it.
  const getWeights = async (name) => {
    const file = await get(name, true);
    if (file.bytes) return file;
    const bin = new URL(name.replace(/safetensors$/, 'bin'), prefix).href;
    const head = await fetch(bin, { method: 'HEAD' }).catch(() => null);
    throw new Error(`${file.url}: ${httpStatus(file.status)}` + (head?.ok
      ? `; the folder has ${bin} instead, PyTorch's pickle format, which the page does not read: ` +
        'convert it once with `ddpm convert --model DIR --out NEW_DIR` (or diffusers\' ' +
        'save_pretrained(..., safe_serialization=True)) and point the page at the new folder'
      : ''));
  };
  const flatConfig = await get('config.json', true);
  if (flatConfig.bytes) {
    const scheduler = await get('scheduler_config.json', true);
    const weights = await getWeights('diffusion_pytorch_model.safetensors');
    return { prefix, layout: 'flat', config: flatConfig, scheduler, weights, list };
  }
  const index = await get('model_index.json', true);
  if (!index.bytes) {
    const refused = [flatConfig, index].some((f) => f.status === 403);
    throw new Error(`${flatConfig.url}: ${httpStatus(flatConfig.status)} (and ${index.url}: ${httpStatus(index.status)}): ` +
      `there is no diffusers model at ${prefix}${refused ? ', or the server refuses access to it (a private repository?)' : ''}`);
  }
  const config = await get('unet/config.json', false);
  const scheduler = await get('scheduler/scheduler_config.json', true);
  const weights = await getWeights('unet/diffusion_pytorch_model.safetensors');
  return { prefix, layout: 'pipeline', config, scheduler, weights, list };
}

const httpStatus = (status) => `HTTP ${status} ${STATUS_TEXT[status] || ''}`.trimEnd();

/**
 * One file, from Cache Storage when there, else from the network: {url, name, bytes|null, cached,
 * status}. With `allow404` a missing file is bytes: null; a 403 counts as missing too (S3 and
 * other object stores answer 403 for a key that does not exist).
 */
async function getFile(url, name, { cache, allow404, onProgress }) {
  const report = (loaded, total, cached) => onProgress({ file: name, url, loaded, total, cached });
  const missing = (cached, status) => {
    if (allow404) return { url, name, bytes: null, cached, status };
    throw new Error(`${url}: ${httpStatus(status)}`);
  };
  const hit = cache ? await cache.match(url).catch(() => undefined) : undefined;
  if (hit) {
    if (hit.status === 404) return missing(true, 404);
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
  if (resp.status === 404 || (allow404 && resp.status === 403)) return missing(false, resp.status);
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
    return globalThis.caches ? await globalThis.caches.open(CACHE_NAME) : null;
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
    return globalThis.caches ? await globalThis.caches.delete(CACHE_NAME) : false;
  } catch {
    return false;
  }
}
