// The engine's host: owns the wasm Engine and answers messages, one job at a time on it. Its
// parts: this file (the protocol, the job queue, starting the engine, carrying on on the CPU after
// a device loss), jobs.js (the jobs), model-files.js (downloads and Cache Storage), gpu-watch.js
// (the WebGPU devices). It runs in a Web Worker (worker.js) or, where a page's
// Content-Security-Policy forbids the worker, on the page itself.
//
// In:  {type:'init', preferGpu, testHooks?, gpuMaxBuffer?, warmOnSoftware?} {type:'load', url, sha256?, maxBytes?} {type:'generate', id, model, n, sampler, steps,
//      eta, seed, previewEvery, workers?, first?, cols?, cpuOnSoftware?, from?} (from: {image, strength} for SDEdit, {toSeed, count}
//      for an interpolation: Engine.start) {type:'cancel', id?} {type:'clear-cache'}
//      {type:'load-args', id, key, args} (a model's files as another host read them: cpu-pool.js)
//      {type:'tune', id, base, rgba, n, lr, seed, steps, batch, readEvery, workers?, onGpu?} {type:'tune-stop'}
//      {type:'tune-start', id, base, rgba, n, lr, seed} {type:'tune-shard', id, batch, shard, shards}
//      {type:'tune-apply', parts} {type:'tune-end'} (a helper's share of a fine-tuning run: cpu-pool.js)
//      {type:'load-weights', id, key, base, name, bytes} {type:'drop', key}
//      {type:'forward', id, model, image, n, t, seed} (<ddpm-forward>: x_0, RGBA, noised to the paper's t, the model's eps there)
//      {type:'schedule', id, name, config} (a scheduler_config.json's curves, for <ddpm-schedule>; needs no 'init')
//      {type:'stats'} {type:'lose-device'} (destroys the WebGPU device, as a lost GPU would): test hooks,
//      answered only after an 'init' with testHooks: true (which also counts the GPU buffers in 'stats')
// Out: {type:'backend', name, isGpu, software, note, limits} (limits: fine-tuning's {maxImages, maxBatch})
//      {type:'download', url, file, loaded, total, cached, bytesPerSec?, etaSec?, attempt?, converting?}
//      {type:'ready', url, info, layout, cached} {type:'progress', id, done, total, stepsPerSec, etaSec}
//      {type:'preview', id, done, total, xt, x0} {type:'done', id, images, width, height, ms, workers, cpu}
//      {type:'cancelled', id, done, total} {type:'cache-cleared', deleted}
//      {type:'tune-progress', id, step, total, loss, stepsPerSec, etaSec, workers, cpu?}
//      {type:'tuned', id, key, steps, stopped, workers, cpu?, weights} {type:'tune-started', id}
//      {type:'tune-gradient', id, gradient, loss} {type:'weights-loaded', id, key} {type:'loaded', id}
//      {type:'error', where, id, url, message, tooLarge?: {file, bytes}} {type:'stats', wasmBytes, warmed, gpuBuffers, gpuBytes}
//      {type:'device-lost', message} {type:'schedule', id, curves: {T, beta, alpha_bar, log_snr, beta_tilde}}
//      {type:'forward-view', id, t, sqrtAlphaBar, sqrtOneMinusAlphaBar, snr, frames: {x0, x_t, eps, eps_hat, x0_hat}, values: {the same}}
// Models are keyed by their absolute URL prefix; a fine-tuned model by the key the page gives.
// On the CPU, a batch is split across helper workers where it can be (cpu-pool.js; `workers`
// caps them, 1 keeps it on this engine), and so is each fine-tuning step's batch. On a software
// WebGPU adapter, fine-tuning runs on the CPU workers (`cpu: true` in its messages) unless
// `onGpu`, and so does a generation marked `cpuOnSoftware` (fine-tuning's before / after).
// On WebGPU, a model's kernels are compiled while its weights download (jobs.js, Engine.warm).
// When the WebGPU device is lost, a new engine starts on the CPU, reloads every model and
// fine-tuned weights it had, and reruns the generation that was in flight.

import { adapterInfo, enableTestHooks, gpuBuffers, lossOr, loseDevices, testHooksOn, watchGpu } from './gpu-watch.js';
import * as jobs from './jobs.js';
import { TooLarge, clearModelCache } from './model-files.js';
import { describeError, host } from './state.js';

const PKG = '../../pkg/';  // the wasm-pack output, relative to this file (`make dist` rewrites it)
let gpuMaxBufferHook = null;

let queue = Promise.resolve();  // jobs run one after another on the one engine
const loads = new Map();        // `url sha256` -> {url, sha256, answer, settle, ready} (one download per model)
let backendName = '';
let backendNote = null;

/** Starts a host that answers through `send(message, transfer)`; returns its message handler. */
export function createHost(send) {
  host.post = send;
  watchGpu((why) => { if (host.engine?.is_gpu) recoverOnCpu(why); });
  return (msg) => {
    msg = msg || {};
    if (msg.type === 'cancel') return jobs.cancelGenerate(msg.id);  // at once, also while a step is in flight
    if (msg.type === 'tune-stop') return jobs.stopTuning();
    if (msg.type === 'generate') jobs.generateReceived(msg.id);
    if (msg.type === 'load') return void loadOnce(msg.url, msg.sha256, msg.maxBytes);
    if (msg.type === 'stats' || msg.type === 'lose-device') return testHook(msg);
    if (msg.type === 'schedule') return void scheduleCurves(msg);
    enqueue(msg);
  };
}

const WHERE = { init: 'init', generate: 'generate', tune: 'tune', 'load-weights': 'weights', forward: 'forward' };

function enqueue(msg) {
  const job = queue.then(() => handle(msg));
  queue = job.catch(() => {});
  return job;
}

async function handle(msg) {
  const mine = host.epoch;
  host.current = msg;
  try {
    switch (msg.type) {
      case 'init':
        if (msg.testHooks) enableTestHooks();
        // A smaller largest GPU buffer than the adapter's, so tests can split batches and refuse models.
        if (msg.testHooks && msg.gpuMaxBuffer) gpuMaxBufferHook = Number(msg.gpuMaxBuffer);
        // The warm-up on a software adapter too, so tests on SwiftShader can see it.
        if (msg.testHooks && msg.warmOnSoftware) host.warmOnSoftware = true;
        return await initEngine(msg.preferGpu !== false, msg.note);
      case 'generate': return await jobs.generate(msg, mine);
      case 'clear-cache': return host.post({ type: 'cache-cleared', deleted: await clearModelCache() });
      case 'tune': return await jobs.tune(msg, mine);
      case 'tune-start': return jobs.tuneStart(msg, mine);
      case 'tune-shard': return await jobs.tuneShard(msg, mine);
      case 'tune-apply': return jobs.tuneApply(msg, mine);
      case 'tune-end': return jobs.tuneEnd();
      case 'load-weights': return jobs.loadWeights(msg, mine);
      case 'load-args': return jobs.loadArgs(msg, mine);
      case 'drop': return jobs.drop(msg.key);
      case 'forward': return await jobs.forward(msg, mine);
      default: throw new Error(`engine host: unknown message type ${JSON.stringify(msg.type)}`);
    }
  } catch (err) {
    if (host.engine?.is_gpu) await lossOr(300);  // if the device was lost, its recovery takes over
    if (mine !== host.epoch) return;
    host.post({ type: 'error', where: WHERE[msg.type] || 'load', id: msg.id, message: describeError(err) });
  } finally {
    if (mine === host.epoch) host.current = null;
    if (msg.type === 'generate' && mine === host.epoch) jobs.generateEnded(msg.id);
  }
}

/** 'stats' and 'lose-device', for tests: refused unless the engine started with testHooks. */
function testHook(msg) {
  if (!testHooksOn()) {
    return host.post({ type: 'error', where: 'test-hook', message: `engine host: '${msg.type}' is a test hook: send 'init' with testHooks: true first` });
  }
  if (msg.type === 'lose-device') return loseDevices();
  host.post({ type: 'stats', wasmBytes: host.memory ? host.memory.buffer.byteLength : null, warmed: host.warmed, ...gpuBuffers() });
}

/** Loads each model URL once; a later request gets the same answer (ready or error) again.
 *  With `sha256`, the weights file must have that digest; a file over `maxBytes` is not
 *  downloaded: the error says its size (tooLarge), and a request with a larger limit goes on. */
function loadOnce(url, sha256, maxBytes = Infinity) {
  url = String(url);
  const key = `${url} ${sha256 ?? ''}`;
  let entry = loads.get(key);
  if (!entry) {
    let settle;
    const answer = new Promise((resolve) => { settle = resolve; });
    entry = { key, url, sha256, maxBytes: Number(maxBytes ?? Infinity), answer, settle, ready: false };
    loads.set(key, entry);
    queueLoad(entry);
  }
  entry.answer.then((msg) => host.post(msg));
}

/** Loads `entry` into the engine after the jobs already queued; a reload after a device loss
 *  (entry.ready) says nothing unless it fails. */
function queueLoad(entry) {
  const mine = host.epoch;
  const job = queue.then(() => jobs.loadModel(entry.url, entry.sha256, !entry.ready, entry.ready ? Infinity : entry.maxBytes)).then((msg) => {
    if (mine !== host.epoch) return;
    entry.ready = true;
    entry.settle(msg);
  }, (err) => {
    if (mine !== host.epoch) return;
    const msg = { type: 'error', where: 'load', url: entry.url, message: describeError(err),
      ...(err instanceof TooLarge ? { tooLarge: { file: err.file, bytes: err.bytes } } : {}) };
    loads.delete(entry.key);  // a later request tries again
    if (entry.ready) host.post(msg);
    else entry.settle(msg);
  });
  queue = job;
}

/** The wasm instance of this epoch (started once per epoch: a fresh one after a device loss). */
let glueLoad = null;  // {epoch, promise}
function loadGlue() {
  if (glueLoad?.epoch !== host.epoch) {
    const load = { epoch: host.epoch, promise: startGlue() };
    load.promise.catch(() => { if (glueLoad === load) glueLoad = null; });  // a later request tries again
    glueLoad = load;
  }
  return glueLoad.promise;
}

async function startGlue() {
  const jsUrl = new URL(`${PKG}ddpm_web.js`, import.meta.url);
  if (host.epoch > 0) jsUrl.searchParams.set('engine', String(host.epoch));  // a fresh wasm instance after a device loss
  let wasm;
  try {
    wasm = await import(jsUrl.href);
  } catch (err) {
    throw new Error(`${jsUrl.href}: could not load the WebAssembly glue module (${describeError(err)}). ` +
      'Is pkg/ built? Run `make build-web`.');
  }
  const wasmUrl = new URL(`${PKG}ddpm_web_bg.wasm`, import.meta.url);
  try {
    host.memory = (await wasm.default({ module_or_path: wasmUrl })).memory;
    host.glue = wasm;
  } catch (err) {
    throw new Error(`${wasmUrl.href}: could not load the WebAssembly module (${describeError(err)})`);
  }
  return wasm;
}

/** A schedule's curves (<ddpm-schedule>): pure math on the wasm module, no engine (so no GPU)
 *  needed, and outside the job queue (it takes a millisecond). */
async function scheduleCurves({ id, name, config }) {
  try {
    const curves = (await loadGlue()).schedule_curves(String(name), String(config));
    const arrays = ['beta', 'alpha_bar', 'log_snr', 'beta_tilde'].map((k) => curves[k].buffer);
    host.post({ type: 'schedule', id, curves }, arrays);
  } catch (err) {
    host.post({ type: 'error', where: 'schedule', id, message: describeError(err) });
  }
}

async function initEngine(preferGpu, note = null) {
  if (host.engine) return postBackend();
  const wasm = await loadGlue();
  const engine = host.engine = await wasm.Engine.create(preferGpu);
  backendName = String(engine.backend ?? '');
  backendNote = note;
  host.softwareAdapter = false;
  if (engine.is_gpu) {
    const adapter = await adapterInfo();
    backendName += `: ${adapter.name}`;
    host.softwareAdapter = adapter.software;
    host.gpuMaxBuffer = testHooksOn() && gpuMaxBufferHook ? gpuMaxBufferHook : adapter.maxBuffer;
  }
  postBackend();
}

function postBackend() {
  const { engine } = host;
  const [maxImages, maxBatch] = host.glue.tune_limits();  // the page checks them before it asks
  host.post({ type: 'backend', name: backendName, isGpu: Boolean(engine.is_gpu), software: host.softwareAdapter,
    note: backendNote ?? engine.gpu_note ?? null, limits: { maxImages, maxBatch } });
}

/** Replaces the engine by one on the CPU with the same models and fine-tuned weights; reruns
 *  the generation in flight, and tells a fine-tuning run in flight that it stopped. */
function recoverOnCpu(why) {
  host.epoch += 1;
  const inFlight = host.current;
  host.current = null;
  const old = host.engine;
  host.engine = null;
  try { old?.free(); } catch { /* the old instance may have trapped */ }
  queue = Promise.resolve();  // jobs of the lost device may never settle
  why = String(why).replace(/\.$/, '');
  const note = `the WebGPU device was lost (${why}); running on the CPU now, your drawings and fine-tuned weights are kept`;
  host.post({ type: 'device-lost', message: note });
  enqueue({ type: 'init', preferGpu: false, note: `the WebGPU device was lost: ${why}` });
  for (const entry of loads.values()) queueLoad(entry);
  for (const [key, t] of [...jobs.tunedWeights()]) enqueue({ type: 'load-weights', key, ...t, silent: true });
  if (inFlight?.type === 'generate') enqueue(inFlight);
  if (inFlight?.type === 'tune') {
    host.post({ type: 'error', where: 'tune', id: inFlight.id,
      message: `${note}. The fine-tuning run stopped; the weights from before it are kept: press Start to tune on the CPU.` });
  }
}
