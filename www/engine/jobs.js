// The engine host's jobs: loading a model, generating (on this engine, or split across the CPU
// helpers of cpu-pool.js), fine-tuning and fine-tuned weights, and a helper's share of either.
// Each runs on the engine of its epoch (state.js) and stays silent once a lost device replaced it.

import { cancelParts, delegateTune, forgetModel, planParts, planShards, runParts, stopTune, tuneTeam } from './cpu-pool.js';
import { loadModelFiles } from './model-files.js';
import { engineOf, host } from './state.js';

const tuned = new Map();      // key -> {base, name, bytes}: fine-tuned weights, kept to reload after a device loss
const modelArgs = new Map();  // url -> engine.load_model's arguments after the key: to load a model into a helper
const cancelled = new Set();  // ids of generate jobs to stop
let received = [];            // ids of generate jobs not yet finished
let tuneStop = false;
const post = (msg, transfer) => host.post(msg, transfer);

/** A generate job arrived: a 'cancel' without an id reaches it too. */
export function generateReceived(id) {
  received.push(id);
}

/** Stops the generate job `id` (every one when undefined), also while a step is in flight. */
export function cancelGenerate(id) {
  for (const each of id === undefined ? received : [id]) cancelled.add(each);
  cancelParts(id);
}

/** The generate job `id` ended. */
export function generateEnded(id) {
  received = received.filter((each) => each !== id);
  cancelled.delete(id);
}

/** Stops the fine-tuning run after its current step. */
export function stopTuning() {
  tuneStop = true;
  stopTune();
}

/** The fine-tuned weights kept, to load again into a new engine. */
export const tunedWeights = () => tuned.entries();

/** Loads the model folder `url` into the engine; resolves to its 'ready' message. `report`:
 *  post its download progress. `maxBytes`: the largest file to download unasked. */
export async function loadModel(url, sha256, report, maxBytes) {
  const { engine } = host;
  if (!engine) throw new Error('the engine did not start, so no model can be loaded (see the error above)');
  const onProgress = report ? (p) => post({ type: 'download', ...p, fileUrl: p.url, url }) : () => {};
  // The GPU compiles the model's kernels while its weights download (Engine.warm, which does
  // nothing on the CPU); a config the engine refuses is reported by the load itself. Not on a
  // software adapter, where the CPU runs the stand-in's forward pass as slowly as a step
  // (BENCHMARKS.md).
  let warming = null;
  const onWeightsFetch = (name, config) => {
    if (host.softwareAdapter && !host.warmOnSoftware) return;
    warming ??= engine.warm(name, config, host.gpuMaxBuffer ?? Infinity).then((eps) => { if (eps) host.warmed += 1; }, () => {});
  };
  const { args, layout, cached, texts } = await loadModelFiles(url, {
    sha256, onProgress, maxBytes, onWeightsFetch,
    load: async (a) => {
      await warming;
      engine.load_model(url, ...a);
    },
    convertBin: (file, bytes) => host.glue.bin_to_safetensors(file, bytes),
  });
  modelArgs.set(url, args);
  const info = JSON.parse(engine.model_info(url));
  return { type: 'ready', url, info, layout, cached, texts };
}

/** A model's files as another host read them (cpu-pool.js). */
export function loadArgs({ id, key, args }, mine) {
  engineOf(mine).load_model(String(key), ...args);
  modelArgs.set(String(key), args);  // a helper fine-tuning for the host shares steps with helpers of its own
  post({ type: 'loaded', id });
}

/** Drops the model (or fine-tuned weights) `key` here and from the helpers. */
export function drop(key) {
  tuned.delete(String(key));
  forgetModel(String(key));
  host.engine?.drop_model(String(key));
}

// ---- a helper's share of a fine-tuning run (cpu-pool.js) ---------------------------------------

export function tuneStart({ id, base, rgba, n, lr, seed }, mine) {
  engineOf(mine).tune_start(String(base), toBytes(rgba), n, lr, seed >>> 0);
  post({ type: 'tune-started', id });
}

export async function tuneShard({ id, batch, shard, shards }, mine) {
  const [gradient, loss] = await engineOf(mine).tune_shard(batch, shard, shards);
  post({ type: 'tune-gradient', id, gradient, loss }, [gradient.buffer]);
}

export const tuneApply = ({ parts }, mine) => void engineOf(mine).tune_apply(parts);
export const tuneEnd = () => host.engine?.tune_end();

// ---- explorable figures ----------------------------------------------------------------------

/** One step of the forward process and the model's prediction there (Engine.forward_view). */
export async function forward({ id, model, image, n, t, seed }, mine) {
  const view = await engineOf(mine).forward_view(String(model), toBytes(image), n, t, seed >>> 0);
  if (mine !== host.epoch) return;
  const arrays = Object.values(view.frames).map((f) => f.rgba).concat(Object.values(view.values));
  post({
    type: 'forward-view', id, t: view.t, sqrtAlphaBar: view.sqrt_alpha_bar,
    sqrtOneMinusAlphaBar: view.sqrt_one_minus_alpha_bar, snr: view.snr, frames: view.frames, values: view.values,
  }, buffers(arrays));
}

// ---- generating ------------------------------------------------------------------------------

const isCancelled = (id) => cancelled.has(id);
const nextTask = () => new Promise((resolve) => setTimeout(resolve, 0));

/** Samples `n` images one step at a time, previewing every `previewEvery` steps; on the CPU,
 *  the grid's rows are shared with helper workers where it can be. */
export async function generate(msg, mine) {
  const { id, model, n, sampler, steps, eta, seed, previewEvery, first = 0, cols = 0, workers, cpuOnSoftware, from } = msg;
  const engine = engineOf(mine);
  const live = () => mine === host.epoch;  // false once a lost device replaced the engine
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
  const gridCols = host.glue.preview_columns(n);
  const parts = first > 0 ? null
    : !engine.is_gpu ? planParts(n, gridCols, workers)
    : host.softwareAdapter && cpuOnSoftware ? planParts(n, gridCols, workers, 1) : null;  // even one CPU worker beats it
  engine.start(String(model), n, sampler, steps, eta, seed >>> 0, 0, 0, from);  // refuses a bad request as a whole
  engine.cancel();
  if (parts) {
    const r = await runParts(msg, parts, gridCols, setupOf, { onProgress: progress, onPreview: preview });
    if (!live()) return;
    if (r) return r.cancelled ? post({ type: 'cancelled', id, done: r.done, total: r.total }) : finish({ ...r, cpu: engine.is_gpu }, parts.length);
    // no helper could run it: on this engine, as below
  }
  const limit = engine.is_gpu && first === 0 ? gpuImagesPerCall(engine, String(model), n) : n;
  // A batch over the GPU's largest buffer runs as parts of `limit` images, one after another;
  // progress counts the steps of all of them.
  const images = [];
  let size = null;
  const calls = Math.ceil(n / limit);
  for (let at = 0, k = 0; at < n; at += limit, k++) {
    const part = Math.min(limit, n - at);
    const r = await runSteps(engine, { ...msg, n: part, first: first + at, cols: calls > 1 ? gridCols : cols }, {
      live, every: Math.max(1, Math.floor(previewEvery) || 1),
      onProgress: (done, total) => progress(k * total + done, calls * total),
      onPreview: (done, total, xt, x0) => preview(k * total + done, calls * total, xt, x0),
    });
    if (!r) return;  // the engine was replaced
    if (r.cancelled) return post({ type: 'cancelled', id, done: k * r.total + r.done, total: calls * r.total });
    images.push(...r.images);
    size = r;
  }
  finish({ images, width: size.width, height: size.height, done: calls * size.done, total: calls * size.total });
}

/** The images one UNet call on the GPU can take: as many as keep its largest tensor within the
 *  adapter's largest buffer (engine/gpu-watch.js); throws, with the sizes, when one image is over. */
function gpuImagesPerCall(engine, key, n) {
  const max = host.gpuMaxBuffer;
  if (!max) return n;
  const { image_tensor_bytes: per, sample_size: [h, w] } = JSON.parse(engine.model_info(key));
  const mb = (b) => (b >= 2 ** 20 ? `${(b / 2 ** 20).toFixed(0)} MiB` : `${(b / 2 ** 10).toFixed(0)} KiB`);
  if (per > max) {
    throw new Error(`one ${h}×${w} image of this model needs a ${mb(per)} buffer on the GPU, and this adapter's WebGPU ` +
      `allows at most ${mb(max)} in one buffer (maxStorageBufferBindingSize / maxBufferSize): it cannot run here on WebGPU; ` +
      'the CPU backend (?backend=cpu) can run it, slowly');
  }
  return Math.max(1, Math.min(n, Math.floor(max / per)));
}

/** Runs the steps of one batch (`msg`'s n images from `first`) on `engine`; resolves to
 *  {images, width, height, done, total}, {cancelled, done, total}, or null once `live()` is false. */
async function runSteps(engine, msg, { live, every, onProgress, onPreview }) {
  const { id, model, n, sampler, steps, eta, seed, first, cols, from } = msg;
  let total = engine.start(String(model), n, sampler, steps, eta, seed >>> 0, first, cols, from);
  let done = 0;
  try {
    while (done < total) {
      if (isCancelled(id)) {
        engine.cancel();
        return { cancelled: true, done, total };
      }
      const wanted = (done + 1) % every === 0 || done + 1 >= total;
      const r = await engine.step(wanted);
      if (!live()) return null;
      if (r === undefined || r === null) break;
      done = Number(field(r, 'done'));
      total = Number(field(r, 'total'));
      onProgress(done, total);
      if (wanted) onPreview(done, total, frame(field(r, 'x_t')), frame(field(r, 'x0')));
      free(r);
      await nextTask();  // lets a 'cancel' message in
    }
    const out = await engine.result();
    if (!live()) return null;
    const result = { images: Array.from(field(out, 'images'), toBytes), width: field(out, 'width'), height: field(out, 'height'), done, total };
    free(out);
    return result;
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

/** Steps/s over the last steps (forgetting shader compilation) and the time left. */
function rate(done, total, t0, times) {
  const span = times.length > 1 ? times[times.length - 1] - times[0] : times[0] - t0;
  const count = times.length > 1 ? times.length - 1 : 1;
  const stepsPerSec = span > 0 ? (1000 * count) / span : 0;
  const etaSec = stepsPerSec > 0 ? (total - done) / stepsPerSec : null;
  return { stepsPerSec, etaSec };
}

/** Fine-tunes the model `base` on `n` RGBA images; the weights reached go under `key`. On the
 *  CPU, each step's batch is shared with helper workers where it can be (`workers` caps them). */
export async function tune(msg, mine) {
  const { id, base, key = 'tuned', rgba, n, lr, seed, steps, batch, readEvery, workers, onGpu } = msg;
  const engine = engineOf(mine);
  tuneStop = false;
  const bytes = toBytes(rgba);
  engine.tune_start(String(base), bytes, n, lr, seed >>> 0);  // refuses a bad request before any helper starts
  if (engine.is_gpu && host.softwareAdapter && !onGpu) {
    // the adapter emulates a GPU on the CPU, ~35x slower at training than the CPU workers
    engine.tune_end();
    const done = await delegateTune({ ...msg, key: String(key) }, () => setupOf(String(base)),
      (m) => post({ ...m, cpu: true }));
    if (done) return mine === host.epoch ? keepTuned(engine, done, String(base), String(key)) : undefined;
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
    while (step < steps && !tuneStop && mine === host.epoch) {
      const read = (step + 1) % every === 0 || step + 1 === steps;
      const loss = team ? await sharedStep(engine, team, batch, shards) : await engine.tune_step(batch, read);
      if (mine !== host.epoch) return;
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
    if (mine === host.epoch) engine.tune_end();
  }
  const weights = toBytes(await engine.export_weights(String(key)));
  if (mine !== host.epoch) return;
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

/** Loads fine-tuned weights under `key` (`silent`: a reload after a device loss). */
export function loadWeights({ id, key, base, name, bytes, silent }, mine) {
  const engine = engineOf(mine);
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

