// A generation on the CPU split across helper workers. burn's CPU backend runs one thread per
// wasm instance, so the engine host (host.js) hands the rows of a batch's grid to
// helpers, each one more engine host in its own worker, generating images first..first+m of
// the same seed: the images are the ones a single engine makes (src/noise.rs), only sooner on
// a machine with several cores. Each helper previews its band of the whole grid; the bands
// stack into it. Fine-tuning shares each step's batch the same way (tuneTeam): every worker
// takes a shard, and all apply the sum of the shards' gradients. Where no helper can start (no
// nested workers, a Content-Security-Policy), the host runs the whole batch on its own engine:
// the same images, on one core.

import { concatBytes } from '../util.js';
import { startWorker } from './client.js';

// Each helper holds its own wasm instance and copy of the model: ~35 MB for the MNIST model
// (49 MB while making 16 images), so a phone reporting 8 cores still gets at most 4.
const MAX_HELPERS = 4;
const START_MS = 30_000;  // a helper that has not said hello by then never will
const helpers = [];       // {post, listeners, models: Set of keys loaded, ready: Promise}
let unavailable = false;  // a helper failed to start: one engine from then on
const running = new Map();  // job id -> cancel()

/** The parts ({first, n}) of n images previewed in `cols` columns, whole rows each, over at
 *  most `workers` helpers (default: one per core); null when fewer than `fewest` would run. */
export function planParts(n, cols, workers, fewest = 2) {
  const want = wanted(workers);
  const rows = Math.ceil(n / cols);
  const k = Math.min(want, rows, MAX_HELPERS);
  if (k < Math.max(1, fewest)) return null;
  const parts = [];
  let row = 0;
  for (let j = 0; j < k; j++) {
    const r = Math.floor(rows / k) + (j < rows % k ? 1 : 0);
    const first = row * cols;
    parts.push({ first, n: Math.min(r * cols, n - first) });
    row += r;
  }
  return parts;
}

/** How many workers to use: `workers` when given, else one per core; 0 where helpers cannot run
 *  (the page's own thread, or one failed to start before). */
function wanted(workers) {
  if (unavailable || typeof WorkerGlobalScope === 'undefined') return 0;
  return Number.isFinite(workers) && workers > 0 ? Math.floor(workers) : navigator.hardwareConcurrency || 1;
}

/** The shards of each fine-tuning step on the CPU: this engine and its helpers share a step's
 *  batch, one shard each, at least one image per shard; 0 when fewer than two would run. */
export function planShards(batch, workers) {
  const k = Math.min(wanted(workers), batch, MAX_HELPERS);
  return k < 2 ? 0 : k;
}

/** Starts fine-tuning on helpers 0..count-1, shards 1..count of each step (the calling engine
 *  is shard 0): `setup()` lists what loads the base model (as for runParts), `start` is the
 *  'tune-start' message (each helper is seeded alike, so all draw the same batches). Resolves
 *  to {shard(batch, shards) -> Promise of [gradient, loss] per helper, apply(total), end()},
 *  or null when the helpers could not start (the caller then tunes on its own engine). */
export async function tuneTeam(count, setup, start) {
  const team = Array.from({ length: count }, (_, j) => helper(j));
  try {
    await Promise.all(team.map((h) => h.ready));
    await Promise.all(team.map((h) => load(h, setup())));
    await Promise.all(team.map((h) => ask(h, { ...start, type: 'tune-start', rgba: start.rgba.slice() }, 'tune-started')));
  } catch (err) {
    unavailable = true;
    team.forEach((h) => h.post({ type: 'tune-end' }));
    console.warn(`fine-tuning on one engine from now on: ${err.message}`);
    return null;
  }
  return {
    shard: (batch, shards) => Promise.all(team.map((h, j) =>
      ask(h, { type: 'tune-shard', batch, shard: j + 1, shards }, 'tune-gradient').then((m) => [m.gradient, m.loss]))),
    // the sum of the shards' gradients; the last helper takes the buffer itself
    apply: (total) => team.forEach((h, j) =>
      j === team.length - 1 ? h.post({ type: 'tune-apply', parts: [total] }, [total.buffer]) : h.post({ type: 'tune-apply', parts: [total] })),
    end: () => team.forEach((h) => h.post({ type: 'tune-end' })),
  };
}

/** Runs the fine-tuning job `msg` on helper 0 as a whole (it shares each step with helpers of
 *  its own), for a host whose engine is slow at training (a software WebGPU adapter).
 *  `setup()` lists what loads the base model; onProgress gets the helper's 'tune-progress'
 *  messages. Resolves to its 'tuned' message, or null when it could not start (the caller
 *  then tunes on its own engine); rejects on its error. `stopTune()` stops it. */
export async function delegateTune(msg, setup, onProgress) {
  const h = helper(0);
  let stopped = false;
  stopDelegated = () => {
    stopped = true;
    h.post({ type: 'tune-stop' });
  };
  try {
    await h.ready;
    await load(h, setup());
  } catch (err) {
    unavailable = true;
    stopDelegated = () => {};
    console.warn(`fine-tuning on this engine: ${err.message}`);
    return null;
  }
  const progress = listen(h, (m) => { if (m.type === 'tune-progress' && m.id === msg.id) onProgress(m); });
  try {
    const answer = ask(h, msg, 'tuned', msg.id);
    if (stopped) h.post({ type: 'tune-stop' });  // Stop pressed while the helper started
    return await answer;
  } finally {
    progress();
    stopDelegated = () => {};
    h.models.delete(String(msg.key));  // it now holds the new weights under that key: reload when asked
  }
}

let stopDelegated = () => {};

/** Stops a fine-tuning run that delegateTune handed to a helper, if one runs. */
export function stopTune() {
  stopDelegated();
}

/** Stops the job `id` on its helpers, if it runs on them. */
export function cancelParts(id) {
  for (const [jobId, cancel] of running) if (id === undefined || id === jobId) cancel();
}

/** Drops the model `key` from the helpers (it changed or was dropped; the next run reloads it). */
export function forgetModel(key) {
  for (const h of helpers) {
    if (h.models.delete(key)) h.post({ type: 'drop', key });
  }
}

/** Runs the generate job on one helper per part. `setup(key)` lists the [key, message] pairs
 *  that load a model into a helper (a fine-tuned model's base first). Calls onProgress(done,
 *  total) and onPreview(done, total, xt, x0) for the whole batch; resolves to {images, width,
 *  height, done, total}, or {cancelled: true, done, total}; null (nothing run) when the helpers
 *  could not start or load the model, so the caller runs it itself. */
export async function runParts(job, parts, cols, setup, { onProgress, onPreview }) {
  const team = parts.map((_, j) => helper(j));
  let early = false;  // cancelled while the helpers were starting
  running.set(job.id, () => { early = true; });
  try {
    await Promise.all(team.map((h) => h.ready));
    await Promise.all(team.map((h) => load(h, setup(String(job.model)))));
  } catch (err) {
    running.delete(job.id);
    unavailable = true;
    console.warn(`generating on one engine from now on: ${err.message}`);
    return null;
  }
  if (early) {
    running.delete(job.id);
    return { cancelled: true, done: 0, total: job.steps };
  }
  return new Promise((resolve, reject) => {
    const k = parts.length;
    const dones = new Array(k).fill(0);
    const ends = new Array(k).fill(null);  // each part's 'done' or 'cancelled'
    const previews = new Map();            // step -> [{xt, x0}] per part
    let total = job.steps;
    let shown = 0;
    let failed = false;
    const stops = [];
    const finish = (fn, value) => {
      stops.forEach((stop) => stop());
      running.delete(job.id);
      fn(value);
    };
    const cancel = () => team.forEach((h) => h.post({ type: 'cancel', id: job.id }));
    running.set(job.id, cancel);
    team.forEach((h, j) => stops.push(listen(h, (msg) => {
      if (msg.type === 'error' && (msg.id === job.id || msg.id === undefined)) {
        if (failed) return;
        failed = true;
        cancel();
        return finish(reject, new Error(msg.message));
      }
      if (msg.id !== job.id || failed) return;
      if (msg.type === 'progress') {
        dones[j] = msg.done;
        total = msg.total;
        const done = Math.min(...dones);
        if (done > shown) onProgress(shown = done, total);
      } else if (msg.type === 'preview') {
        const at = previews.get(msg.done) ?? new Array(k).fill(null);
        at[j] = msg;
        previews.set(msg.done, at);
        if (at.every(Boolean)) {
          previews.delete(msg.done);
          onPreview(msg.done, msg.total, stack(at.map((p) => p.xt)), stack(at.map((p) => p.x0)));
        }
      } else if (msg.type === 'done' || msg.type === 'cancelled') {
        ends[j] = msg;
        if (!ends.every(Boolean)) return;
        if (ends.every((e) => e.type === 'done')) {
          finish(resolve, { images: ends.flatMap((e) => e.images), width: ends[0].width, height: ends[0].height, done: total, total });
        } else {
          finish(resolve, { cancelled: true, done: Math.min(...ends.map((e) => e.done)), total });
        }
      }
    })));
    parts.forEach(({ first, n }, j) => team[j].post({ ...job, type: 'generate', n, first, cols, workers: 1 }));
  });
}

/** Loads what `setup` lists into helper `h`, unless it has it; rejects on a helper's error. */
async function load(h, pairs) {
  for (const [key, msg] of pairs) {
    if (h.models.has(key)) continue;
    await ask(h, msg, msg.type === 'load-weights' ? 'weights-loaded' : 'loaded');
    h.models.add(key);
  }
}

let asked = 0;

/** Posts `msg` to helper `h` under `id` (default: a new one); resolves to its answer of type
 *  `answer`, rejects on its error. */
function ask(h, msg, answer, id = `helper-${++asked}`) {
  return new Promise((resolve, reject) => {
    const stop = listen(h, (m) => {
      if (m.type === 'error' && (m.id === id || m.id === undefined)) {
        stop();
        reject(new Error(m.message));
      }
      if (m.type === answer && m.id === id) {
        stop();
        resolve(m);
      }
    });
    h.post({ ...msg, id });
  });
}

/** Helper j, started on first use: an engine host on the CPU in a worker of its own. */
function helper(j) {
  if (helpers[j]) return helpers[j];
  const listeners = new Set();
  const h = { listeners, models: new Set(), post: () => {} };
  h.ready = new Promise((resolve, reject) => {
    let silent;
    let worker;
    try {
      worker = startWorker({
        onHello: () => {
          clearTimeout(silent);
          h.post({ type: 'init', preferGpu: false });
          resolve();
        },
        onMessage: (msg) => { for (const fn of [...listeners]) fn(msg); },
        onError: (why) => {
          const message = `a CPU helper worker failed: ${why || 'see the browser console'}`;
          reject(new Error(message));
          for (const fn of [...listeners]) fn({ type: 'error', message });
        },
      });
    } catch (err) {
      return reject(err);
    }
    h.post = (msg) => worker.postMessage(msg);
    silent = setTimeout(() => {  // e.g. a policy that blocks its script without an error event
      worker.terminate();
      reject(new Error(`a CPU helper worker did not start within ${START_MS / 1000} s`));
    }, START_MS);
  });
  helpers[j] = h;
  return h;
}

function listen(h, fn) {
  h.listeners.add(fn);
  return () => h.listeners.delete(fn);
}

/** Bands of one grid (same width, in order) as one frame. */
function stack(frames) {
  if (frames.some((f) => !f)) return null;
  return { width: frames[0].width, height: frames.reduce((sum, f) => sum + f.height, 0), rgba: concatBytes(frames.map((f) => f.rgba)) };
}
