// Browser benchmark: the page in headless Chromium generates N images with DDIM-S on the CPU
// backend (wasm) and on WebGPU, after a warm-up run; prints one JSON line per backend.
//   node benches/browser.mjs --model bench-models/mnist/ [--n 16] [--steps 50] [--sampler ddim] [--backends cpu,cpu-1,gpu,ort]
// `cpu` splits the images across one CPU worker per core (www/engine/cpu-pool.js); `cpu-1` keeps them on one.
// `ort-2`: onnxruntime-web with 2 threads of its own; `ort-gpu`: its WebGPU execution provider.
// The time is the user's: from the click on Generate to the finished images on the page.
// `ort` is the anchor: the same model as ONNX (MODEL/unet.onnx, from benches/export_onnx.py) on
// onnxruntime-web's wasm backend, 1 thread, the same DDIM loop in benches/ort.html (`make bench-web`).
// With --first: the time from a page load with the weights already in Cache Storage (a reload
// after the first visit) to the first finished image (1 image, DDIM-S) instead.
// With --tune K: fine-tunes K steps at --batch (8) on 8 images instead, and reports steps/s over
// the steps after the first (which compiles shaders); on `cpu` each step's batch is shared by
// one worker per core, `cpu-1` keeps it on one.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { MINUTE, REPO_ROOT, openPage, startEnv } from '../tests/e2e/helpers.mjs';

const { values: opt } = parseArgs({
  options: {
    model: { type: 'string', default: 'www/models/mnist/' },
    n: { type: 'string', default: '16' },
    steps: { type: 'string', default: '50' },
    // our backends only: onnxruntime-web's loop (ort.html) is DDIM's
    sampler: { type: 'string', default: 'ddim' },
    backends: { type: 'string', default: 'cpu,gpu' },
    'timeout-min': { type: 'string', default: '60' },
    tune: { type: 'string' },
    first: { type: 'boolean', default: false },
    batch: { type: 'string', default: '8' },
  },
});
const timeout = Number(opt['timeout-min']) * MINUTE;

async function generate(s, n, steps) {
  const { page, waitForState } = s;
  await page.getByTestId('sampler').selectOption(opt.sampler);
  await page.getByTestId('steps').fill(String(steps));
  await page.getByTestId('n').fill(String(n));
  const start = Date.now();
  await page.getByTestId('generate').click();
  await waitForState('done', timeout);
  return Date.now() - start;
}

/** A reload (weights cached by the first visit) to the first finished image: seconds to
 *  data-state=ready and to the image. */
async function firstImage(s, steps) {
  const start = Date.now();
  await s.page.reload();
  await s.waitForState('ready', timeout);
  const ready = Date.now() - start;
  await generate(s, 1, steps);
  return { ready_s: ready / 1000, first_image_s: (Date.now() - start) / 1000 };
}

/** Fine-tunes `steps` steps; steps/s between the first and the last loss read back. */
async function tune(s, steps, batch) {
  const { page } = s;
  const fixtures = [1, 2, 3, 4].map((i) => path.join(REPO_ROOT, `tests/e2e/fixtures/seven-${i}.png`));
  await page.getByTestId('upload').setInputFiles([...fixtures, ...fixtures]);
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=dataset] img').length === 8);
  await page.getByTestId('steps').fill('1');  // the before / after that follows: 1 step
  await page.getByTestId('tune-steps').fill(String(steps));
  await page.getByTestId('tune-batch').fill(String(batch));
  const marks = [];
  await page.exposeFunction('benchMark', (step) => marks.push([step, Date.now()]));
  await page.evaluate(() => new MutationObserver(() => {
    const m = /step (\d+)\//.exec(document.getElementById('tune-status').textContent);
    if (m) window.benchMark(Number(m[1]));
  }).observe(document.getElementById('tune-status'), { childList: true, characterData: true, subtree: true }));
  await page.getByTestId('tune-start').click();
  await page.waitForFunction(() => ['comparing', 'done', 'error'].includes(document.getElementById('tune').dataset.tuneState), null, { timeout, polling: 500 });
  const first = marks.find(([step]) => step >= 1);
  const last = marks.at(-1);
  if (!first || !last || last[0] === first[0]) throw new Error(`too few loss read backs to time: ${JSON.stringify(marks)}`);
  return { steps_timed: last[0] - first[0], steps_per_s: (1000 * (last[0] - first[0])) / (last[1] - first[1]) };
}

/** The anchor: DDIM on onnxruntime-web in the same browser (benches/ort.html). */
async function ortDdim(s, n, steps) {
  const config = JSON.parse(readFileSync(path.join(REPO_ROOT, opt.model, 'config.json'), 'utf8'));
  const shape = [config.in_channels, config.sample_size, config.sample_size];
  await s.waitFor(() => window.ortReady, null, MINUTE);
  return s.page.evaluate(([model, n, steps, shape]) => window.ortDdim(model, n, steps, shape), [`/${opt.model}`, n, steps, shape]);
}

/** One JSON line for `ms` spent on n images with `sampler` (DDIM unless told) at --steps. */
function reportDdim(backend, ms, sampler = 'ddim') {
  const [n, steps] = [Number(opt.n), Number(opt.steps)];
  console.log(JSON.stringify({
    bench: `browser-${sampler}`, backend, n, steps, total_s: ms / 1000, ms_per_step: ms / steps, ms_per_image: ms / n,
  }));
}

// The model folder is served too (the page fetches it; ort.html its unet.onnx).
const modelDir = `${path.posix.normalize(opt.model).replace(/^\.\//, '').replace(/\/?$/, '/')}`;
const env = await startEnv({ rules: [{ dir: modelDir, cors: true }] });
try {
  for (const backend of opt.backends.split(',')) {
    const [kind, workers] = backend.split('-');
    if (kind === 'ort') {
      const gpu = workers === 'gpu';
      const s = await openPage(env.browser, `${env.url}benches/ort.html?${gpu ? 'ep=webgpu' : `threads=${workers ?? 1}`}`);
      try {
        const ms = await ortDdim(s, Number(opt.n), Number(opt.steps));
        const threads = await s.page.evaluate(() => window.ortThreads);
        reportDdim(`onnxruntime-web 1.30 (${gpu ? 'WebGPU' : `wasm, ${threads} thread${threads > 1 ? 's' : ''}`})`, ms);
      } finally {
        await s.close();
      }
      continue;
    }
    // tune=gpu: fine-tune on the WebGPU adapter even where it is a software one (the page would use the CPU)
    const query = `?model=${encodeURIComponent(opt.model)}&backend=${kind}${workers ? `&workers=${workers}` : ''}${kind === 'gpu' ? '&tune=gpu' : ''}`;
    const s = await openPage(env.browser, `${env.url}${query}`);
    try {
      await s.waitForState('ready', 10 * MINUTE);
      const name = (await s.page.getByTestId('backend').innerText()).trim();
      if (opt.first) {
        const r = await firstImage(s, Number(opt.steps));
        console.log(JSON.stringify({ bench: 'browser-first-image', backend: name, steps: Number(opt.steps), ...r }));
        continue;
      }
      if (opt.tune) {
        const r = await tune(s, Number(opt.tune), Number(opt.batch));
        const split = /on (\d+) CPU workers/.exec(await s.page.getByTestId('tune-status').innerText());
        console.log(JSON.stringify({ bench: 'browser-tune', backend: split ? `${name}, ${split[1]} workers` : name, batch: Number(opt.batch), ...r }));
        continue;
      }
      await generate(s, kind === 'cpu' ? Number(opt.n) : 1, 2); // warm-up: shader compilation, allocations, the CPU workers
      const ms = await generate(s, Number(opt.n), Number(opt.steps));
      const split = /on (\d+) CPU workers/.exec(await s.page.getByTestId('status').innerText());
      reportDdim(split ? `${name}, ${split[1]} workers` : name, ms, opt.sampler);
    } finally {
      await s.close();
    }
  }
} finally {
  await env.close();
}
