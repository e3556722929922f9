// The "Fine-tune" panel: a dataset of drawings and uploads, fine-tuning in the engine with a live
// loss curve, before / after with the same seed, and the tuned weights kept (IndexedDB),
// downloaded (diffusers files) and loaded back. State on #tune[data-tune-state]:
// idle | tuning | comparing | done | error.

import { saveBlob as save } from './download.js';
import { createPad } from './draw.js';
import { drawRgba, etaText, samplerNamed, stepsPerSecText, wholeNumber } from '../util.js';
import * as store from './store.js';

const MAX_UPLOAD_BYTES = 10 * 1024 * 1024;
const THUMB = 112;            // stored images are THUMB x THUMB PNGs
const TUNED = 'tuned';        // the engine's key for the fine-tuned model
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const onGpu = params.get('tune') === 'gpu';  // fine-tune (and before / after) on a software WebGPU adapter too

export function initTuning({ hub, baseUrl, isGenerating, onBusy, sampleSettings }) {
  const el = {
    panel: $('tune'), pad: $('pad'), add: $('pad-add'), undo: $('pad-undo'), clear: $('pad-clear'),
    upload: $('upload'), dataset: $('dataset'), count: $('dataset-count'), steps: $('tune-steps'),
    lr: $('tune-lr'), batch: $('tune-batch'), start: $('tune-start'), stop: $('tune-stop'),
    loss: $('loss-curve'), status: $('tune-status'), error: $('tune-error'), before: $('before'),
    after: $('after'), useTuned: $('use-tuned'), download: $('download-weights'),
    loadWeights: $('load-weights'), reset: $('reset-tuned'), tunedNote: $('tuned-note'),
    files: $('weights-files'),
  };
  const pad = createPad(el.pad);
  let items = [];            // {id, blob, name, url}
  let info = null;           // the base model's {sample_size, in_channels, ...}
  let texts = null;          // its config.json and scheduler_config.json
  let tuned = null;          // {weights: Uint8Array, steps} when a tuned model is loaded
  let unusable = null;       // {weights, steps}: kept in this browser, but the engine refused them
  let job = null;            // {id, losses: [[step, loss]], total}
  let limits = null;         // what the engine's fine-tuning takes: {maxImages, maxBatch}
  let tuneSeed = 1_000_000;  // each fine-tuning run's seed
  let state = 'idle';

  const setState = (s) => {
    state = s;
    el.panel.dataset.tuneState = s;
    const busy = s === 'tuning' || s === 'comparing';
    el.start.disabled = busy || !info || items.length === 0;
    el.stop.disabled = !(s === 'tuning' || (s === 'comparing' && compare && !compare.cancelling));
    el.download.disabled = busy || !(tuned || unusable);
    el.reset.disabled = busy || !(tuned || unusable);
    if (el.download.disabled) el.files.hidden = true;
    el.loadWeights.disabled = busy || !info;
    el.useTuned.disabled = !tuned;
    if (!tuned) el.useTuned.checked = false;
    onBusy(busy);
  };
  const showError = (message) => {
    el.error.textContent = message;
    el.error.hidden = false;
  };
  const clearError = () => {
    el.error.textContent = '';
    el.error.hidden = true;
  };

  // ---- the dataset -------------------------------------------------------------------------

  const renderDataset = () => {
    el.dataset.replaceChildren(...items.map((item) => {
      const fig = document.createElement('figure');
      const img = document.createElement('img');
      img.src = item.url;
      img.alt = item.name;
      img.title = item.name;
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.textContent = '×';
      remove.setAttribute('aria-label', `remove ${item.name}`);
      remove.addEventListener('click', async () => {
        await store.removeDrawing(item.id).catch(() => {});
        URL.revokeObjectURL(item.url);
        items = items.filter((i) => i !== item);
        renderDataset();
      });
      fig.append(img, remove);
      return fig;
    }));
    el.count.textContent = `${items.length} image(s)`;
    setState(state);
  };

  const addItem = async (blob, name) => {
    if (limits && items.length >= limits.maxImages) throw new Error(`the dataset holds at most ${limits.maxImages} images`);
    let id;
    try {
      id = await store.addDrawing(blob, name);
    } catch (err) {
      showError(`${name} is used but not kept across reloads: ${err.message || err}`);
    }
    items.push({ id: id ?? `mem-${items.length}`, blob, name, url: URL.createObjectURL(blob) });
    renderDataset();
  };

  el.add.addEventListener('click', async () => {
    if (pad.isEmpty()) return showError('Draw something on the pad first.');
    clearError();
    try {
      await addItem(await pad.toBlob(THUMB), `drawing ${items.length + 1}`);
      pad.clear();
    } catch (err) {
      showError(`The drawing was not added (it stays on the pad): ${err.message || err}`);
    }
  });
  el.undo.addEventListener('click', () => pad.undo());
  el.clear.addEventListener('click', () => pad.clear());

  el.upload.addEventListener('change', async () => {
    const problems = [];
    for (const file of el.upload.files) {
      try {
        if (file.size > MAX_UPLOAD_BYTES) {
          throw new Error(`${(file.size / 1e6).toFixed(1)} MB is over the ${MAX_UPLOAD_BYTES / 1024 / 1024} MB limit per image`);
        }
        if (file.type && !['image/png', 'image/jpeg'].includes(file.type)) {
          throw new Error(`${file.type} is not a PNG or JPEG image`);
        }
        await addItem(await coverFit(file, THUMB), file.name);
      } catch (err) {
        problems.push(`${file.name}: ${err.message || err}`);
      }
    }
    el.upload.value = '';
    if (problems.length) showError(`Skipped: ${problems.join('; ')}`);
    else clearError();
  });

  // ---- fine-tuning -------------------------------------------------------------------------

  const readSettings = () => {
    const lr = Number(el.lr.value);
    if (el.lr.value.trim() === '' || !(lr > 0 && lr <= 0.01)) throw new Error(`Learning rate must be a number above 0 and at most 0.01 (got "${el.lr.value}").`);
    return { steps: wholeNumber(el.steps.value, 1, 5000, 'Steps'), batch: wholeNumber(el.batch.value, 1, limits.maxBatch, 'Batch size'), lr };
  };

  el.start.addEventListener('click', async () => {
    if (state === 'tuning' || state === 'comparing') return;
    if (isGenerating()) return showError('A generation is running: wait for it to end (or cancel it), then press Start.');
    let settings;
    try {
      settings = readSettings();
      if (items.length === 0) throw new Error('Add a drawing or upload images first.');
    } catch (err) {
      return showError(err.message);
    }
    clearError();
    setState('tuning');
    try {
      const rgba = await modelPixels(items, info);
      job = { id: hub.newId(), losses: [], total: settings.steps };
      drawLoss();
      el.status.textContent = `fine-tuning: step 0/${settings.steps}…`;
      hub.post({
        type: 'tune', id: job.id, base: tuned ? TUNED : baseUrl, key: TUNED, rgba, n: items.length,
        lr: settings.lr, seed: tuneSeed++, steps: settings.steps, batch: settings.batch,
        readEvery: Math.max(1, Math.min(10, Math.round(settings.steps / 50))),
        workers: Number(params.get('workers')) || undefined,  // ?workers=1: one CPU worker
        onGpu,
      }, [rgba.buffer]);
    } catch (err) {
      showError(err.message || String(err));
      setState('error');
    }
  });
  el.stop.addEventListener('click', () => {
    el.stop.disabled = true;
    if (state === 'comparing' && compare) {
      compare.cancelling = true;
      for (const id of compare.pending.keys()) hub.post({ type: 'cancel', id });
      el.status.textContent = `${compare.prefix} Cancelling before / after…`;
    } else {
      hub.post({ type: 'tune-stop' });
      el.status.textContent = 'stopping after this step…';
    }
  });

  const drawLoss = () => {
    const c = el.loss;
    const ctx = c.getContext('2d');
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, c.width, c.height);
    const pts = job?.losses ?? [];
    el.loss.dataset.points = String(pts.length);
    if (pts.length === 0) return;
    const max = Math.max(...pts.map((p) => p[1]));
    const min = Math.min(...pts.map((p) => p[1]));
    const x = (s) => 30 + ((c.width - 40) * s) / job.total;
    const y = (l) => 10 + (c.height - 30) * (max === min ? 0.5 : (max - l) / (max - min));
    ctx.strokeStyle = '#888';
    ctx.strokeRect(30, 10, c.width - 40, c.height - 30);
    ctx.fillStyle = '#333';
    ctx.font = '10px sans-serif';
    ctx.fillText(max.toFixed(3), 0, 14);
    ctx.fillText(min.toFixed(3), 0, c.height - 20);
    ctx.fillText(`step ${job.total}`, c.width - 50, c.height - 5);
    ctx.strokeStyle = '#1565c0';
    ctx.lineWidth = 2;
    ctx.beginPath();
    pts.forEach(([s, l], i) => (i ? ctx.lineTo(x(s), y(l)) : ctx.moveTo(x(s), y(l))));
    ctx.stroke();
  };

  // ---- before / after ----------------------------------------------------------------------

  // The page's sampler, at most 50 steps, and DDIM in place of DDPM: DDPM-1000 would make the
  // reader wait 20x longer.
  let compare = null;  // {seed, label, prefix, cancelling, pending: Map(id -> {holder, name, model})}
  const runCompare = () => {
    const seed = Math.floor(Math.random() * 2 ** 31);
    const settings = sampleSettings();
    const sampler = settings.sampler === 'ddpm' ? 'ddim' : settings.sampler;
    const steps = Math.min(settings.steps, 50);
    const base = {
      type: 'generate', n: 4, sampler, steps, eta: settings.sampler === 'ddim' ? settings.eta : 0, seed, previewEvery: 1_000_000,
      cpuOnSoftware: !onGpu,  // on a software WebGPU adapter, where the fine-tuning ran: the CPU workers
    };
    compare = {
      seed, label: `${samplerNamed(sampler).label}, ${steps} steps, seed ${seed}`, prefix: el.status.textContent,
      pending: new Map([[hub.newId(), { holder: el.before, name: 'base', model: baseUrl }], [hub.newId(), { holder: el.after, name: 'tuned', model: TUNED }]]),
    };
    setState('comparing');
    el.before.replaceChildren();
    el.after.replaceChildren();
    for (const [id, { model }] of compare.pending) hub.post({ ...base, id, model });
    el.status.textContent = `${compare.prefix} Generating before / after (${compare.label})… (Stop cancels it)`;
  };
  const endCompare = (id, outcome) => {
    compare.pending.delete(id);
    if (compare.pending.size > 0) return;
    el.status.textContent = `${compare.prefix} ${outcome}`;
    compare = null;
    setState('done');
  };

  const keepTuned = async (weights, steps) => {
    tuned = { weights, steps };
    el.useTuned.checked = true;
    el.tunedNote.textContent = `Fine-tuned weights in use (${steps} step(s) on your images); kept in this browser.`;
    try {
      await store.putTuned(baseUrl, { weights, steps, saved: Date.now() });
    } catch (err) {
      showError(`The tuned weights work but could not be kept for the next visit: ${err.message || err}`);
    }
  };

  hub.listen((msg) => {
    if (msg.type === 'tune-progress' && msg.id === job?.id) {
      job.losses.push([msg.step, msg.loss]);
      drawLoss();
      el.status.textContent = `fine-tuning: step ${msg.step}/${msg.total} · loss ${msg.loss.toFixed(4)} · ${stepsPerSecText(msg.stepsPerSec)}` +
        (where(msg) ? ` · ${where(msg)}` : '') + ` · ETA ${etaText(msg.etaSec)}`;
    } else if (msg.type === 'tuned' && msg.id === job?.id) {
      el.status.textContent = `${msg.stopped ? 'Stopped' : 'Done'} after ${msg.steps} step(s)` +
        (where(msg) ? ` ${where(msg)}` : '') +
        (job.losses.length ? `; loss ${job.losses[0][1].toFixed(4)} → ${job.losses.at(-1)[1].toFixed(4)}.` : '.');
      keepTuned(msg.weights, (tuned?.steps ?? 0) + msg.steps).then(runCompare);
    } else if (msg.type === 'progress' && compare?.pending.has(msg.id) && !compare.cancelling) {
      el.status.textContent = `${compare.prefix} Before / after (${compare.label}): the ` +
        `${compare.pending.get(msg.id).name} model, step ${msg.done}/${msg.total}… (Stop cancels it)`;
    } else if (msg.type === 'done' && compare?.pending.has(msg.id)) {
      showGrid(compare.pending.get(msg.id).holder, msg);
      endCompare(msg.id, `Before / after: ${compare.label}${msg.cpu ? ', on the CPU workers' : ''}.`);
    } else if (msg.type === 'cancelled' && compare?.pending.has(msg.id)) {
      endCompare(msg.id, 'Before / after cancelled; the tuned weights are kept.');
    } else if (msg.type === 'weights-loaded' && msg.key === TUNED && pendingLoad?.id === msg.id) {
      keepTuned(pendingLoad.bytes, pendingLoad.steps).then(() => {
        el.status.textContent = pendingLoad.fromStore ? 'Fine-tuned weights restored from this browser.' : `Loaded ${pendingLoad.name}.`;
        pendingLoad = null;
        setState('done');
      });
    } else if (msg.type === 'error' && (msg.where === 'tune' || msg.where === 'weights' || compare?.pending.has(msg.id))) {
      let message = msg.message;
      if (msg.where === 'weights' && pendingLoad?.fromStore) {
        // Nothing the user made is dropped by an error: they stay kept, to download or reset.
        unusable = { weights: pendingLoad.bytes, steps: pendingLoad.steps };
        message = `The fine-tuned weights kept in this browser could not be loaded: ${message} ` +
          'They are still kept: "Download weights" saves them, "Reset to the base model" deletes them.';
      }
      pendingLoad = null;
      compare = null;
      showError(message);
      setState('error');
    }
  });

  // ---- weights in and out ------------------------------------------------------------------

  let pendingLoad = null;  // {id, name, bytes, steps, fromStore}
  const loadTuned = (name, bytes, steps, fromStore) => {
    pendingLoad = { id: hub.newId(), name, bytes, steps, fromStore };
    const copy = bytes.slice();  // the panel keeps `bytes` for downloads
    hub.post({ type: 'load-weights', id: pendingLoad.id, key: TUNED, base: baseUrl, name, bytes: copy }, [copy.buffer]);
  };

  // The diffusers folder's files; a browser may hold back the 2nd and 3rd download of one click,
  // so each is also offered as its own button.
  const weightFiles = () => [
    ['diffusion_pytorch_model.safetensors', () => new Blob([(tuned ?? unusable).weights], { type: 'application/octet-stream' })],
    ['config.json', () => new Blob([texts.config], { type: 'application/json' })],
    ...(texts.scheduler ? [['scheduler_config.json', () => new Blob([texts.scheduler], { type: 'application/json' })]] : []),
  ];
  el.download.addEventListener('click', () => {
    if (!(tuned || unusable) || !texts) return;
    const files = weightFiles();
    for (const [name, blob] of files) save(blob(), name);
    el.files.replaceChildren('Put these files in one folder (`ddpm sample --model FOLDER`, or diffusers). ' +
      'If your browser kept only some, save each here: ', ...files.map(([name, blob]) => {
      const b = Object.assign(document.createElement('button'), { type: 'button', textContent: name });
      b.addEventListener('click', () => save(blob(), name));
      return b;
    }));
    el.files.hidden = false;
  });
  el.loadWeights.addEventListener('change', async () => {
    const files = [...el.loadWeights.files];
    el.loadWeights.value = '';
    const weights = files.find((f) => f.name.endsWith('.safetensors'));
    if (!weights) return showError('Choose a .safetensors file (diffusion_pytorch_model.safetensors) to load.');
    clearError();
    setState('comparing');
    loadTuned(weights.name, new Uint8Array(await weights.arrayBuffer()), 0, false);
  });
  el.reset.addEventListener('click', async () => {
    hub.post({ type: 'drop', key: TUNED });
    tuned = null;
    unusable = null;
    el.tunedNote.textContent = 'Using the base model.';
    await store.deleteTuned(baseUrl).catch(() => {});
    el.status.textContent = 'Reset to the base model (the tuned weights are deleted from this browser).';
    setState('idle');
  });

  // ---- start: what this browser kept -------------------------------------------------------

  store.listDrawings().then((kept) => {
    items = kept.map((d) => ({ ...d, url: URL.createObjectURL(d.blob) })).concat(items);
    renderDataset();
  }).catch((err) => showError(`Your saved drawings could not be read: ${err.message || err}`));
  store.available().then((ok) => {
    if (!ok) el.tunedNote.textContent = 'This browser does not keep data for this page (IndexedDB is off): drawings and tuned weights last until reload.';
  });
  setState('idle');

  return {
    /** The engine started: `engineLimits` is what its fine-tuning takes, {maxImages, maxBatch}. */
    engineStarted(engineLimits) {
      limits = engineLimits;
      el.batch.max = String(limits.maxBatch);
    },
    /** The base model is loaded: fine-tuning can start, kept weights are restored. */
    async modelReady(ready) {
      info = ready.info;
      texts = ready.texts;
      setState(state);
      const kept = await store.getTuned(baseUrl).catch(() => undefined);
      if (kept?.weights && !tuned) {
        setState('comparing');
        loadTuned('tuned weights kept in this browser', new Uint8Array(kept.weights), kept.steps ?? 0, true);
      }
    },
    /** The engine key to sample with: the tuned model when chosen, else null (the base). */
    sampleKey: () => (tuned && el.useTuned.checked ? TUNED : null),
  };
}

/** An image file decoded and cover-fitted (resized, center-cropped) to a `size` square PNG. */
async function coverFit(file, size) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw new Error('not a PNG or JPEG image the browser can decode');
  }
  const c = document.createElement('canvas');
  c.width = c.height = size;
  const scale = size / Math.min(bitmap.width, bitmap.height);
  const w = bitmap.width * scale;
  const h = bitmap.height * scale;
  const g = c.getContext('2d');
  g.fillStyle = '#000';  // transparency becomes MNIST's black background, as the model will see it
  g.fillRect(0, 0, size, size);
  g.drawImage(bitmap, (size - w) / 2, (size - h) / 2, w, h);
  bitmap.close();
  return new Promise((resolve) => c.toBlob(resolve, 'image/png'));
}

/** The dataset as RGBA bytes at the model's size, one image after another. */
async function modelPixels(items, info) {
  const [h, w] = Array.isArray(info.sample_size) ? info.sample_size : [info.sample_size, info.sample_size];
  const c = document.createElement('canvas');
  c.width = w;
  c.height = h;
  const ctx = c.getContext('2d', { willReadFrequently: true });
  const out = new Uint8Array(items.length * w * h * 4);
  for (const [i, item] of items.entries()) {
    const bitmap = await createImageBitmap(item.blob);
    ctx.clearRect(0, 0, w, h);
    ctx.drawImage(bitmap, 0, 0, w, h);
    bitmap.close();
    out.set(ctx.getImageData(0, 0, w, h).data, i * w * h * 4);
  }
  return out;
}

function showGrid(holder, { images, width, height }) {
  holder.replaceChildren(...images.map((rgba) => drawRgba(document.createElement('canvas'), { width, height, rgba })));
}

/** Where a fine-tuning run ran, when not simply on the page's backend. */
function where({ workers, cpu }) {
  const on = workers > 1 ? `on ${workers} CPU workers` : cpu ? 'on the CPU' : '';
  return cpu ? `${on} (the WebGPU adapter here is a software one, far slower at training)` : on;
}
