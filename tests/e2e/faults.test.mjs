// End to end: bad input and faults in the page. Broken model folders (made here from the tiny
// parity model, tests/data/tiny) served by a second server, a download cut in the middle, uploads
// over the size limit or of other sizes and modes, a lost WebGPU device, and 100 generations in a
// row with memory measured.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { MINUTE, REPO_ROOT, TINY as TINY_URL, canvasStats, engineStats, startEnv, withPage } from './helpers.mjs';

const TINY = path.join(REPO_ROOT, 'tests/data/tiny');          // the broken folders' source
const WEIGHTS = 'diffusion_pytorch_model.safetensors';

/** The safetensors file as {header, data}, and back. */
function parseSafetensors(bytes) {
  const n = Number(bytes.readBigUInt64LE(0));
  return { header: JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')), data: bytes.subarray(8 + n) };
}
function writeSafetensors(header, data) {
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, Buffer.from(json, 'utf8'), data]);
}

/** Broken variants of the tiny model: name -> {files, expect: what the error must say}. */
function brokenModels() {
  const config = readFileSync(path.join(TINY, 'config.json'), 'utf8');
  const scheduler = readFileSync(path.join(TINY, 'scheduler_config.json'), 'utf8');
  const weights = readFileSync(path.join(TINY, WEIGHTS));
  const { header, data } = parseSafetensors(weights);
  const edit = (fn) => {
    const h = structuredClone(header);
    const d = Buffer.from(data);
    fn(h, d);
    return writeSafetensors(h, d);
  };
  const model = (files) => ({ 'config.json': config, 'scheduler_config.json': scheduler, [WEIGHTS]: weights, ...files });
  const overclaim = Buffer.from(weights);
  overclaim.writeBigUInt64LE(BigInt(weights.length + 4096), 0);
  const W = WEIGHTS.replace('.', '\\.');
  return {
    truncated: { files: model({ [WEIGHTS]: weights.subarray(0, weights.length >> 1) }), expect: new RegExp(`${W}: not a valid safetensors file`) },
    overclaim: { files: model({ [WEIGHTS]: overclaim }), expect: new RegExp(`${W}: not a valid safetensors file`) },
    dtype: {
      files: model({ [WEIGHTS]: edit((h) => { h['conv_in.weight'].dtype = 'I32'; }) }),
      expect: /conv_in\.weight.*I32/,
    },
    shape: {
      files: model({ [WEIGHTS]: edit((h) => { h['conv_in.weight'].shape = [8, 2, 3, 3]; }) }),
      expect: /conv_in\.weight.*\[16, 1, 3, 3\].*\[8, 2, 3, 3\]|conv_in\.weight.*\[8, 2, 3, 3\].*\[16, 1, 3, 3\]/,
    },
    keys: {
      files: model({ [WEIGHTS]: edit((h) => { h['conv_in.weights'] = h['conv_in.weight']; delete h['conv_in.weight']; }) }),
      expect: /conv_in\.weight\b[\s\S]*conv_in\.weights|conv_in\.weights[\s\S]*conv_in\.weight\b/,
    },
    nan: {
      files: model({ [WEIGHTS]: edit((h, d) => { d.writeFloatLE(NaN, h['conv_in.weight'].data_offsets[0] + 8); }) }),
      expect: /conv_in\.weight.*(NaN|non-finite|not finite)/i,
    },
    'bad-json': { files: model({ 'config.json': config.slice(0, 80) }), expect: /config\.json.*(line|column|EOF)/i },
    unsupported: {
      files: model({ 'config.json': config.replace('"positional"', '"fourier"') }),
      expect: /config\.json.*time_embedding_type.*fourier/,
    },
    // diffusers' older layout, diffusion_pytorch_model.bin only (which the page converts: hub.test.mjs),
    // cut in half: its zip has no central directory.
    'pytorch-bin': {
      files: model({ [WEIGHTS]: undefined, 'diffusion_pytorch_model.bin': readFileSync(path.join(REPO_ROOT, 'tests/data/tiny-bin/diffusion_pytorch_model.bin')).subarray(0, 100_000) }),
      expect: /diffusion_pytorch_model\.bin: not a PyTorch weights file \(torch\.save\) that can be read/,
    },
    // Neither weights file: both are named.
    'no-weights': {
      files: model({ [WEIGHTS]: undefined }),
      expect: new RegExp(`${W}: HTTP 404 Not Found, and there is no diffusion_pytorch_model\\.bin beside it either \\(HTTP 404 Not Found\\): the folder has no weights`),
    },
  };
}

/** The tiny model in diffusers' pipeline layout: path -> bytes. */
function pipelineFiles() {
  const read = (f) => readFileSync(path.join(TINY, f));
  return {
    'model_index.json': JSON.stringify({ _class_name: 'DDPMPipeline', unet: ['diffusers', 'UNet2DModel'], scheduler: ['diffusers', 'DDPMScheduler'] }),
    'unet/config.json': read('config.json'),
    [`unet/${WEIGHTS}`]: read(WEIGHTS),
    'scheduler/scheduler_config.json': read('scheduler_config.json'),
  };
}

/** A second origin serving the broken models (CORS open); /cut/: a weights file whose connection
 *  is closed after half of it; /s3/ (the tiny model, pipeline layout) and /s3-none/ (nothing)
 *  answer 403 for a missing key, as S3 does without list permission. */
async function startBrokenServer(models) {
  const pipeline = pipelineFiles();
  const server = http.createServer((req, res) => {
    res.setHeader('Access-Control-Allow-Origin', '*');
    const urlPath = decodeURIComponent(req.url.split('?')[0]);
    const [, name, file] = urlPath.split('/');
    if (name === 's3' || name === 's3-none') {
      const body = name === 's3' ? pipeline[urlPath.slice('/s3/'.length)] : undefined;
      if (body === undefined) res.writeHead(403).end('AccessDenied');
      else res.writeHead(200).end(body);
      return;
    }
    if (name === 'cut' && file === WEIGHTS) {
      const weights = readFileSync(path.join(TINY, WEIGHTS));
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': weights.length });
      res.write(weights.subarray(0, weights.length >> 1), () => setTimeout(() => res.socket.destroy(), 50));
      return;
    }
    const body = (name === 'cut' ? models.truncated : models[name])?.files[file];
    if (body === undefined) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'Content-Type': file.endsWith('.json') ? 'application/json' : 'application/octet-stream' });
    res.end(body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }) };
}

describe('bad input and faults in the page', { timeout: 60 * MINUTE }, () => {
  let env;
  let broken;
  const models = brokenModels();
  before(async () => {
    env = await startEnv();
    broken = await startBrokenServer(models);
  });
  after(async () => {
    await broken?.close();
    await env?.close();
  });

  test('each broken model folder is refused with an error that names the problem', { timeout: 20 * MINUTE }, async (t) => {
    for (const name of [...Object.keys(models), 'cut']) {
      // The server cuts every try: the page starts again once, then says how far it got.
      const expect = name === 'cut' ? new RegExp(`${WEIGHTS.replace('.', '\\.')}: the download was cut after [\\d.]+ MB of [\\d.]+ MB, twice`) : models[name].expect;
      const modelUrl = `${broken.url}/${name}/`;
      await withPage(t, env, `?backend=cpu&model=${encodeURIComponent(modelUrl)}`, `e2e-broken-${name}.png`, async (s) => {
        await s.waitFor(() => false, null, 3 * MINUTE);  // returns once data-state=error
        assert.equal(await s.state(), 'error', name);
        const text = await s.errorText();
        t.diagnostic(`${name}: ${text.replace(/\s+/g, ' ')}`);
        assert.match(text, expect, `${name}: the error names the problem`);
        if (name !== 'bad-json' && name !== 'unsupported') assert.ok(text.includes(modelUrl), `${name}: the error names the URL`);
        assert.equal(await s.page.getByTestId('generate').isDisabled(), true, `${name}: nothing to generate with`);
        assert.equal(await s.page.getByTestId('pad-add').isEnabled(), true, `${name}: the drawing pad stays usable`);
      });
    }
  });

  test('an object store that answers 403 for missing keys: pipeline layout found; none: a clear error', { timeout: 5 * MINUTE }, async (t) => {
    await withPage(t, env, 'tests/e2e/fixtures/api.html', 'e2e-s3.png', async ({ page }) => {
      const r = await page.evaluate(async (base) => {
        const { connect } = await import('/www/ddpm.js');
        const ddpm = await connect({ backend: 'cpu' });
        const model = await ddpm.load(`${base}/s3/`);
        const out = await ddpm.generate(model, { n: 1, steps: 2 }).result;
        const none = await ddpm.load(`${base}/s3-none/`).then(() => null, (e) => e.message);
        return { layout: model.layout, images: out.images.length, none };
      }, broken.url);
      t.diagnostic(JSON.stringify(r));
      assert.equal(r.layout, 'pipeline');
      assert.equal(r.images, 1);
      assert.match(r.none, /config\.json: HTTP 403 Forbidden \(and .*model_index\.json: HTTP 403 Forbidden\): there is no diffusers model at .*s3-none\/, or the server refuses access/);
    });
  });

  test('opened as a file (file://): an error says how to serve the page', { timeout: 2 * MINUTE }, async () => {
    const page = await env.browser.newPage();
    try {
      await page.goto(`file://${path.join(REPO_ROOT, 'index.html')}`);
      await page.waitForFunction(() => document.body.dataset.state === 'error', null, { timeout: 30_000 });
      assert.match(await page.getByTestId('error').innerText(), /opened as a file .*make demo/s);
    } finally {
      await page.close();
    }
  });

  test('uploads: a file over 10 MB is refused by name; other sizes and modes are cropped and kept', { timeout: 8 * MINUTE }, async (t) => {
    await withPage(t, env, '?backend=cpu', 'e2e-uploads.png', async ({ page, waitForState }) => {
      await waitForState('ready', 5 * MINUTE);
      // PNGs drawn by the browser: w x h, opaque RGB or with transparency.
      const png = async (w, h, transparent) => Buffer.from(await page.evaluate(async ([w, h, transparent]) => {
        const c = new OffscreenCanvas(w, h);
        const g = c.getContext('2d');
        if (!transparent) {
          g.fillStyle = '#204080';
          g.fillRect(0, 0, w, h);
        }
        g.fillStyle = 'rgba(255, 255, 255, 0.8)';
        g.fillRect(w / 4, h / 4, w / 2, h / 2);
        const blob = await c.convertToBlob({ type: 'image/png' });
        return Array.from(new Uint8Array(await blob.arrayBuffer()));
      }, [w, h, transparent]));
      const huge = Buffer.alloc(11 * 1024 * 1024);  // a real PNG, then padding: over the limit
      (await png(8, 8, false)).copy(huge);
      await page.getByTestId('upload').setInputFiles([
        { name: 'wide-rgb.png', mimeType: 'image/png', buffer: await png(120, 40, false) },
        { name: 'tall-transparent.png', mimeType: 'image/png', buffer: await png(20, 50, true) },
        { name: 'huge.png', mimeType: 'image/png', buffer: huge },
      ]);
      await page.waitForFunction(() => document.getElementById('tune-error').textContent.includes('huge.png'));
      const text = await page.getByTestId('tune-error').innerText();
      t.diagnostic(text);
      assert.match(text, /huge\.png: 11\.5 MB is over the 10 MB limit/);
      await page.waitForFunction(() => document.querySelectorAll('[data-testid=dataset] img').length === 2);
      assert.equal(await page.getByTestId('dataset-count').innerText(), '2 image(s)');
      assert.equal(await page.getByTestId('tune-start').isEnabled(), true, 'fine-tuning can start');
    });
  });

  test('a lost WebGPU device: a message, the CPU backend, drawings and tuned weights kept', { timeout: 15 * MINUTE }, async (t) => {
    await withPage(t, env, `?model=${TINY_URL}&test-hooks`, 'e2e-device-lost.png', async (s) => {
      const { page, waitForState } = s;
      await waitForState('ready', 5 * MINUTE);
      const backend = await page.getByTestId('backend').innerText();
      if (!/WebGPU/.test(backend)) {
        t.skip(`no WebGPU adapter in this browser (${backend})`);
        return;
      }
      // A drawing and fine-tuned weights (here: the base model's own file, loaded as tuned).
      await page.getByTestId('pad').scrollIntoViewIfNeeded();
      const pad = await page.getByTestId('pad').boundingBox();
      await page.mouse.move(pad.x + pad.width * 0.3, pad.y + pad.height * 0.2);
      await page.mouse.down();
      await page.mouse.move(pad.x + pad.width * 0.7, pad.y + pad.height * 0.2, { steps: 5 });
      await page.mouse.move(pad.x + pad.width * 0.4, pad.y + pad.height * 0.8, { steps: 5 });
      await page.mouse.up();
      await page.getByTestId('pad-add').click();
      await page.waitForFunction(() => document.querySelector('[data-testid=dataset-count]').textContent === '1 image(s)');
      await page.getByTestId('load-weights').setInputFiles(path.join(TINY, WEIGHTS));
      await page.waitForFunction(() => document.querySelector('[data-testid=use-tuned]')?.checked === true, null, { timeout: MINUTE });

      await page.getByTestId('sampler').selectOption('ddim');
      await page.getByTestId('steps').fill('20');
      await page.getByTestId('n').fill('2');
      await page.getByTestId('generate').click();
      await s.waitFor(() => Number(document.body.dataset.stepsDone) >= 1, null, 5 * MINUTE);
      await page.evaluate(async () => (await import('/www/engine/client.js')).connect().post({ type: 'lose-device' }));

      await page.waitForFunction(() => /CPU/.test(document.querySelector('[data-testid=backend]').textContent), null, { timeout: 2 * MINUTE });
      assert.match(await page.getByTestId('status').innerText(), /WebGPU device was lost/);
      assert.match(await page.locator('#gpu-note').innerText(), /device was lost/);
      await waitForState('done', 5 * MINUTE);  // the run in flight is rerun on the CPU
      const images = await canvasStats(page, '[data-testid=results] canvas');
      assert.equal(images.length, 2);
      assert.ok(images.every((img) => img.variance > 0), 'the rerun images are not blank');

      assert.equal(await page.getByTestId('dataset-count').innerText(), '1 image(s)', 'the drawing is kept');
      assert.equal(await page.getByTestId('use-tuned').isChecked(), true, 'the tuned weights are kept');
      await page.getByTestId('generate').click();  // with the tuned model, on the CPU
      await waitForState('done', 5 * MINUTE);
      assert.match(await page.getByTestId('status').innerText(), /fine-tuned model/);
    });
  });

  test('100 generations in a row leave memory flat', { timeout: 25 * MINUTE }, async (t) => {
    await withPage(t, env, `?model=${TINY_URL}&test-hooks`, 'e2e-100-generations.png', async ({ page, waitForState }) => {
      const cdp = await page.context().newCDPSession(page);
      const measure = async () => {
        await cdp.send('HeapProfiler.collectGarbage');
        const { usedSize } = await cdp.send('Runtime.getHeapUsage');
        return { pageHeap: usedSize, ...(await engineStats(page)) };
      };
      await waitForState('ready', 5 * MINUTE);
      await page.getByTestId('sampler').selectOption('ddim');
      await page.getByTestId('steps').fill('2');
      await page.getByTestId('n').fill('1');
      const samples = [];
      for (let i = 1; i <= 100; i++) {
        await page.getByTestId('generate').click();
        await waitForState('done', 2 * MINUTE);
        if (i === 10 || i === 100) samples.push(await measure());
      }
      const [warm, end] = samples;
      t.diagnostic(`after 10 generations: ${JSON.stringify(warm)}`);
      t.diagnostic(`after 100 generations: ${JSON.stringify(end)}`);
      const MB = 1 << 20;
      assert.ok(end.pageHeap <= warm.pageHeap * 1.25 + 2 * MB, `page JS heap flat: ${warm.pageHeap} -> ${end.pageHeap}`);
      assert.ok(end.wasmBytes <= warm.wasmBytes * 1.1 + 4 * MB, `wasm memory flat: ${warm.wasmBytes} -> ${end.wasmBytes}`);
      assert.ok(end.gpuBytes <= warm.gpuBytes * 1.1 + 4 * MB, `GPU buffers flat: ${warm.gpuBytes} -> ${end.gpuBytes}`);
    });
  });
});
