// End to end: fine-tuning in the page. Upload four images (and one that is not an image), tune
// 20 steps (on one CPU worker per core), generate with the tuned model, download its weights
// (and sample from them with the native `ddpm` when built), reload: the drawings and the tuned
// model are still there.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MINUTE, REPO_ROOT, TINY, canvasStats, startEnv, withPage } from './helpers.mjs';

const FIXTURES = path.join(REPO_ROOT, 'tests/e2e/fixtures');
const DDPM = process.env.DDPM_BIN ||
  path.join(process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache/ddpm-web/target'), 'debug/ddpm');

describe('fine-tuning in the page', { timeout: 30 * MINUTE }, () => {
  let env;
  before(async () => { env = await startEnv(); });
  after(async () => { await env?.close(); });

  test('upload, tune 20 steps, generate, download, reload', { timeout: 25 * MINUTE }, async (t) => {
    // The tiny model on the CPU backend: SwiftShader's WebGPU takes ~30 s per training step here
    // (tests/web.rs covers fine-tuning on WebGPU).
    await withPage(t, env, `?backend=cpu&model=${TINY}`, 'e2e-tune.png', async ({ page, waitForState }) => {
      const tuneState = (wanted, timeout) => page.waitForFunction(
        (w) => w.includes(document.getElementById('tune').dataset.tuneState), [].concat(wanted), { timeout, polling: 250 });
      await waitForState('ready', 5 * MINUTE);
      const files = ['seven-1.png', 'seven-2.png', 'seven-3.png', 'seven-4.png', 'not-an-image.png'];
      await page.getByTestId('upload').setInputFiles(files.map((f) => path.join(FIXTURES, f)));
      // Files are read one after another; the skipped one is reported once all are read.
      await page.waitForFunction(() => document.getElementById('tune-error').textContent.includes('not-an-image.png'));
      await page.waitForFunction(() => document.querySelectorAll('[data-testid=dataset] img').length === 4);
      assert.match(await page.getByTestId('tune-error').innerText(), /not-an-image\.png: not a PNG or JPEG image/);
      assert.equal(await page.getByTestId('dataset-count').innerText(), '4 image(s)');

      // The page is set to DDPM-1000; before / after still runs DDIM, at most 50 steps.
      await page.getByTestId('sampler').selectOption('ddpm');
      assert.equal(await page.getByTestId('steps').inputValue(), '1000');
      await page.getByTestId('tune-steps').fill('20');
      await page.getByTestId('tune-batch').fill('4');
      await page.getByTestId('tune-lr').fill('1e-3');
      await page.getByTestId('tune-start').click();
      await tuneState(['done', 'error'], 15 * MINUTE);
      const status = await page.getByTestId('tune-status').innerText();
      assert.equal(await page.evaluate(() => document.getElementById('tune').dataset.tuneState), 'done', await page.getByTestId('tune-error').innerText());
      // batch 4 on the CPU: shared by one worker per core, up to 4 (www/engine/cpu-pool.js)
      const workers = Math.min(4, os.availableParallelism());
      const split = workers > 1 ? ` on ${workers} CPU workers` : '';
      assert.match(status, new RegExp(`Done after 20 step\\(s\\)${split}; loss [\\d.]+ → [\\d.]+\\. Before / after: DDIM, 50 steps, seed \\d+\\.`));
      assert.ok(Number(await page.getByTestId('loss-curve').getAttribute('data-points')) >= 2, 'the loss curve has points');
      for (const side of ['before', 'after']) {
        const grid = await canvasStats(page, `[data-testid=${side}] canvas`);
        assert.equal(grid.length, 4, `${side}: 4 images`);
        assert.ok(grid.every((c) => c.variance > 0), `${side}: not blank`);
      }
      t.diagnostic(status);

      assert.equal(await page.getByTestId('use-tuned').isChecked(), true, 'sampling switches to the tuned model');
      await page.getByTestId('steps').fill('5');
      await page.getByTestId('n').fill('2');
      await page.getByTestId('generate').click();
      await waitForState('done', 5 * MINUTE);
      assert.match(await page.getByTestId('status').innerText(), /fine-tuned model/);

      const dir = mkdtempSync(path.join(os.tmpdir(), 'ddpm-tuned-'));
      const downloads = [];
      page.on('download', (d) => downloads.push(d));
      await page.getByTestId('download-weights').click();
      for (let i = 0; i < 100 && downloads.length < 3; i++) await page.waitForTimeout(100);
      const names = downloads.map((d) => d.suggestedFilename()).sort();
      assert.deepEqual(names, ['config.json', 'diffusion_pytorch_model.safetensors', 'scheduler_config.json']);
      for (const d of downloads) await d.saveAs(path.join(dir, d.suggestedFilename()));
      // Each file also has its own button, for browsers that hold back the 2nd and 3rd download.
      const buttons = page.getByTestId('weights-files').getByRole('button');
      assert.deepEqual((await buttons.allInnerTexts()).sort(), names);
      const again = page.waitForEvent('download');
      await buttons.filter({ hasText: 'config.json' }).first().click();
      assert.equal((await again).suggestedFilename(), 'config.json');
      const st = readFileSync(path.join(dir, 'diffusion_pytorch_model.safetensors'));
      const header = JSON.parse(st.subarray(8, 8 + Number(st.readBigUInt64LE(0))).toString());
      assert.ok(header['conv_in.weight'], 'diffusers key names in the downloaded weights');
      if (existsSync(DDPM)) {
        const out = execFileSync(DDPM, ['sample', '--model', dir, '--n', '2', '--steps', '3', '--out', path.join(dir, 'samples')]).toString();
        assert.match(out, /wrote 2 images/);
        t.diagnostic(`ddpm sample on the downloaded weights: ${out.trim()}`);
      } else {
        t.diagnostic(`${DDPM} not built: skipped sampling the downloaded weights natively`);
      }

      await page.reload();
      await waitForState('ready', 5 * MINUTE);
      await tuneState('done', 2 * MINUTE);
      await page.waitForFunction(() => document.querySelectorAll('[data-testid=dataset] img').length === 4);
      assert.match(await page.getByTestId('tuned-note').innerText(), /Fine-tuned weights in use \(20 step/);
      assert.equal(await page.getByTestId('use-tuned').isChecked(), true);
      assert.match(await page.getByTestId('tune-status').innerText(), /restored/);
    });
  });

  test('on a software WebGPU adapter, fine-tuning runs on the CPU workers', { timeout: 10 * MINUTE }, async (t) => {
    await withPage(t, env, `?model=${TINY}`, 'e2e-tune-software-gpu.png', async ({ page, waitForState }) => {
      await waitForState('ready', 5 * MINUTE);
      const software = await page.evaluate(async () => Boolean((await navigator.gpu?.requestAdapter())?.info?.isFallbackAdapter));
      if (!software || !/WebGPU/.test(await page.getByTestId('backend').innerText())) {
        return t.skip('no software WebGPU adapter here');
      }
      await page.getByTestId('upload').setInputFiles([1, 2, 3, 4].map((i) => path.join(FIXTURES, `seven-${i}.png`)));
      await page.waitForFunction(() => document.querySelectorAll('[data-testid=dataset] img').length === 4);
      await page.getByTestId('steps').fill('10');  // before / after: DPM-Solver++ (the default), 10 steps, 4 images, on the CPU workers too
      await page.getByTestId('tune-steps').fill('6');
      await page.getByTestId('tune-batch').fill('4');
      await page.getByTestId('tune-start').click();
      await page.waitForFunction(() => ['done', 'error'].includes(document.getElementById('tune').dataset.tuneState), null, { timeout: 8 * MINUTE, polling: 250 });
      assert.equal(await page.evaluate(() => document.getElementById('tune').dataset.tuneState), 'done', await page.getByTestId('tune-error').innerText());
      const workers = Math.min(4, os.availableParallelism());
      const on = workers > 1 ? `on ${workers} CPU workers` : 'on the CPU';
      assert.match(await page.getByTestId('tune-status').innerText(),
        new RegExp(`Done after 6 step\\(s\\) ${on} \\(the WebGPU adapter here is a software one.*Before / after: DPM-Solver\\+\\+, 10 steps, seed \\d+, on the CPU workers\\.`));
      assert.ok((await canvasStats(page, '[data-testid=after] canvas')).every((c) => c.variance > 0), 'after: not blank');
      // the tuned weights went back to the WebGPU engine too: Generate makes the tuned model's images there
      await page.getByTestId('steps').fill('2');
      await page.getByTestId('generate').click();
      await waitForState('done', 5 * MINUTE);
      assert.match(await page.getByTestId('status').innerText(), /fine-tuned model/);
      assert.ok((await canvasStats(page, '[data-testid=results] canvas')).every((c) => c.variance > 0), 'results: not blank');
    });
  });

  test('kept weights the engine refuses stay kept, to download or reset', { timeout: 10 * MINUTE }, async (t) => {
    await withPage(t, env, `?backend=cpu&model=${TINY}`, 'e2e-tune-unusable.png', async ({ page, waitForState }) => {
      await waitForState('ready', 5 * MINUTE);
      const kept = (op) => page.evaluate(async ([model, op]) => {
        const store = await import('/www/ui/store.js');
        const url = new URL(model, location.href).href;
        if (op === 'put') return store.putTuned(url, { weights: new Uint8Array(16), steps: 3, saved: Date.now() });
        return (await store.getTuned(url))?.weights?.length ?? null;
      }, [TINY, op]);
      await kept('put');
      await page.reload();
      await waitForState('ready', 5 * MINUTE);
      await page.waitForFunction(() => document.getElementById('tune').dataset.tuneState === 'error', null, { timeout: 2 * MINUTE });
      assert.match(await page.getByTestId('tune-error').innerText(), /could not be loaded: .* They are still kept/s);
      assert.equal(await kept('get'), 16, 'an error does not delete them');
      assert.equal(await page.getByTestId('download-weights').isEnabled(), true);
      await page.getByTestId('reset-tuned').click();
      await page.waitForFunction(() => document.getElementById('tune').dataset.tuneState === 'idle');
      assert.equal(await kept('get'), null, 'Reset deletes them');
    });
  });
});
