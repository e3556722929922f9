// End to end: models on the Hub by id, against a local stand-in for the Hub (mock-hub.mjs: a
// redirect to a second origin, CORS, 404 / 403 / 401), no network. The repositories hold random
// weights with the exact configs of google/ddpm-cifar10-32 (safetensors, 143 MB, written by
// `ddpm init`) and a google/ddpm-celebahq-256-style folder: diffusers 0.1.1's configs and only a
// .bin with the old attention names (the tiny parity model's weights, written by torch-bin.mjs).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { MINUTE, REPO_ROOT, engineStats, startEnv, withPage } from './helpers.mjs';
import { startMockHub } from './mock-hub.mjs';
import { legacyAttentionName, readSafetensors, torchSave } from './torch-bin.mjs';

const run = promisify(execFile);
const TARGET = process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache/ddpm-web/target');
const DDPM = path.join(TARGET, 'debug/ddpm');
const HUB_CONFIGS = path.join(REPO_ROOT, 'tests/data/hub');
const TINY = path.join(REPO_ROOT, 'tests/data/tiny');

/** The repositories the mock Hub serves, written into `dir`. */
async function makeRepos(dir) {
  const cifar = path.join(dir, 'cifar10-32');
  const cfg = path.join(HUB_CONFIGS, 'ddpm-cifar10-32');
  await run(DDPM, ['init', '--config', path.join(cfg, 'config.json'), '--scheduler', path.join(cfg, 'scheduler_config.json'), '--out', cifar]);
  fs.copyFileSync(path.join(cfg, 'model_index.json'), path.join(cifar, 'model_index.json'));

  // celebahq-256's layout and formats (flat, model_index.json, .bin only, old attention names)
  // at the tiny model's size, so it runs in seconds.
  const binOnly = path.join(dir, 'bin-only');
  fs.mkdirSync(binOnly);
  const tensors = readSafetensors(fs.readFileSync(path.join(TINY, 'diffusion_pytorch_model.safetensors')));
  fs.writeFileSync(path.join(binOnly, 'diffusion_pytorch_model.bin'), torchSave(tensors, legacyAttentionName));
  for (const f of ['config.json', 'scheduler_config.json']) fs.copyFileSync(path.join(TINY, f), path.join(binOnly, f));
  fs.copyFileSync(path.join(HUB_CONFIGS, 'ddpm-celebahq-256/model_index.json'), path.join(binOnly, 'model_index.json'));

  // A pipeline layout: model_index.json, unet/, scheduler/.
  const pipeline = path.join(dir, 'pipeline');
  fs.mkdirSync(path.join(pipeline, 'unet'), { recursive: true });
  fs.mkdirSync(path.join(pipeline, 'scheduler'));
  fs.copyFileSync(path.join(TINY, 'config.json'), path.join(pipeline, 'unet/config.json'));
  fs.copyFileSync(path.join(TINY, 'diffusion_pytorch_model.safetensors'), path.join(pipeline, 'unet/diffusion_pytorch_model.safetensors'));
  fs.copyFileSync(path.join(TINY, 'scheduler_config.json'), path.join(pipeline, 'scheduler/scheduler_config.json'));
  fs.writeFileSync(path.join(pipeline, 'model_index.json'), '{"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"], "scheduler": ["diffusers", "DDPMScheduler"]}');
  return {
    'google/ddpm-cifar10-32': cifar, 'test/bin-only': binOnly, 'test/pipeline': pipeline,
    'test/private': binOnly, 'test/empty': fs.mkdtempSync(path.join(dir, 'empty-')),
  };
}

describe('hf: models on a stand-in Hub', { timeout: 20 * MINUTE }, () => {
  let dir;
  let hub;
  let env;
  before(async () => {
    assert.ok(fs.existsSync(DDPM), `${DDPM} is missing: build the CLI first (cargo build, or make test-native)`);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ddpm-hub-'));
    hub = await startMockHub({ repos: await makeRepos(dir), private: ['test/private'], cut: ['diffusion_pytorch_model.bin'] });
    env = await startEnv();
  });
  after(async () => {
    await env?.close();
    hub?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the CLI downloads hf: ids into HF_HOME once, and names what is missing', { timeout: 10 * MINUTE }, async (t) => {
    const home = path.join(dir, 'hf-home');
    const cli = (args) => run(DDPM, args, { env: { ...process.env, HF_ENDPOINT: hub.hub, HF_HOME: home } })
      .then(({ stdout, stderr }) => ({ ok: true, out: stdout + stderr }), (e) => ({ ok: false, out: `${e.stdout}${e.stderr}` }));
    const out = path.join(dir, 'cifar-out');
    const first = await cli(['sample', '--model', 'hf:google/ddpm-cifar10-32', '--n', '2', '--steps', '2', '--sampler', 'ddim', '--out', out]);
    t.diagnostic(first.out);
    assert.ok(first.ok, first.out);
    const png = fs.readFileSync(path.join(out, '0000.png'));
    assert.equal(png.readUInt32BE(16), 32, 'a 32-pixel-wide image');
    assert.equal(png[25], 2, 'PNG colour type 2: RGB');
    const snapshot = path.join(home, 'hub/models--google--ddpm-cifar10-32/snapshots');
    assert.ok(fs.existsSync(snapshot), `huggingface_hub's cache layout under HF_HOME: ${snapshot}`);

    const before = hub.requests.length;
    const again = await cli(['sample', '--model', 'hf:google/ddpm-cifar10-32', '--n', '1', '--steps', '1', '--sampler', 'ddim', '--out', out]);
    assert.ok(again.ok, again.out);
    assert.equal(hub.requests.slice(before).filter((r) => r.includes('.safetensors')).length, 0, 'the weights come from the cache the second time');

    // .bin only, old attention names, and the pipeline layout: the same outputs as the tiny model.
    const tinyOut = path.join(dir, 'tiny-out');
    const ref = await cli(['sample', '--model', TINY, '--n', '1', '--steps', '3', '--sampler', 'ddim', '--seed', '3', '--out', tinyOut]);
    assert.ok(ref.ok, ref.out);
    for (const id of ['hf:test/bin-only', 'hf:test/pipeline', 'hf:test/pipeline@main/unet']) {
      const o = path.join(dir, id.replace(/\W/g, '_'));
      const r = await cli(['sample', '--model', id, '--n', '1', '--steps', '3', '--sampler', 'ddim', '--seed', '3', '--out', o]);
      assert.ok(r.ok, `${id}: ${r.out}`);
      assert.deepEqual(fs.readFileSync(path.join(o, '0000.png')), fs.readFileSync(path.join(tinyOut, '0000.png')), `${id} samples as the tiny model does`);
    }

    const empty = await cli(['sample', '--model', 'hf:test/empty', '--n', '1', '--out', path.join(dir, 'x')]);
    assert.ok(!empty.ok);
    assert.match(empty.out, /hf:test\/empty: the repository has neither config\.json nor model_index\.json/);
    const closed = await cli(['sample', '--model', 'hf:test/private', '--n', '1', '--out', path.join(dir, 'x')]);
    assert.ok(!closed.ok);
    assert.match(closed.out, /403.*private or gated/);
    const bad = await cli(['sample', '--model', 'hf:nothing', '--n', '1', '--out', path.join(dir, 'x')]);
    assert.match(bad.out, /--model hf:nothing: no OWNER\/NAME/);
  });

  test('the JS API loads hf: ids from the Hub setting: progress, a .bin converted once, errors', { timeout: 10 * MINUTE }, async (t) => {
    await withPage(t, env, 'tests/e2e/fixtures/api.html', 'e2e-hub-api.png', async ({ page }) => {
      const r = await page.evaluate(async (hubUrl) => {
        const { connect } = await import('/www/ddpm.js');
        const ddpm = await connect({ backend: 'cpu' });
        const downloads = [];
        const onDownload = (d) => downloads.push(d);
        // Over the size the visitor agreed to: refused with the size, then confirmed.
        const tooLarge = await ddpm.load('hf:google/ddpm-cifar10-32', { hub: hubUrl, maxBytes: 100e6 }).then(() => null, (e) => ({ message: e.message, tooLarge: e.tooLarge }));
        const cifar = await ddpm.load('hf:google/ddpm-cifar10-32', { hub: hubUrl, onDownload });
        const out = await ddpm.generate(cifar, { n: 16, sampler: 'ddim', steps: 2, seed: 1 }).result;
        const colourful = out.images.filter((rgba) => {
          let diff = 0;
          for (let i = 0; i < rgba.length; i += 4) diff += Math.abs(rgba[i] - rgba[i + 1]) + Math.abs(rgba[i + 1] - rgba[i + 2]);
          return diff > 0;
        }).length;
        const weights = downloads.filter((d) => d.file === 'diffusion_pytorch_model.safetensors');

        const binDownloads = [];
        const bin = await ddpm.load('hf:test/bin-only', { hub: hubUrl, onDownload: (d) => binDownloads.push(d) });
        const binOut = await ddpm.generate(bin, { n: 1, sampler: 'ddim', steps: 3, seed: 3 }).result;
        const pipe = await ddpm.load('hf:test/pipeline', { hub: hubUrl });
        const pipeOut = await ddpm.generate(pipe, { n: 1, sampler: 'ddim', steps: 3, seed: 3 }).result;
        const kept = await caches.open('ddpm-web-models-v1').then((c) => c.keys()).then((ks) => ks.map((k) => k.url));

        const err = (id) => ddpm.load(id, { hub: hubUrl }).then(() => null, (e) => e.message);
        return {
          tooLarge, layout: cifar.layout, info: cifar.info, n: out.images.length, width: out.width, colourful,
          lastWeights: weights.at(-1), speeds: weights.filter((d) => d.bytesPerSec > 0).length,
          binLayout: bin.layout, converting: binDownloads.some((d) => d.converting), attempts: Math.max(...binDownloads.map((d) => d.attempt || 1)),
          same: binOut.images[0].every((v, i) => v === pipeOut.images[0][i]), kept,
          empty: await err('hf:test/empty'), closed: await err('hf:test/private'), missing: await err('hf:test/nothing'),
          malformed: await err('hf:google'), badHub: await ddpm.load('hf:a/b', { hub: 'ftp://x' }).then(() => null, (e) => e.message),
        };
      }, hub.hub);
      t.diagnostic(JSON.stringify({ ...r, kept: r.kept.length }));
      assert.match(r.tooLarge.message, /diffusion_pytorch_model\.safetensors: 14\d MB to download \(over 100 MB\): confirm/);
      assert.equal(r.tooLarge.tooLarge.file, 'diffusion_pytorch_model.safetensors');
      assert.ok(r.tooLarge.tooLarge.bytes > 142e6 && r.tooLarge.tooLarge.bytes < 144e6, 'the size of 35.7 M f32 parameters');
      assert.equal(r.layout, 'flat');
      assert.deepEqual(r.info.sample_size, [32, 32]);
      assert.equal(r.info.in_channels, 3);
      assert.equal(r.info.params, 35_746_307, "google/ddpm-cifar10-32's 35.7 M parameters");
      assert.equal(r.n, 16);
      assert.equal(r.width, 32);
      assert.equal(r.colourful, 16, 'colour images (R, G and B differ)');
      assert.equal(r.lastWeights.loaded, r.lastWeights.total, 'the weights downloaded whole, with their size');
      assert.ok(r.speeds > 0, 'progress carries the download speed');
      assert.equal(r.binLayout, 'flat');
      assert.ok(r.converting, 'the .bin is converted in the page');
      assert.equal(r.attempts, 2, 'the cut .bin download started again once');
      assert.ok(r.same, 'the .bin with old attention names samples as the same weights in safetensors do');
      assert.ok(r.kept.some((u) => u.endsWith('test/bin-only/resolve/main/diffusion_pytorch_model.safetensors')), 'the converted .bin is kept as safetensors');
      assert.ok(!r.kept.some((u) => u.endsWith('.bin')), 'the .bin itself is not kept');
      assert.match(r.empty, /resolve\/main\/config\.json: HTTP 404.*model_index\.json: HTTP 404.*there is no diffusers model/);
      assert.match(r.closed, /HTTP 403.*refuses access.*private/);
      assert.match(r.missing, /HTTP 401/);
      assert.match(r.malformed, /"hf:google" is not a Hub model id \(no OWNER\/NAME\)/);
      assert.match(r.badHub, /hub "ftp:\/\/x" is not an http\(s\) URL/);
    });
  });

  test('the page: ?model=hf: shows the size, downloads on the visitor\'s word with MB/s, then 16 colour images', { timeout: 10 * MINUTE }, async (t) => {
    const query = `?model=hf:google/ddpm-cifar10-32&hub=${encodeURIComponent(hub.hub)}&backend=cpu&sampler=ddim&steps=2&n=16`;
    await withPage(t, env, query, 'e2e-hub-page.png', async ({ page, waitFor, waitForState }) => {
      await page.getByTestId('confirm-download').waitFor({ state: 'visible', timeout: 2 * MINUTE });
      assert.match(await page.getByTestId('confirm-download').innerText(), /diffusion_pytorch_model\.safetensors is 14\d MB[\s\S]*Download 14\d MB/);
      const seen = [];
      const watch = setInterval(() => page.locator('#model-text').innerText().then((x) => seen.push(x), () => {}), 100);
      await page.getByTestId('confirm-yes').click();
      await waitForState('ready', 5 * MINUTE);
      clearInterval(watch);
      t.diagnostic(seen.filter((x) => /MB\/s/.test(x)).slice(-1)[0] ?? '(no speed seen)');
      assert.ok(seen.some((x) => /downloading diffusion_pytorch_model\.safetensors [\d.]+\/14\d\.\d MB/.test(x)), 'progress in MB');
      const options = await page.getByTestId('model-pick').locator('option').allInnerTexts();
      assert.ok(options.some((o) => /CelebA-HQ faces \(google\/ddpm-celebahq-256\): 256×256, 455 MB, flat folder, \.bin converted once/.test(o)), options.join(' | '));
      await page.getByTestId('generate').click();
      await waitForState('done', 5 * MINUTE);
      const images = await page.evaluate(() => [...document.querySelectorAll('#results canvas')].map((c) => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let colour = 0;
        for (let i = 0; i < d.length; i += 4) colour += Math.abs(d[i] - d[i + 1]) + Math.abs(d[i + 1] - d[i + 2]);
        return { w: c.width, colour, label: c.getAttribute('aria-label') };
      }));
      assert.equal(images.length, 16);
      assert.ok(images.every((i) => i.w === 32 && i.colour > 0), 'sixteen 32-pixel colour images');
      assert.match(images[0].label, /DDIM, 2 steps/);
      await waitFor(() => document.querySelectorAll('#cached-models li').length > 0, null, MINUTE);
      assert.match(await page.getByTestId('cached-models').innerText(), /google\/ddpm-cifar10-32\/resolve\/main\/ — 14\d MB/);
    });
  });

  test('WebGPU: a batch over the largest buffer runs in parts; a model over it is refused with the sizes', { timeout: 10 * MINUTE }, async (t) => {
    const run = async (backend, gpuMaxBuffer) => {
      await withPage(t, env, 'tests/e2e/fixtures/api.html', `e2e-hub-limits-${backend}.png`, async ({ page }) => {
        results[backend] = await page.evaluate(async ({ backend, gpuMaxBuffer, tiny }) => {
          const hostHub = (await import('/www/engine/client.js')).connect();
          hostHub.post({ type: 'init', preferGpu: backend !== 'cpu', testHooks: true, gpuMaxBuffer, warmOnSoftware: true });
          const { connect } = await import('/www/ddpm.js');
          const ddpm = await connect({ backend });
          const model = await ddpm.load(tiny);
          const progress = [];
          const out = await ddpm.generate(model, { n: 5, sampler: 'ddim', steps: 2, seed: 9, workers: 1, onProgress: (p) => progress.push(`${p.done}/${p.total}`) }).result;
          return { isGpu: ddpm.backend.isGpu, info: model.info, progress, images: out.images.map((x) => Array.from(x)) };
        }, { backend, gpuMaxBuffer, tiny: '/tests/data/tiny/' });
        results[backend].warmed = (await engineStats(page)).warmed;
      });
    };
    const results = {};
    // The tiny model's largest tensor: its attention's scores, 4 heads x (8 x 8)^2 x 4 bytes =
    // 65,536 per image (over the top level's (16 + 32) x 16 x 16 x 4 = 49,152): 2 images a call.
    await run('auto', 140_000);
    await run('cpu');
    const gpu = results.auto;
    t.diagnostic(JSON.stringify({ isGpu: gpu.isGpu, progress: gpu.progress, bytes: gpu.info.image_tensor_bytes }));
    assert.equal(gpu.isGpu, true, 'SwiftShader gives a WebGPU adapter');
    // The kernels were compiled on a zero-weight stand-in while the weights downloaded (on
    // SwiftShader only by the test hook); the CPU has nothing to compile.
    assert.deepEqual([gpu.warmed, results.cpu.warmed], [1, 0]);
    assert.equal(gpu.info.image_tensor_bytes, 65_536);
    assert.deepEqual(gpu.progress, ['1/6', '2/6', '3/6', '4/6', '5/6', '6/6'], 'three calls of 2, 2 and 1 images');
    assert.equal(gpu.images.length, 5);
    const worst = Math.max(...gpu.images.flatMap((img, k) => img.map((v, i) => Math.abs(v - results.cpu.images[k][i]))));
    assert.ok(worst <= 3, `the parts are the images of one batch (as the CPU makes them): worst difference ${worst}/255`);

    await withPage(t, env, 'tests/e2e/fixtures/api.html', 'e2e-hub-limits-refused.png', async ({ page }) => {
      const message = await page.evaluate(async (tiny) => {
        (await import('/www/engine/client.js')).connect().post({ type: 'init', preferGpu: true, testHooks: true, gpuMaxBuffer: 10_000 });
        const ddpm = await (await import('/www/ddpm.js')).connect();
        const model = await ddpm.load(tiny);
        return ddpm.generate(model, { n: 1, steps: 1 }).result.then(() => null, (e) => e.message);
      }, '/tests/data/tiny/');
      assert.equal((await engineStats(page)).warmed, 0, 'no warm-up on a software adapter');
      assert.match(message, /one 16×16 image of this model needs a 64 KiB buffer on the GPU, and this adapter's WebGPU allows at most 10 KiB in one buffer/);
      assert.match(message, /maxStorageBufferBindingSize[\s\S]*\?backend=cpu/);
    });
  });

  test('<ddpm-demo model="hf:..." hub>: the size and a button past max-mb, then images', { timeout: 10 * MINUTE }, async (t) => {
    await withPage(t, env, 'tests/e2e/fixtures/api.html', 'e2e-hub-embed.png', async ({ page }) => {
      await page.evaluate(async (hubUrl) => {
        await import('/www/embed.js');
        document.body.innerHTML = `<ddpm-demo model="hf:google/ddpm-cifar10-32" hub="${hubUrl}" backend="cpu" n="2" steps="2" sampler="ddim" seed="4"></ddpm-demo>`;
      }, hub.hub);
      const demo = page.locator('ddpm-demo');
      const button = demo.locator('button[part="confirm-download"]');
      await button.waitFor({ state: 'visible', timeout: 2 * MINUTE });
      assert.equal(await button.innerText(), 'Download 143 MB');
      const shadowText = () => demo.evaluate((e) => e.shadowRoot.textContent);
      assert.match(await shadowText(), /diffusion_pytorch_model\.safetensors is 143 MB/);
      await button.click();
      await page.waitForFunction(() => document.querySelector('ddpm-demo').dataset.state === 'ready' || document.querySelector('ddpm-demo').dataset.state === 'error', null, { timeout: 5 * MINUTE });
      assert.equal(await demo.getAttribute('data-state'), 'ready', await shadowText());
      const done = page.evaluate(() => new Promise((resolve) => document.querySelector('ddpm-demo').addEventListener('done', (e) => resolve(e.detail), { once: true })));
      await demo.locator('button[part="generate"]').click();
      const detail = await done;
      assert.equal(detail.images, 2, 'two images');
      assert.equal(detail.width, 32);
    });
  });

  test('the CIFAR-10 config on WebGPU (SwiftShader): one image, 2 steps, in colour', { timeout: 10 * MINUTE }, async (t) => {
    await withPage(t, env, 'tests/e2e/fixtures/api.html', 'e2e-hub-webgpu.png', async ({ page }) => {
      const r = await page.evaluate(async (hubUrl) => {
        const ddpm = await (await import('/www/ddpm.js')).connect();
        const model = await ddpm.load('hf:google/ddpm-cifar10-32', { hub: hubUrl });
        const out = await ddpm.generate(model, { n: 1, sampler: 'ddim', steps: 2, seed: 1 }).result;
        const rgba = out.images[0];
        let colour = 0;
        for (let i = 0; i < rgba.length; i += 4) colour += Math.abs(rgba[i] - rgba[i + 1]) + Math.abs(rgba[i + 1] - rgba[i + 2]);
        return { isGpu: ddpm.backend.isGpu, width: out.width, height: out.height, colour };
      }, hub.hub);
      t.diagnostic(JSON.stringify(r));
      assert.equal(r.isGpu, true, 'SwiftShader gives a WebGPU adapter');
      assert.deepEqual([r.width, r.height], [32, 32]);
      assert.ok(r.colour > 0, 'a colour image');
    });
  });
});
