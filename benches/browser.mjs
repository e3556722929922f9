// Browser benchmark: the page in headless Chromium generates N images with DDIM-S on the CPU
// backend (wasm) and on WebGPU, after a warm-up run; prints one JSON line per backend.
//   node benches/browser.mjs --model bench-models/mnist/ [--n 16] [--steps 50] [--backends cpu,gpu]
// The time is the user's: from the click on Generate to the finished images on the page.
import { parseArgs } from 'node:util';
import { MINUTE, openPage, startEnv } from '../tests/e2e/helpers.mjs';

const { values: opt } = parseArgs({
  options: {
    model: { type: 'string', default: 'www/models/mnist/' },
    n: { type: 'string', default: '16' },
    steps: { type: 'string', default: '50' },
    backends: { type: 'string', default: 'cpu,gpu' },
    'timeout-min': { type: 'string', default: '60' },
  },
});
const timeout = Number(opt['timeout-min']) * MINUTE;

async function generate(s, n, steps) {
  const { page, waitForState } = s;
  await page.getByTestId('sampler').selectOption('ddim');
  await page.getByTestId('steps').fill(String(steps));
  await page.getByTestId('n').fill(String(n));
  const start = Date.now();
  await page.getByTestId('generate').click();
  await waitForState('done', timeout);
  return Date.now() - start;
}

const env = await startEnv();
try {
  for (const backend of opt.backends.split(',')) {
    const s = await openPage(env.browser, `${env.url}?model=${encodeURIComponent(opt.model)}&backend=${backend}`);
    try {
      await s.waitForState('ready', 10 * MINUTE);
      const name = (await s.page.getByTestId('backend').innerText()).trim();
      await generate(s, 1, 2); // warm-up: shader compilation, allocations
      const ms = await generate(s, Number(opt.n), Number(opt.steps));
      console.log(JSON.stringify({
        bench: 'browser-ddim', backend: name, n: Number(opt.n), steps: Number(opt.steps),
        total_s: ms / 1000, ms_per_step: ms / Number(opt.steps), ms_per_image: ms / Number(opt.n),
      }));
    } finally {
      await s.close();
    }
  }
} finally {
  await env.close();
}
