// The page: reads the controls, talks to the engine host (client.js: a worker that owns the
// wasm Engine) and draws what comes back. State is on <body data-state="loading|ready|generating|done|error">.
// The sampler settings live in the address too (url-state.js); where the engine runs, and how
// long a run should take, is backend-line.js's.

import { connect } from '../engine/client.js';
import { modelUrl as hubModelUrl } from '../hub.js';
import { DEFAULT_SAMPLER, SAMPLERS, defaultSteps, drawRgba, etaText, samplerNamed, stepsPerSecText, wholeNumber } from '../util.js';
import { createBackendLine } from './backend-line.js';
import { saveBlob } from './download.js';
import { initModelPicker, rememberedModel } from './models.js';
import { initTuning } from './tune.js';
import { readSettings as readAddress, writeSettings as writeAddress } from './url-state.js';

const DEFAULT_MODEL = new URL('../models/mnist/', import.meta.url).href;
const MAX_IMAGES = 64;
const $ = (id) => document.getElementById(id);
const el = {
  modelBar: $('model-bar'), modelText: $('model-text'),
  modelForm: $('model-form'), modelUrl: $('model-url'), clearCache: $('clear-cache'), error: $('error'),
  confirm: $('confirm-download'), confirmText: $('confirm-text'), confirmYes: $('confirm-yes'),
  controls: $('controls'), sampler: $('sampler'), steps: $('steps'), n: $('n'), eta: $('eta'),
  seed: $('seed'), seedRandom: $('seed-random'), hint: $('hint'), generate: $('generate'),
  cancel: $('cancel'), progress: $('progress'), progressText: $('progress-text'), status: $('status'),
  xt: $('xt'), x0: $('x0'), results: $('results'), resultsHint: $('results-hint'), downloadGrid: $('download-grid'),
  announce: $('announce'),
};
const addressed = { sampler: el.sampler, steps: el.steps, n: el.n, eta: el.eta, seed: el.seed };
// Fewer frames of the live view for visitors who ask for less motion.
const reducedMotion = matchMedia('(prefers-reduced-motion: reduce)');

const params = new URLSearchParams(location.search);
let info = null;           // model_info(): {sample_size, in_channels, params, num_train_timesteps}
let isGpu = true;
let softwareGpu = false;   // WebGPU on a fallback adapter (SwiftShader)
let modelReady = false;
let generating = false;
let engineFailed = false;
// The samplers the engine has (util.js), the default selected.
const isDefault = (x) => x.name === DEFAULT_SAMPLER;
el.sampler.replaceChildren(...SAMPLERS.map((x) => new Option(x.label, x.name, isDefault(x), isDefault(x))));
const given = readAddress(params, addressed);
let nTouched = given.has('n');
let samplerShown = el.sampler.value;
let run = null;            // the settings of the current / last run
let modelUrl = null;       // the absolute URL prefix of the model, its key in the engine
let tuning = null;         // the fine-tuning panel (tune.js)
let tuningBusy = false;    // fine-tuning (or its before/after) holds the engine
const hub = connect();
let runTimer = null;       // times the steps of the run, for the next estimate
let announced = 0;         // the last quarter of the run told to screen readers
const line = createBackendLine(hub, () => {
  try {
    return { n: wholeNumber(el.n.value, 1, MAX_IMAGES, 'Images'), steps: wholeNumber(el.steps.value, 1, 100_000, 'Steps'), sampler: el.sampler.value };
  } catch {
    return null;
  }
});

// ---- state and messages --------------------------------------------------------------------

function setState(state) {
  document.body.dataset.state = state;
  el.generate.disabled = !modelReady || generating || tuningBusy;
  el.cancel.disabled = !generating;
  el.clearCache.disabled = generating;
}

const TITLES = {
  init: 'The engine could not start',
  load: 'The model could not be loaded',
  generate: 'Generation failed',
  input: 'Check the settings',
};
const HINTS = {
  init: 'Reload the page to try again. The browser console may say more.',
  load: 'The model must be a diffusers model folder: config.json + diffusion_pytorch_model.safetensors (or .bin) ' +
    '(+ scheduler_config.json), or model_index.json with unet/ and scheduler/; or hf:OWNER/NAME on the Hub. ' +
    'Fix the model in Settings (below) and press Load.',
  generate: 'Change the settings and press Generate to try again.',
  input: '',
};

function showError(where, message) {
  const title = document.createElement('strong');
  title.textContent = TITLES[where] || 'Error';
  const text = document.createElement('p');
  text.textContent = message;
  const parts = [title, text];
  if (HINTS[where]) {
    const hint = document.createElement('p');
    hint.className = 'hint';
    hint.textContent = HINTS[where];
    parts.push(hint);
  }
  el.error.replaceChildren(...parts);
  el.error.hidden = false;
}

function clearError() {
  el.error.replaceChildren();
  el.error.hidden = true;
}

function setStepsDone(done) {
  document.body.dataset.stepsDone = String(done);
  el.progress.dataset.stepsDone = String(done);
}

const handlers = {
  backend({ name, isGpu: gpu, software, note, limits }) {
    isGpu = gpu;
    tuning?.engineStarted(limits);
    softwareGpu = gpu && software;
    line.show({ name, isGpu: gpu, software, note });
    // The CPU is about 10-50x slower than a GPU, and a software adapter slower still.
    if (!nTouched && (!gpu || softwareGpu)) el.n.value = gpu ? '1' : '4';
    if (document.body.dataset.state === 'loading') el.modelText.textContent = 'loading the model…';
    updateHint();
  },

  download({ url, file, loaded, total, cached, bytesPerSec, etaSec, attempt, converting }) {
    if (url !== modelUrl) return;
    if (cached) {
      el.modelText.textContent = `${file} ${formatBytes(loaded)} (from the cache)`;
    } else if (converting) {
      el.modelText.textContent = `converting ${file} (${formatBytes(loaded)}) to safetensors, once: a later visit loads the converted file`;
    } else {
      const speed = bytesPerSec > 0 && loaded > 0 ? `, ${(bytesPerSec / 1e6).toFixed(1)} MB/s` : '';
      const left = etaSec > 0 ? `, ${etaSec < 90 ? `${Math.ceil(etaSec)} s` : `${Math.ceil(etaSec / 60)} min`} left` : '';
      const again = attempt > 1 ? ' (the first try was cut: downloading again from the start)' : '';
      el.modelText.textContent = `downloading ${file} ${formatBytes(loaded, total)}${speed}${left}${again}`;
    }
    if (total >= LARGE_DOWNLOAD) el.status.textContent = `Downloading the model: ${el.modelText.textContent}`;
    if (total) {
      el.modelBar.max = total;
      el.modelBar.value = loaded;
    } else {
      el.modelBar.removeAttribute('value');  // indeterminate
    }
  },

  ready({ url, info: modelInfo, cached, texts }) {
    if (url !== modelUrl) return;
    info = modelInfo;
    const model = url;
    modelReady = true;
    const size = info.sample_size;
    const [h, w] = Array.isArray(size) ? size : [size, size];
    const T = info.num_train_timesteps;
    el.modelBar.max = 1;
    el.modelBar.value = 1;
    el.status.textContent = 'Ready: press Generate.';
    el.modelText.textContent = `Model ready: ${h}×${w}, ${info.in_channels} channel(s), ` +
      `${(info.params / 1e6).toFixed(2)} M parameters, T = ${T}${cached ? ', from the cache' : ''} (${model})`;
    el.steps.max = String(T);
    for (const canvas of [el.xt, el.x0]) {  // blank, at the model's aspect, until the first preview
      canvas.width = w;
      canvas.height = h;
    }
    if (Number(el.steps.value) > T) el.steps.value = String(suggestedSteps(el.sampler.value));
    // A 256-pixel model is ~20x a 32-pixel one per image: one image, and its probe times one.
    largeImages = h * w > 64 * 64;
    if (largeImages && !nTouched) el.n.value = '1';
    updateHint();
    setState('ready');
    tuning.modelReady({ url, info, texts });
    if (!run) line.probe(modelUrl);
  },

  progress({ id, done, total, stepsPerSec, etaSec }) {
    if (id !== run?.id) return;
    el.progress.max = total;
    el.progress.value = done;
    setStepsDone(done);
    runTimer?.step(done);
    el.progressText.textContent = `step ${done}/${total} · ${stepsPerSecText(stepsPerSec)} · ETA ${etaText(etaSec)}`;
    const quarter = Math.floor((4 * done) / total);
    if (quarter > announced && done < total) {
      announced = quarter;
      el.announce.textContent = `Generating: ${quarter * 25}% (step ${done} of ${total}).`;
    }
  },

  preview({ id, xt, x0 }) {
    if (id !== run?.id) return;
    if (xt) drawRgba(el.xt, xt);
    if (x0) drawRgba(el.x0, x0);
  },

  done({ id, images, width, height, ms, workers }) {
    if (id !== run?.id) return;
    generating = false;
    runTimer?.end();
    line.refresh();
    el.progress.value = el.progress.max;
    showResults(images, width, height);
    el.status.textContent = `${images.length} image(s) in ${(ms / 1000).toFixed(1)} s${workers > 1 ? ` on ${workers} CPU workers` : ''} ` +
      `(${madeWith(run)}).`;
    setState('done');
  },

  cancelled({ id, done, total }) {
    if (id !== run?.id) return;
    generating = false;
    el.progressText.textContent = `cancelled at step ${done}/${total}`;
    el.status.textContent = `Cancelled at step ${done}/${total}.`;
    setState('ready');
  },

  'device-lost'({ message }) {
    runTimer = null;  // the rest of the run goes on the CPU: its steps would time neither backend
    el.status.textContent = `${message[0].toUpperCase()}${message.slice(1)}.`;
  },

  'cache-cleared'({ deleted }) {
    el.status.textContent = deleted
      ? 'Cached weights deleted: the next visit downloads them again.'
      : 'There were no cached weights.';
  },

  error({ message, where, id, url, tooLarge }) {
    if (where === 'generate' && id !== run?.id) return;
    if (where === 'load' && url !== undefined && url !== modelUrl) return;
    if (where === 'load' && tooLarge) return askToDownload(tooLarge);
    if (where === 'tune' || where === 'weights') return;  // shown by the fine-tuning panel
    if (where === 'load' && engineFailed) return;  // the 'init' error already says why
    if (where === 'init') {
      engineFailed = true;
      line.failed();
    }
    if (where === 'generate') generating = false;
    else modelReady = false;
    if (where !== 'generate') {
      el.modelText.textContent = where === 'init' ? 'the engine did not start' : 'no model loaded';
      el.modelBar.value = 0;
    }
    showError(where, message);
    setState('error');
  },
};

// ---- the engine ----------------------------------------------------------------------------

hub.listen((msg) => {
  try {
    handlers[msg.type]?.(msg);
  } catch (err) {
    console.error(err);
    if (generating) hub.post({ type: 'cancel', id: run.id });
    handlers.error({ where: msg.type === 'backend' || msg.type === 'ready' ? 'load' : 'generate', id: run?.id, message: `${msg.type}: ${err.message}` });
  }
});

function startEngine() {
  setStepsDone(0);
  setState('loading');
  el.modelText.textContent = 'starting the engine (loading the WebAssembly module)…';
  el.status.textContent = 'Loading the model…';
  // ?test-hooks: the engine answers the tests' 'stats' and 'lose-device' (engine/host.js)
  hub.post({ type: 'init', preferGpu: params.get('backend') !== 'cpu', testHooks: params.has('test-hooks') });
  const raw = params.get('model') || rememberedModel(DEFAULT_MODEL);
  el.modelUrl.value = raw;
  try {
    modelUrl = hubModelUrl(raw, location.href, params.get('hub'));
  } catch (err) {
    handlers.error({ where: 'load', message: `?model=${raw}: ${err.message.includes(raw) ? err.message : 'not a valid URL or hf: id'}` });
    return;
  }
  tuning = initTuning({
    hub,
    baseUrl: modelUrl,
    isGenerating: () => generating,
    sampleSettings: () => {
      try {
        return readSettings();
      } catch {
        return { sampler: DEFAULT_SAMPLER, steps: suggestedSteps(DEFAULT_SAMPLER), eta: 0 };
      }
    },
    onBusy: (busy) => {
      tuningBusy = busy;
      setState(document.body.dataset.state);
    },
  });
  loadModel(LARGE_DOWNLOAD);
  initModelPicker({
    shipped: DEFAULT_MODEL, current: raw, keyOf: (id) => hubModelUrl(id, location.href, params.get('hub')),
    load: (value) => showModel(value),
    onCleared: (prefix, bytes) => { el.status.textContent = `Cleared ${(bytes / 1e6).toFixed(1)} MB of cached weights (${prefix}).`; },
  }).then((picker) => { modelPicker = picker; }, (err) => console.error(err));
}

/** Runs expected to take longer than this on the CPU (or a software adapter) are asked about. */
const LONG_RUN_SEC = 120;
let largeImages = false;   // the model's images are over 64x64 pixels

/** Whether to start `r`: yes on a GPU; on the CPU, a long run (by the timed steps) or a large
 *  model not timed yet only on the visitor's word. */
function slowRunAgreed(r) {
  if (isGpu && !softwareGpu) return true;
  const sec = line.seconds(r.n, r.steps);
  const where = isGpu ? 'on this software WebGPU adapter' : 'on the CPU';
  if (sec !== null && sec > LONG_RUN_SEC) return confirm(`${where[0].toUpperCase()}${where.slice(1)}, this run is expected to take ${line.text(r.n, r.steps)} (from the steps timed so far). Start it?`);
  if (sec === null && largeImages) return confirm(`This model's images are large, and ${where} a step of them has not been timed yet: the run may take many minutes. Start it?`);
  return true;
}

/** Files over this many bytes are downloaded only once the visitor agrees. */
const LARGE_DOWNLOAD = 100e6;
let modelPicker = null;

function loadModel(maxBytes) {
  hub.post({ type: 'load', url: modelUrl, sha256: params.get('sha256') || undefined, maxBytes });
}

/** The model's file is large: say how large, and download it on the visitor's word. */
function askToDownload({ file, bytes }) {
  el.confirmText.textContent = `This model's ${file} is ${(bytes / 1e6).toFixed(0)} MB. ` +
    'It is downloaded once and kept in this browser; download it now?';
  el.confirmYes.textContent = `Download ${(bytes / 1e6).toFixed(0)} MB`;
  el.confirm.hidden = false;
  el.status.textContent = 'Waiting for your go-ahead to download the model.';
  el.modelText.textContent = `${file}: ${(bytes / 1e6).toFixed(0)} MB, not downloaded yet`;
}

/** Loads another model: a new address, as if the visitor had typed it. */
function showModel(value) {
  const next = new URL(location.href);
  if (value) next.searchParams.set('model', value);
  else next.searchParams.delete('model');
  location.assign(next.href);
}

// ---- controls ------------------------------------------------------------------------------

const suggestedSteps = (sampler) => defaultSteps(sampler, info?.num_train_timesteps ?? 1000);

function updateHint() {
  el.eta.disabled = el.sampler.value !== 'ddim';
  el.hint.textContent = samplerNamed(el.sampler.value).hint +
    (isGpu && !softwareGpu ? '' : ` On ${isGpu ? 'a software WebGPU adapter' : 'the CPU backend'}, keep images and steps small.`);
}

function readSettings() {
  const T = info?.num_train_timesteps ?? 1000;
  const sampler = el.sampler.value;
  const steps = wholeNumber(el.steps.value, 1, T, 'Steps');
  const n = wholeNumber(el.n.value, 1, MAX_IMAGES, 'Images');
  let eta = 0;
  if (sampler === 'ddim') {
    eta = Number(el.eta.value);
    if (el.eta.value.trim() === '' || !(eta >= 0 && eta <= 1)) throw new Error(`eta must be a number from 0 to 1 (got "${el.eta.value}").`);
  }
  if (el.seedRandom.checked) el.seed.value = String(crypto.getRandomValues(new Uint32Array(1))[0]);
  const seed = wholeNumber(el.seed.value, 0, 2 ** 32 - 1, 'Seed');
  return { n, sampler, steps, eta, seed, model: tuning.sampleKey() ?? modelUrl, id: hub.newId() };
}

function generate() {
  if (!modelReady || generating || tuningBusy) return;
  try {
    run = readSettings();
  } catch (err) {
    showError('input', err.message);
    setState('error');
    return;
  }
  if (!slowRunAgreed(run)) return;
  clearError();
  line.stopProbe();
  writeAddress(addressed);
  generating = true;
  runTimer = line.timer(run.n);
  announced = 0;
  el.announce.textContent = '';
  el.results.replaceChildren();
  el.resultsHint.hidden = true;
  el.downloadGrid.hidden = true;
  el.progress.max = run.steps;
  el.progress.value = 0;
  setStepsDone(0);
  el.progressText.textContent = `step 0/${run.steps} · starting…`;
  el.status.textContent = '';
  setState('generating');
  const previewEvery = Math.max(1, Math.round(run.steps / (reducedMotion.matches ? 4 : 25)));
  const workers = Number(params.get('workers')) || undefined;  // ?workers=1: the CPU backend on one worker
  hub.post({ type: 'generate', ...run, previewEvery, workers });
}

el.controls.addEventListener('submit', (event) => {
  event.preventDefault();
  generate();
});
el.cancel.addEventListener('click', () => {
  hub.post({ type: 'cancel', id: run?.id });
  el.cancel.disabled = true;
  el.status.textContent = 'cancelling…';
});
el.sampler.addEventListener('change', () => {
  if (Number(el.steps.value) === suggestedSteps(samplerShown)) el.steps.value = String(suggestedSteps(el.sampler.value));
  samplerShown = el.sampler.value;
  updateHint();
});
el.n.addEventListener('input', () => { nTouched = true; });
el.controls.addEventListener('input', () => line.refresh());
el.controls.addEventListener('change', () => {
  line.refresh();
  writeAddress(addressed);
});
el.clearCache.addEventListener('click', () => hub.post({ type: 'clear-cache' }));
hub.listen((msg) => { if (msg.type === 'cache-cleared' || msg.type === 'ready') modelPicker?.refresh(); });
el.modelForm.addEventListener('submit', (event) => {
  event.preventDefault();
  showModel(el.modelUrl.value.trim());
});
el.confirmYes.addEventListener('click', () => {
  el.confirm.hidden = true;
  el.status.textContent = 'Loading the model…';
  loadModel(Infinity);
});
el.downloadGrid.addEventListener('click', () => {
  const canvases = [...el.results.querySelectorAll('canvas')];
  if (canvases.length) savePng(gridCanvas(canvases), `ddpm-grid-seed${run.seed}.png`);
});

// ---- pixels --------------------------------------------------------------------------------

/** How the images of `r` were made: "DDIM, 20 steps, seed 42". */
const madeWith = (r) => `${samplerNamed(r.sampler).label}, ${r.steps} steps, seed ${r.seed}${r.model === modelUrl ? '' : ', fine-tuned model'}`;

/** Each image as a button that saves it, labelled with how it was made. */
function showResults(images, width, height) {
  const how = madeWith(run);
  const figures = images.map((rgba, i) => {
    const figure = document.createElement('figure');
    const canvas = drawRgba(document.createElement('canvas'), { width, height, rgba });
    const alt = `Generated image ${i + 1} of ${images.length} (${how})`;
    canvas.setAttribute('role', 'img');
    canvas.setAttribute('aria-label', alt);
    const save = document.createElement('button');
    save.type = 'button';
    save.className = 'save';
    save.title = 'Download PNG';
    save.setAttribute('aria-label', `${alt}: download PNG`);
    save.addEventListener('click', () => savePng(canvas, `ddpm-seed${run.seed}-${i + 1}.png`));
    save.append(canvas);
    figure.append(save);
    return figure;
  });
  el.results.replaceChildren(...figures);
  el.resultsHint.hidden = images.length === 0;
  el.downloadGrid.hidden = images.length === 0;
}

function gridCanvas(canvases) {
  const { width, height } = canvases[0];
  const cols = Math.ceil(Math.sqrt(canvases.length));
  const grid = document.createElement('canvas');
  grid.width = cols * width;
  grid.height = Math.ceil(canvases.length / cols) * height;
  const ctx = grid.getContext('2d');
  canvases.forEach((c, i) => ctx.drawImage(c, (i % cols) * width, Math.floor(i / cols) * height));
  return grid;
}

function savePng(canvas, name) {
  canvas.toBlob((blob) => blob && saveBlob(blob, name), 'image/png');
}

function formatBytes(loaded, total) {
  const big = (total ?? loaded) >= 1e6;
  const unit = big ? 'MB' : 'kB';
  const f = (b) => (b / (big ? 1e6 : 1e3)).toFixed(1);
  return total ? `${f(loaded)}/${f(total)} ${unit}` : `${f(loaded)} ${unit}`;
}

updateHint();
startEngine();
