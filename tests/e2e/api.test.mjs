// End to end: the promise-based JS API (www/ddpm.js) from a page of one's own, on the CPU backend
// with the tiny parity model: load with download progress, generate with progress, previews and
// cancel, and errors that reject with the engine's message.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MINUTE, TINY, startEnv, withPage } from './helpers.mjs';

describe('www/ddpm.js', { timeout: 15 * MINUTE }, () => {
  let env;
  before(async () => { env = await startEnv(); });
  after(async () => { await env?.close(); });

  test('connect, load, generate with progress and previews, cancel, errors', { timeout: 10 * MINUTE }, async (t) => {
    await withPage(t, env, 'tests/e2e/fixtures/api.html', 'e2e-api.png', async ({ page }) => {
      const r = await page.evaluate(async (tiny) => {
        const { connect } = await import('/www/ddpm.js');
        const wrongBackend = await connect({ backend: 'gpu!' }).then(() => null, (e) => e.message);
        const ddpm = await connect({ backend: 'cpu' });
        const downloads = [];
        const model = await ddpm.load(tiny, { onDownload: (d) => downloads.push(d) });
        const progress = [];
        const previews = [];
        const run = ddpm.generate(model, {
          n: 2, sampler: 'ddim', steps: 5, seed: 7, previewEvery: 2,
          onProgress: (p) => progress.push(p), onPreview: (p) => previews.push(p),
        });
        const out = await run.result;
        const spread = out.images.map((rgba) => Math.max(...rgba.filter((_, i) => i % 4 === 0)) - Math.min(...rgba.filter((_, i) => i % 4 === 0)));
        const again = await ddpm.generate(model, { n: 2, sampler: 'ddim', steps: 5, seed: 7 }).result;
        const same = again.images.every((img, k) => img.every((v, i) => v === out.images[k][i]));

        let cancelAt = null;
        const long = ddpm.generate(model, { sampler: 'ddpm', steps: 500, onProgress: (p) => { if (cancelAt === null) { cancelAt = p.done; long.cancel(); } } });
        const cancelled = await long.result;

        // DPM-Solver++ by name, its default steps (20), and a sampler the engine does not know
        const dpmSteps = [];
        const dpm = await ddpm.generate(model, { n: 1, sampler: 'dpm++', seed: 7, onProgress: (p) => dpmSteps.push(p.total) }).result;
        const dpmSpread = Math.max(...dpm.images[0]) - Math.min(...dpm.images[0]);
        const badSampler = await ddpm.generate(model, { sampler: 'euler' }).result.then(() => null, (e) => e.message);

        const badModel = await ddpm.load('/no/such/model/').then(() => null, (e) => e.message);
        const badRun = await ddpm.generate(model, { n: 0 }).result.then(() => null, (e) => e.message);
        return {
          wrongBackend, backend: ddpm.backend, info: model.info, layout: model.layout,
          downloads: downloads.map((d) => d.file), progress: progress.map((p) => `${p.done}/${p.total}`),
          previews: previews.map((p) => [p.done, p.xt?.width, p.x0?.height]), images: out.images.length,
          bytes: out.images[0].length, width: out.width, height: out.height, spread, same, cancelled, cancelAt, badModel, badRun,
          dpmSteps: dpmSteps.at(-1), dpmSpread, badSampler,
        };
      }, TINY);
      t.diagnostic(JSON.stringify(r));
      assert.match(r.wrongBackend, /backend must be 'auto' or 'cpu'/);
      assert.equal(r.backend.isGpu, false);
      assert.equal(r.info.num_train_timesteps, 1000);
      assert.equal(r.layout, 'flat');
      assert.ok(r.downloads.includes('diffusion_pytorch_model.safetensors'), 'download progress for the weights');
      assert.deepEqual(r.progress, ['1/5', '2/5', '3/5', '4/5', '5/5']);
      assert.deepEqual(r.previews.map((p) => p[0]), [2, 4, 5], 'previews every 2 steps and at the last');
      assert.ok(r.previews.every((p) => p[1] > 0 && p[2] > 0), 'previews carry x_t and x_0 frames');
      assert.equal(r.images, 2);
      assert.equal(r.bytes, r.width * r.height * 4);
      assert.ok(r.spread.every((s) => s > 0), 'the images are not blank');
      assert.equal(r.same, true, 'the same seed gives the same images');
      assert.equal(r.cancelled, null, 'a cancelled run resolves to null');
      assert.ok(r.cancelAt < 500);
      assert.match(r.badModel, /\/no\/such\/model\//, 'a bad model URL rejects, naming it');
      assert.match(r.badRun, /\S/, 'a bad setting rejects with a message');
      assert.equal(r.dpmSteps, 20, 'DPM-Solver++ runs 20 steps unless told');
      assert.ok(r.dpmSpread > 0, 'DPM-Solver++ makes an image');
      assert.match(r.badSampler, /unknown sampler "euler" \(expected ddpm, ddim, dpm\+\+, dpm\+\+-karras\)/);
    });
  });

  test('on the CPU, a batch split across workers gives the images and previews of one worker', { timeout: 10 * MINUTE }, async (t) => {
    await withPage(t, env, 'tests/e2e/fixtures/api.html', 'e2e-api-workers.png', async ({ page }) => {
      const r = await page.evaluate(async (tiny) => {
        const { connect } = await import('/www/ddpm.js');
        const ddpm = await connect({ backend: 'cpu' });
        const model = await ddpm.load(tiny);
        const go = async (workers) => {
          const previews = [];
          const progress = [];
          // 5 images: a grid of 3 columns, so rows of 3 and 2 on two workers; DDPM draws noise every step
          const out = await ddpm.generate(model, {
            n: 5, sampler: 'ddpm', steps: 6, seed: 9, previewEvery: 2, workers,
            onPreview: (p) => previews.push(p), onProgress: (p) => progress.push(p.done),
          }).result;
          return { out, previews, progress };
        };
        const one = await go(1);
        const two = await go(2);
        const equal = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
        let cancelAt = null;
        const long = ddpm.generate(model, { n: 4, sampler: 'ddpm', steps: 500, workers: 2, onProgress: (p) => { if (cancelAt === null) { cancelAt = p.done; long.cancel(); } } });
        const cancelled = await long.result;
        const tooMany = await ddpm.generate(model, { n: 300, workers: 2 }).result.then(() => null, (e) => e.message);
        return {
          workers: [one.out.workers, two.out.workers],
          sameImages: one.out.images.length === 5 && one.out.images.every((img, k) => equal(img, two.out.images[k])),
          previewSteps: [one.previews.map((p) => p.done), two.previews.map((p) => p.done)],
          previewSizes: [one.previews.map((p) => `${p.xt.width}x${p.xt.height}`), two.previews.map((p) => `${p.xt.width}x${p.xt.height}`)],
          samePreviews: one.previews.every((p, k) => equal(p.xt.rgba, two.previews[k].xt.rgba) && equal(p.x0.rgba, two.previews[k].x0.rgba)),
          progress: two.progress, cancelled, cancelAt, tooMany,
        };
      }, TINY);
      t.diagnostic(JSON.stringify(r));
      assert.deepEqual(r.workers, [1, 2], 'workers: 2 ran the batch on two workers');
      assert.equal(r.sameImages, true, 'the same images, whatever the split');
      assert.deepEqual(r.previewSteps, [[2, 4, 6], [2, 4, 6]]);
      assert.deepEqual(r.previewSizes[1], r.previewSizes[0], 'the bands stack into the whole grid');
      assert.equal(r.samePreviews, true, 'the same previews, whatever the split');
      assert.deepEqual(r.progress, [1, 2, 3, 4, 5, 6]);
      assert.equal(r.cancelled, null, 'a split run can be cancelled');
      assert.ok(r.cancelAt < 500);
      assert.match(r.tooMany, /n must be between 1 and 256, got 300/, 'the whole request is checked, not its parts');
    });
  });
});
