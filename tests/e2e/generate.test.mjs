// End to end: the page served on 127.0.0.1, headless Chromium (WebGPU on SwiftShader here).
// Run: node --test tests/e2e/   (needs pkg/ built). The default (shipped MNIST) model runs on the
// CPU backend; runs on WebGPU use the tiny parity model (SwiftShader, the software adapter here,
// takes ~10 s per step of the MNIST model).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { MINUTE, REPO_ROOT, TINY, canvasStats, startEnv, withPage } from './helpers.mjs';

/** Sets DDIM/DDPM, steps and n, clicks Generate and waits for the end. */
async function generate(page, waitForState, { sampler, steps, n }) {
  await page.getByTestId('sampler').selectOption(sampler);
  await page.getByTestId('steps').fill(String(steps));
  await page.getByTestId('n').fill(String(n));
  assert.equal(await page.getByTestId('generate').isEnabled(), true);
  await page.getByTestId('generate').click();
  await waitForState('done', 10 * MINUTE);
}

describe('ddpm-web page', { timeout: 60 * MINUTE }, () => {
  let env;
  before(async () => { env = await startEnv(); });
  after(async () => { await env?.close(); });

  test('generates 4 images with DDIM-10 on WebGPU (tiny model)', { timeout: 16 * MINUTE }, async (t) => {
    await withPage(t, env, `?model=${TINY}`, 'e2e-generate.png', async ({ page, waitForState }) => {
      await waitForState('ready', 5 * MINUTE);
      // A software adapter (SwiftShader here) is named as such, with the way to the faster CPU backend.
      const software = await page.evaluate(async () => Boolean((await navigator.gpu?.requestAdapter())?.info?.isFallbackAdapter));
      const note = page.getByTestId('gpu-note');
      assert.equal(await note.isVisible(), software, `the software-adapter note is shown iff the adapter is one (${software})`);
      if (software) {
        assert.match(await note.innerText(), /software adapter/);
        assert.equal(await page.getByTestId('n').inputValue(), '1', 'a software adapter defaults to 1 image');
        const cpu = new URL(await page.getByTestId('use-cpu').getAttribute('href'));
        assert.equal(cpu.searchParams.get('backend'), 'cpu');
        assert.equal(cpu.searchParams.get('model'), TINY, 'the link to the CPU backend keeps the model');
      }
      // A setting out of range: the error box names it, data-state=error; fixed, it generates.
      await page.getByTestId('n').fill('65');
      await page.getByTestId('generate').click();
      assert.equal(await page.evaluate(() => document.body.dataset.state), 'error');
      assert.match(await page.getByTestId('error').innerText(), /Images/);
      await generate(page, waitForState, { sampler: 'ddim', steps: 10, n: 4 });

      const ratio = await page.getByTestId('progress').evaluate((p) => p.value / p.max);
      assert.equal(ratio, 1, 'progress reaches value/max = 1');
      const images = await canvasStats(page, '[data-testid=results] canvas');
      assert.equal(images.length, 4, 'one canvas per image');
      for (const [i, img] of images.entries()) {
        assert.ok(img.width > 0 && img.height > 0, `image ${i} has a size`);
        assert.ok(img.variance > 0, `image ${i} is not blank (${JSON.stringify(img)})`);
      }
      const live = await canvasStats(page, '[data-testid=xt], [data-testid=x0]');
      assert.ok(live.every((c) => c.width > 1), 'the live x_t / x_0 views were drawn');
      const backend = (await page.getByTestId('backend').innerText()).trim();
      assert.ok(backend.length > 0, 'the backend is named');
      t.diagnostic(`backend: ${backend}`);
      t.diagnostic(await page.getByTestId('progress-text').innerText());
    });
  });

  test('the default model makes digits: dark background, a few bright strokes', { timeout: 16 * MINUTE }, async (t) => {
    await withPage(t, env, '?backend=cpu', 'e2e-generate-mnist.png', async ({ page, waitForState }) => {
      await waitForState('ready', 5 * MINUTE);
      await generate(page, waitForState, { sampler: 'ddim', steps: 20, n: 4 });
      const digits = await page.$$eval('[data-testid=results] canvas', (canvases) => canvases.map((c) => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let bright = 0;
        let dark = 0;
        for (let i = 0; i < d.length; i += 4) {
          if (d[i] > 160) bright += 1;
          else if (d[i] < 60) dark += 1;
        }
        const n = d.length / 4;
        return { bright: bright / n, dark: dark / n };
      }));
      assert.equal(digits.length, 4);
      // MNIST digits padded to 32x32: ~10% of the pixels are strokes (> 160 of 255), most of the rest is black.
      for (const [i, d] of digits.entries()) {
        assert.ok(d.bright > 0.03 && d.bright < 0.4 && d.dark > 0.5, `image ${i} looks like a digit (${JSON.stringify(d)})`);
      }
      t.diagnostic(JSON.stringify(digits));
    });
  });

  test('a bad model URL shows its error', { timeout: 6 * MINUTE }, async (t) => {
    await withPage(t, env, '?model=/no/such/model/', 'e2e-bad-model.png', async ({ page, waitFor, state, errorText }) => {
      await waitFor(() => false, null, 5 * MINUTE);  // returns once data-state=error
      assert.equal(await state(), 'error');
      const text = await errorText();
      assert.match(text, /\/no\/such\/model\//, 'the error names the URL');
      assert.match(text, /404/, 'the error says what is wrong');
      assert.equal(await page.getByTestId('generate').isDisabled(), true, 'nothing to generate with');
      t.diagnostic(text);
    });
  });

  test('?sha256= accepts the right weights and refuses others, naming both digests', { timeout: 8 * MINUTE }, async (t) => {
    const weights = readFileSync(path.join(REPO_ROOT, TINY, 'diffusion_pytorch_model.safetensors'));
    const right = createHash('sha256').update(weights).digest('hex');
    const wrong = right.replace(/^./, (c) => (c === '0' ? '1' : '0'));
    await withPage(t, env, `?model=${TINY}&sha256=${right}`, 'e2e-sha256-ok.png', async ({ waitForState }) => {
      await waitForState('ready', 5 * MINUTE);
    });
    await withPage(t, env, `?model=${TINY}&sha256=${wrong}`, 'e2e-sha256-bad.png', async ({ page, waitFor, state, errorText }) => {
      await waitFor(() => false, null, 5 * MINUTE);  // returns once data-state=error
      assert.equal(await state(), 'error');
      const text = await errorText();
      assert.match(text, new RegExp(`sha256 mismatch: expected ${wrong}, the file has ${right}`));
      assert.match(text, /diffusion_pytorch_model\.safetensors/, 'the error names the file');
      assert.equal(await page.getByTestId('generate').isDisabled(), true);
      t.diagnostic(text);
    });
  });

  test('cancel stops a DDPM-200 run after the step in flight', { timeout: 12 * MINUTE }, async (t) => {
    await withPage(t, env, `?model=${TINY}`, 'e2e-cancel.png', async ({ page, waitFor, waitForState }) => {
      await waitForState('ready', 5 * MINUTE);
      await page.getByTestId('sampler').selectOption('ddpm');
      await page.getByTestId('steps').fill('200');
      await page.getByTestId('n').fill('1');
      await page.getByTestId('generate').click();
      await waitFor(() => Number(document.body.dataset.stepsDone) >= 2, null, 5 * MINUTE);
      const at = Number(await page.evaluate(() => document.body.dataset.stepsDone));
      await page.getByTestId('cancel').click();
      const state = await waitForState(['ready', 'done'], 5 * MINUTE);
      const done = Number(await page.evaluate(() => document.body.dataset.stepsDone));
      // The page hears of each step one message late: the step in flight may be one past it.
      assert.ok(done <= at + 2, `stopped after the step in flight (clicked at step ${at}, stopped at ${done})`);
      assert.equal(state, 'ready');
      assert.match(await page.getByTestId('status').innerText(), /cancelled/i);
      assert.equal(await page.getByTestId('generate').isEnabled(), true, 'can generate again');
      t.diagnostic(`cancel clicked at step ${at}, stopped at ${done}/200`);
    });
  });

  test('a second visit reads the model from Cache Storage', { timeout: 12 * MINUTE }, async (t) => {
    await withPage(t, env, `?model=${TINY}`, 'e2e-cached.png', async ({ page, waitForState }) => {
      await waitForState('ready', 5 * MINUTE);
      const before = env.requests.length;
      await page.reload();
      await waitForState('ready', 5 * MINUTE);
      const modelRequests = env.requests.slice(before).filter((u) => u.startsWith(TINY));
      assert.deepEqual(modelRequests, [], 'no model file fetched from the network');
      assert.match(await page.getByTestId('model-progress').innerText(), /from the cache/);
    });
  });
});
