// WebGPU through Dawn, Chrome's WebGPU engine, in Node without a browser: the npm package `webgpu`
// (Dawn's Node bindings) gives the wasm engine of pkg/ a `navigator.gpu`, here on the SwiftShader
// Vulkan driver that Debian's `chromium` installs (Dawn refuses Mesa's lavapipe). Prints JSON lines:
// the adapter, the time to the first image (load + shader compile + every step at the first batch),
// then per batch the ms per step, the kernel launches per step (dispatchWorkgroups calls) and the
// peak bytes of GPU buffers alive at once.
//   node benches/dawn.mjs --model www/models/mnist --batches 1 --steps 2
//   node benches/dawn.mjs --model tests/data/tiny --parity            (UNet against diffusers)
//   node benches/dawn.mjs --model DIR --backends ours,ort --onnx DIR/unet.onnx
//   node benches/dawn.mjs --model www/models/mnist --batches '' --tune 200    (fine-tuning, batch 8)
//   node benches/dawn.mjs --model www/models/mnist --batches 1 --warm   (kernels compiled before the load, as the page does)
// `ort` is onnxruntime-web's WebGPU execution provider on the same Dawn device kind, the model
// exported by benches/export_onnx.py (needs torch: `make venv`), with the DDIM loop of
// benches/ort.html; both backends are counted by the same wrappers. --icd system uses the
// machine's own Vulkan drivers (a real GPU) instead of SwiftShader. BENCHMARKS.md, WebGPU through Dawn.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Where Debian's chromium(-common) puts SwiftShader's Vulkan ICD (`dpkg -L chromium-common`). */
const ICDS = ['/usr/lib/chromium/vk_swiftshader_icd.json', '/usr/lib/chromium-browser/vk_swiftshader_icd.json'];

/** SwiftShader's ICD file, or null where no Chromium installed one. */
export function swiftshaderIcd() {
  return ICDS.find((f) => existsSync(f)) ?? null;
}

/** A safetensors file as {name: {dtype, shape, data}}; I64 comes back as Float32 (timesteps). */
export function readSafetensors(file) {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const base = 8 + n;
  const out = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [a, b] = info.data_offsets;
    const bytes = buf.subarray(base + a, base + b);
    const copy = new Uint8Array(bytes).buffer;
    const data = info.dtype === 'F32' ? new Float32Array(copy)
      : info.dtype === 'F64' ? Float32Array.from(new Float64Array(copy))
        : info.dtype === 'I64' ? Float32Array.from(new BigInt64Array(copy), Number)
          : null;
    if (!data) throw new Error(`${file}: ${name} is ${info.dtype}, not F32, F64 or I64`);
    out[name] = { dtype: info.dtype, shape: info.shape, data };
  }
  return out;
}

/** Counts what the device is asked to do, by wrapping Dawn's prototypes (shared by every backend). */
class Counters {
  dispatches = 0;
  pipelines = 0;
  submits = 0;
  /** launches by pipeline label, when `byKernel` */
  byKernel = null;
  /** live and peak buffer bytes of each device, with the phase that made it; the peak is the
   *  device's so far, so a later batch's includes what a memory pool kept from earlier ones */
  devices = new Map();
  phase = '';

  constructor(globals) {
    const self = this;
    const buffers = new WeakMap();
    const labels = new WeakMap();
    const current = Symbol('pipeline');
    const wrap = (proto, name, f) => {
      const orig = proto[name];
      proto[name] = function (...args) { return f.call(this, orig, args); };
    };
    for (const name of ['dispatchWorkgroups', 'dispatchWorkgroupsIndirect']) {
      wrap(globals.GPUComputePassEncoder.prototype, name, function (orig, args) {
        self.dispatches++;
        if (self.byKernel) {
          const k = labels.get(this[current]) ?? '(no label)';
          self.byKernel.set(k, (self.byKernel.get(k) ?? 0) + 1);
        }
        return orig.apply(this, args);
      });
    }
    wrap(globals.GPUComputePassEncoder.prototype, 'setPipeline', function (orig, args) {
      this[current] = args[0];
      return orig.apply(this, args);
    });
    const name = (desc) => desc?.label || desc?.compute?.module?.label || desc?.compute?.entryPoint || '';
    wrap(globals.GPUDevice.prototype, 'createComputePipeline', function (orig, args) {
      self.pipelines++;
      const p = orig.apply(this, args);
      labels.set(p, name(args[0]));
      return p;
    });
    wrap(globals.GPUDevice.prototype, 'createComputePipelineAsync', async function (orig, args) {
      self.pipelines++;
      const p = await orig.apply(this, args);
      labels.set(p, name(args[0]));
      return p;
    });
    wrap(globals.GPUQueue.prototype, 'submit', function (orig, args) {
      self.submits++;
      return orig.apply(this, args);
    });
    wrap(globals.GPUDevice.prototype, 'createBuffer', function (orig, args) {
      const b = orig.apply(this, args);
      let d = self.devices.get(this);
      if (!d) self.devices.set(this, (d = { phase: self.phase, live: 0, peak: 0 }));
      const size = Number(args[0].size);
      buffers.set(b, { d, size });
      d.live += size;
      d.peak = Math.max(d.peak, d.live);
      return b;
    });
    wrap(globals.GPUBuffer.prototype, 'destroy', function (orig, args) {
      const e = buffers.get(this);
      if (e) {
        e.d.live -= e.size;
        buffers.delete(this);
      }
      return orig.apply(this, args);
    });
  }

  /** Starts a new count of launches, submits and compiled pipelines (and launches by kernel,
   *  when `byKernel`). */
  reset(byKernel = false) {
    this.dispatches = 0;
    this.submits = 0;
    this.pipelines = 0;
    if (byKernel) this.byKernel = new Map();
  }

  /** Peak buffer bytes of the devices that `phase` created. */
  peak(phase) {
    let peak = 0;
    for (const d of this.devices.values()) if (d.phase === phase) peak += d.peak;
    return peak;
  }
}

/**
 * Dawn's navigator.gpu and the globals wgpu's wasm backend looks for: it finds navigator.gpu through
 * a global `Window` or `WorkerGlobalScope` (wgpu's backend/webgpu.rs), and the GPU* classes and
 * constants (GPUBufferUsage, GPUValidationError, ...) are Dawn's. `icd`: a Vulkan ICD file, or null
 * for the loader's own drivers. Returns {gpu, counters, adapters}: the adapters the backends got.
 */
export async function setupDawn({ icd, flags = [] } = {}) {
  if (icd) process.env.VK_ICD_FILENAMES = icd;
  // The Vulkan loader warns on every adapter query without it.
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  const { create, globals } = await import('webgpu');
  const counters = new Counters(globals);
  // onnxruntime-web's wasm memory is shared (threads), and Dawn's bindings refuse a view of a
  // SharedArrayBuffer ("Invalid argument") where a browser takes it: copy such data first.
  const writeBuffer = globals.GPUQueue.prototype.writeBuffer;
  globals.GPUQueue.prototype.writeBuffer = function (buffer, offset, data, dataOffset, size) {
    if (data?.buffer instanceof SharedArrayBuffer) {
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      const k = data.BYTES_PER_ELEMENT ?? 1;
      const from = (dataOffset ?? 0) * k;
      const to = size === undefined ? bytes.length : from + size * k;
      return writeBuffer.call(this, buffer, offset, bytes.slice(from, to));
    }
    return writeBuffer.call(this, buffer, offset, data, dataOffset, size);
  };
  const gpu = create(flags);
  const adapters = [];
  const requestAdapter = gpu.requestAdapter.bind(gpu);
  gpu.requestAdapter = async (...args) => {
    const a = await requestAdapter(...args);
    if (a) adapters.push(a);
    return a;
  };
  Object.assign(globalThis, globals);
  class WorkerGlobalScope {}
  globalThis.WorkerGlobalScope = WorkerGlobalScope;
  globalThis.self = globalThis;
  Object.defineProperty(globalThis, 'navigator', { value: { gpu, userAgent: `node ${process.version}` }, configurable: true, writable: true });
  return { gpu, counters, adapters };
}

export function adapterName(a) {
  const i = a?.info ?? {};
  return { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description };
}

/** The engine of `pkg` (wasm-bindgen's web target), instantiated from the file's bytes. */
export async function loadEngine(pkg = path.join(REPO, 'pkg')) {
  const mod = await import(pathToFileURL(path.join(pkg, 'ddpm_web.js')).href);
  mod.initSync({ module: readFileSync(path.join(pkg, 'ddpm_web_bg.wasm')) });
  return mod;
}

/** A model folder's three files, loaded into `engine` under `key`. */
export function loadModel(engine, dir, key = 'model') {
  const file = (f) => path.join(dir, f);
  const scheduler = existsSync(file('scheduler_config.json')) ? readFileSync(file('scheduler_config.json'), 'utf8') : null;
  engine.load_model(key, file('config.json'), readFileSync(file('config.json'), 'utf8'), file('scheduler_config.json'),
    scheduler, file('diffusion_pytorch_model.safetensors'), readFileSync(file('diffusion_pytorch_model.safetensors')));
  return JSON.parse(engine.model_info(key));
}

const maxAbsDiff = (a, b) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const round = (x, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

/** Our engine on Dawn: lines for `print`. */
async function ours(opt, dawn, print) {
  const { counters } = dawn;
  counters.phase = 'ours';
  const t0 = performance.now();
  const { Engine } = await loadEngine(opt.pkg);
  const engine = await Engine.create(true);
  if (!engine.is_gpu) throw new Error(`the engine fell back to the CPU: ${engine.gpu_note}`);
  print({ backend: 'ours', what: 'adapter', adapter: adapterName(dawn.adapters.at(-1)) });
  if (opt.warm) {
    // What the page does while the weights download: the kernels compiled on a zero-weight stand-in.
    const w0 = performance.now();
    counters.reset();
    const config = path.join(opt.model, 'config.json');
    const eps = await engine.warm(config, readFileSync(config, 'utf8'), Infinity);
    print({ backend: 'ours', what: 'warm', ran: eps !== undefined, ms: round(performance.now() - w0), launches: counters.dispatches, pipelines: counters.pipelines });
  }
  const l0 = performance.now();
  counters.reset();
  const info = loadModel(engine, opt.model);
  const load = { load_ms: round(performance.now() - l0), load_launches: counters.dispatches, load_pipelines: counters.pipelines };
  const loadMs = performance.now() - t0;

  let first = true;
  for (const n of opt.batches) {
    const r0 = performance.now();
    engine.start('model', n, opt.sampler, opt.steps, 0, opt.seed, 0, 0);
    const steps = [];
    for (;;) {
      counters.reset(opt.byKernel);
      const s = performance.now();
      const r = await engine.step(false);
      if (r === undefined) break;
      steps.push({ ms: performance.now() - s, launches: counters.dispatches, submits: counters.submits, compiled: counters.pipelines, byKernel: counters.byKernel });
    }
    const images = await engine.result();
    const runMs = performance.now() - r0;
    if (first) {
      print({ backend: 'ours', what: 'first_image', model: opt.model, params: info.params, batch: n, sampler: opt.sampler, steps: opt.steps,
        ...load, start_to_loaded_ms: round(loadMs), loaded_to_first_image_ms: round(performance.now() - t0 - loadMs),
        first_image_ms: round(performance.now() - t0), images: images.images.length });
      first = false;
    }
    report('ours', n, steps, counters.peak('ours'), opt, print, runMs);
  }
  // After the runs, so that the first image's time is the user's (no extra forward before it).
  if (opt.parity) {
    const inputs = readSafetensors(path.join(opt.model, 'inputs.safetensors'));
    const expected = readSafetensors(path.join(opt.model, 'expected.safetensors'));
    const { x, t } = inputs;
    const out = await engine.unet('model', x.data, Uint32Array.from(x.shape), t.data);
    print({ backend: 'ours', what: 'parity', shape: x.shape, t: [...t.data], max_abs_err: maxAbsDiff(out, expected.unet_out.data),
      max_abs_err_f64: maxAbsDiff(out, expected.unet_out_f64.data) });
  }
  if (opt.tune) await tune(engine, opt, dawn, print);
  engine.free();
}

/** Fine-tuning as the page's panel does it (www/ui/tune.js, www/engine/jobs.js): `opt.tune` Adam
 *  steps at `opt.tuneBatch` with the page's default learning rate, the loss read back as often as
 *  the page reads it, on the ten real digits of www/explore/digits.json, nearest-neighbour scaled
 *  to the model's size (speed does not depend on which images). Wall time from the request to the
 *  last loss, kernel compilation included. */
async function tune(engine, opt, dawn, print) {
  const { counters } = dawn;
  const { size, digits } = JSON.parse(readFileSync(path.join(REPO, 'www/explore/digits.json'), 'utf8'));
  const [h, w = h] = [JSON.parse(readFileSync(path.join(opt.model, 'config.json'), 'utf8')).sample_size].flat();
  const rgba = new Uint8Array(digits.length * h * w * 4);
  digits.forEach((b64, i) => {
    const px = Buffer.from(b64, 'base64');
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const v = px[Math.floor((y * size) / h) * size + Math.floor((x * size) / w)];
        rgba.set([v, v, v, 255], ((i * h + y) * w + x) * 4);
      }
    }
  });
  const readEvery = Math.max(1, Math.min(10, Math.round(opt.tune / 50)));
  const t0 = performance.now();
  engine.tune_start('model', rgba, digits.length, 2e-4, 0);
  const steps = [];
  const losses = [];
  for (let k = 1; k <= opt.tune; k++) {
    counters.reset();
    const s = performance.now();
    const loss = await engine.tune_step(opt.tuneBatch, k % readEvery === 0 || k === opt.tune);
    if (loss !== undefined) losses.push(loss);
    steps.push({ ms: performance.now() - s, launches: counters.dispatches });
    // a line every 50 steps, so that a run cut short by a time limit still tells its pace
    if (k % 50 === 0 && k < opt.tune) print({ backend: 'ours', what: 'tune_progress', step: k, elapsed_ms: round(performance.now() - t0), loss_last_read: losses.at(-1) });
  }
  const totalMs = performance.now() - t0;
  engine.tune_end();
  const warm = steps.slice(1);
  print({ backend: 'ours', what: 'tune', model: opt.model, steps: opt.tune, batch: opt.tuneBatch, images: digits.length,
    read_every: readEvery, total_ms: round(totalMs), first_step_ms: round(steps[0].ms),
    steps_per_s_after_first: warm.length ? round((1000 * warm.length) / warm.reduce((a, x) => a + x.ms, 0), 2) : null,
    launches_per_step: median(warm.length ? warm.map((x) => x.launches) : [steps[0].launches]),
    loss_first_read: losses[0], loss_last: losses.at(-1),
    peak_buffer_bytes: counters.peak('ours') });  // the engine's device: sampling's buffers before it count too
  if (!losses.every(Number.isFinite)) throw new Error(`fine-tuning on Dawn gave a loss of ${losses.find((l) => !Number.isFinite(l))}`);
}

/** `runMs`: the whole run, from the request to the images read back (every step included). */
function report(backend, n, steps, peak, opt, print, runMs) {
  const warm = steps.length > 1 ? steps.slice(1) : steps;
  print({ backend, what: 'step', batch: n, sampler: backend === 'ours' ? opt.sampler : 'ddim', steps: steps.length,
    ms_per_step: round(median(warm.map((s) => s.ms))), launches_per_step: median(warm.map((s) => s.launches)),
    submits_per_step: median(warm.map((s) => s.submits)),
    first_step_ms: round(steps[0].ms), first_step_launches: steps[0].launches, first_step_pipelines: steps[0].compiled,
    run_ms: round(runMs), peak_buffer_bytes: peak });
  if (opt.byKernel) {
    const last = warm.at(-1).byKernel;
    const top = [...last].sort((a, b) => b[1] - a[1]);
    // cubecl names a pipeline after its kernel, then its element type, vectorisation and a hash
    // (kernel_binop_c_f32_n_4_7124f1e1): the part before the type is the op.
    const byOp = new Map();
    for (const [k, v] of top) {
      const op = k.replace(/_[a-z]+_(f32|f16|i32|u32|bool)_.*$/, '');
      byOp.set(op, (byOp.get(op) ?? 0) + v);
    }
    print({ backend, what: 'launches_by_kernel', batch: n, kernels: top.length,
      by_op: Object.fromEntries([...byOp].sort((a, b) => b[1] - a[1])), launches: Object.fromEntries(top) });
  }
}

/** onnxruntime-web's WebGPU EP on Dawn, the DDIM loop of benches/ort.html timed per step. */
async function ort(opt, dawn, print) {
  const { counters } = dawn;
  counters.phase = 'ort';
  if (!opt.onnx) throw new Error('--backends ort needs --onnx FILE: python benches/export_onnx.py --model DIR --out FILE (in the venv of `make venv`)');
  const t0 = performance.now();
  const ortPath = path.join(REPO, 'node_modules/onnxruntime-web/dist/ort.webgpu.min.mjs');
  const ort = await import(pathToFileURL(ortPath).href);
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = pathToFileURL(path.dirname(ortPath) + '/').href;
  const session = await ort.InferenceSession.create(readFileSync(opt.onnx), { executionProviders: ['webgpu'] });
  print({ backend: 'ort', what: 'adapter', adapter: adapterName(ort.env.webgpu.adapter ?? dawn.adapters.at(-1)), version: ort.env.versions?.web });
  const cfg = JSON.parse(readFileSync(path.join(opt.model, 'config.json'), 'utf8'));
  const sched = JSON.parse(readFileSync(path.join(opt.model, 'scheduler_config.json'), 'utf8'));
  const loadMs = performance.now() - t0;
  const size2 = [cfg.sample_size].flat();
  const [c, h, w] = [cfg.in_channels, size2[0], size2[1] ?? size2[0]];
  const run = async (x, t, n) => {
    const out = await session.run({
      sample: new ort.Tensor('float32', x, [n, c, h, w]),
      timestep: new ort.Tensor('float32', t, [n]),
    });
    return out.eps.data;
  };

  // alpha_bar_t of the linear schedule, as benches/ort.html
  const T = sched.num_train_timesteps;
  const alphaBar = [];
  for (let t = 0, prod = 1; t < T; t++) {
    prod *= 1 - (sched.beta_start + ((sched.beta_end - sched.beta_start) * t) / (T - 1));
    alphaBar.push(prod);
  }
  const clip = sched.clip_sample !== false;
  let first = true;
  for (const n of opt.batches) {
    const size = n * c * h * w;
    let x = Float32Array.from({ length: size }, () => Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random()));
    const ratio = Math.floor(T / opt.steps);
    const steps = [];
    const r0 = performance.now();
    for (let k = opt.steps - 1; k >= 0; k--) {
      counters.reset(opt.byKernel);
      const s = performance.now();
      const t = k * ratio;
      const ab = alphaBar[t];
      const abPrev = k > 0 ? alphaBar[t - ratio] : 1;
      const eps = await run(x, new Float32Array(n).fill(t), n);
      const next = new Float32Array(size);
      for (let i = 0; i < size; i++) {
        let x0 = (x[i] - Math.sqrt(1 - ab) * eps[i]) / Math.sqrt(ab);
        if (clip) x0 = Math.min(1, Math.max(-1, x0));
        next[i] = Math.sqrt(abPrev) * x0 + Math.sqrt(1 - abPrev) * eps[i];
      }
      x = next;
      steps.push({ ms: performance.now() - s, launches: counters.dispatches, submits: counters.submits, compiled: counters.pipelines, byKernel: counters.byKernel });
    }
    if (first) {
      print({ backend: 'ort', what: 'first_image', model: opt.model, onnx: opt.onnx, batch: n, sampler: 'ddim', steps: opt.steps,
        load_ms: round(loadMs), first_image_ms: round(performance.now() - t0) });
      first = false;
    }
    report('ort', n, steps, counters.peak('ort'), opt, print, performance.now() - r0);
  }
  if (opt.parity) {
    const inputs = readSafetensors(path.join(opt.model, 'inputs.safetensors'));
    const expected = readSafetensors(path.join(opt.model, 'expected.safetensors'));
    const out = await run(inputs.x.data, inputs.t.data, inputs.x.shape[0]);
    print({ backend: 'ort', what: 'parity', max_abs_err: maxAbsDiff(out, expected.unet_out.data),
      max_abs_err_f64: maxAbsDiff(out, expected.unet_out_f64.data) });
  }
  await session.release();
}

async function main() {
  const { values: o } = parseArgs({
    options: {
      model: { type: 'string', default: 'www/models/mnist' },
      batches: { type: 'string', default: '1,16,64' },
      steps: { type: 'string', default: '2' },
      sampler: { type: 'string', default: 'ddim' },
      seed: { type: 'string', default: '7' },
      backends: { type: 'string', default: 'ours' },
      onnx: { type: 'string' },
      parity: { type: 'boolean', default: false },
      'by-kernel': { type: 'boolean', default: false },
      icd: { type: 'string', default: 'auto' },
      pkg: { type: 'string', default: path.join(REPO, 'pkg') },
      tune: { type: 'string', default: '0' },
      warm: { type: 'boolean', default: false },
      'tune-batch': { type: 'string', default: '8' },
    },
  });
  const opt = {
    model: path.resolve(o.model), batches: o.batches.split(',').filter(Boolean).map(Number), steps: Number(o.steps),
    sampler: o.sampler, seed: Number(o.seed), onnx: o.onnx && path.resolve(o.onnx), parity: o.parity, byKernel: o['by-kernel'],
    pkg: path.resolve(o.pkg), tune: Number(o.tune), tuneBatch: Number(o['tune-batch']), warm: o.warm,
  };
  // auto: VK_ICD_FILENAMES when set, else SwiftShader; system: the Vulkan loader's own drivers.
  const icd = o.icd === 'system' ? null : o.icd === 'auto' ? (process.env.VK_ICD_FILENAMES || swiftshaderIcd()) : o.icd;
  if (o.icd === 'auto' && !icd) throw new Error('no SwiftShader ICD (install Debian\'s chromium: `make setup-web`), and VK_ICD_FILENAMES is not set; --icd system uses the machine\'s Vulkan drivers');
  const dawn = await setupDawn({ icd });
  const print = (line) => console.log(JSON.stringify({ ...line, icd: icd ?? 'system' }));
  for (const b of o.backends.split(',')) {
    if (b === 'ours') await ours(opt, dawn, print);
    else if (b === 'ort') await ort(opt, dawn, print);
    else throw new Error(`unknown backend ${b} (expected ours, ort)`);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then(() => process.exit(0), (e) => {
    console.error(e?.stack ?? e);
    process.exit(1);
  });
}
