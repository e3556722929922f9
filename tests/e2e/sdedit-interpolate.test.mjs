// End to end: <ddpm-sdedit> and <ddpm-interpolate> from `make dist` in a blog page under a strict
// CSP, on the shipped model and the CPU backend, with few steps. SDEdit at strength 0 gives the
// drawing back to 8 bits, a light edit stays nearer the drawing than a heavy one, a stroke on the
// pad becomes what the run starts from; the interpolation's ends are the two seeds' own samples
// and its middle is neither; buttons and bad attributes do what they say. On WebGPU both give
// what the CPU gives; in the page, SDEdit waits closed until opened.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, MINUTE, closeAll, startBlog } from './helpers.mjs';

const SMALL = {
  sdedit: 'strength="0.5" seeds="1" sampler="ddim" steps="4"',
  interpolate: 'from="3" to="5" count="2" sampler="ddim" steps="2"',
};
const PAGES = {
  '/sdedit.html': '<ddpm-sdedit id="e" strength="0" seeds="2" sampler="ddim" steps="10" backend="cpu"></ddpm-sdedit>',
  '/interpolate.html': '<ddpm-interpolate id="e" from="3" to="5" count="4" sampler="ddim" steps="8" backend="cpu"></ddpm-interpolate>',
  // few steps, on WebGPU where the browser has it (SwiftShader here) and on the CPU
  '/gpu-sdedit.html': `<ddpm-sdedit id="e" ${SMALL.sdedit}></ddpm-sdedit>`,
  '/cpu-sdedit.html': `<ddpm-sdedit id="e" ${SMALL.sdedit} backend="cpu"></ddpm-sdedit>`,
  '/gpu-interpolate.html': `<ddpm-interpolate id="e" ${SMALL.interpolate}></ddpm-interpolate>`,
  '/cpu-interpolate.html': `<ddpm-interpolate id="e" ${SMALL.interpolate} backend="cpu"></ddpm-interpolate>`,
};

/** Largest difference between two byte arrays' RGB values. */
const rgbDiff = (u, v) => Math.max(...u.map((x, i) => (i % 4 === 3 ? 0 : Math.abs(x - v[i]))));
const meanDiff = (u, v) => u.reduce((s, x, i) => s + Math.abs(x - v[i]), 0) / u.length;

describe('<ddpm-sdedit> and <ddpm-interpolate>', { timeout: 10 * MINUTE }, () => {
  let env;
  let browser;
  before(async () => {
    env = await startBlog((url, a) => {
      const path = url.split('?')[0];
      const body = PAGES[path] ?? '';
      const script = path.endsWith('interpolate.html') ? 'interpolate.js' : 'sdedit.js';
      return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>a post</title>
<script type="module" src="${a}/${script}"></script></head><body><article>${body}</article></body></html>`;
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });
  after(async () => {
    await closeAll(browser, env?.servers ?? []);
  });

  /** A page of the blog with its console errors; `results()` reads the element's last result. */
  async function open(name) {
    const page = await (await browser.newContext()).newPage();
    const errors = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
    await page.goto(`${env.blog}/${name}`);
    // Waits for a result whose images differ from `old` (`key` of a result) and returns it, as arrays.
    const nextResult = async (old = null) => {
      await page.waitForFunction((before) => {
        const r = document.getElementById('e').result;
        return r && JSON.stringify(r.images.map((i) => [...i])) !== before && document.getElementById('e').dataset.state === 'ready';
      }, old, { timeout: 4 * MINUTE, polling: 100 });
      return page.$eval('#e', (e) => ({ ...e.result, images: e.result.images.map((i) => [...i]), image: e.image && [...e.image] }));
    };
    const key = (r) => JSON.stringify(r.images);
    return { page, errors, nextResult, key };
  }

  test('SDEdit: strength 0 gives the drawing back, strength moves away from it, a stroke is used', { timeout: 8 * MINUTE }, async (t) => {
    const { page, errors, nextResult, key } = await open('sdedit.html');
    const zero = await nextResult();
    assert.equal(zero.images.length, 2);
    for (const img of zero.images) assert.ok(rgbDiff(img, zero.image) <= 1, `strength 0 returns the start image (max diff ${rgbDiff(img, zero.image)})`);
    assert.match(await page.$eval('#e', (e) => e.shadowRoot.querySelector('.where').textContent), /CPU/);

    await page.$eval('#e', (e) => e.setAttribute('strength', '0.3'));
    const light = await nextResult(key(zero));
    await page.$eval('#e', (e) => e.setAttribute('strength', '1'));
    const heavy = await nextResult(key(light));
    const [dl, dh] = [meanDiff(light.images[0], light.image), meanDiff(heavy.images[0], heavy.image)];
    t.diagnostic(`mean |image - drawing| per byte: strength 0.3 ${dl.toFixed(1)}, strength 1 ${dh.toFixed(1)}`);
    assert.ok(dl > 0 && dl < dh, 'a light edit changes the drawing less than a full one');
    assert.notDeepEqual(light.images[0], light.images[1], 'each seed has its own noise');

    // The slider sets the attribute once it settles.
    await page.$eval('#e', (e) => {
      const s = e.shadowRoot.querySelector('#strength');
      s.value = '0.5';
      s.dispatchEvent(new Event('input'));
    });
    await page.waitForFunction(() => document.getElementById('e').getAttribute('strength') === '0.5', null, { timeout: MINUTE });
    const half = await nextResult(key(heavy));
    assert.equal(half.strength, 0.5);

    // A stroke on the pad becomes the start image.
    const pad = await page.evaluateHandle(() => document.getElementById('e').shadowRoot.querySelector('.pad'));
    const box = await pad.boundingBox();
    await page.mouse.move(box.x + 84, box.y + 20);
    await page.mouse.down();
    await page.mouse.move(box.x + 84, box.y + 150, { steps: 8 });
    await page.mouse.up();
    await page.waitForFunction((old) => {
      const e = document.getElementById('e');
      return e.dataset.state === 'ready' && e.image && JSON.stringify([...e.image]) !== old;
    }, JSON.stringify(half.image), { timeout: 4 * MINUTE, polling: 100 });
    const drawn = await page.$eval('#e', (e) => [...e.image]);
    const size = Math.sqrt(drawn.length / 4);
    const row = (y) => Array.from({ length: size }, (_, x) => drawn[(y * size + x) * 4]);
    const middle = row(size / 2);
    const lit = middle.map((v, x) => (v > 128 ? x : -1)).filter((x) => x >= 0);
    t.diagnostic(`lit columns of the middle row: ${lit.join(',')}`);
    assert.ok(lit.length > 0 && lit.every((x) => Math.abs(x - size / 2) <= 3), 'the vertical stroke is in the middle of the image the model starts from');
    assert.ok(middle[2] < 32 && middle[size - 3] < 32, 'and the sides are dark');

    await page.$eval('#e', (e) => e.setAttribute('strength', '2'));
    await page.waitForFunction(() => document.getElementById('e').dataset.state === 'error', null, { timeout: MINUTE });
    assert.match(await page.$eval('#e', (e) => e.shadowRoot.querySelector('.error').textContent),
      /strength of <ddpm-sdedit> must be a number from 0 to 1 \(got "2"\)/);
    assert.deepEqual(errors.filter((e) => !/worker|blob:/i.test(e)), [], 'no console errors under the strict CSP');
    await page.context().close();
  });

  test('interpolation: the ends are the seeds\' own samples, the middle is neither', { timeout: 8 * MINUTE }, async (t) => {
    const { page, errors, nextResult, key } = await open('interpolate.html');
    const strip = await nextResult();
    assert.equal(strip.images.length, 4);
    // The same sampler from each seed alone, through the JS API on the same page.
    const own = await page.evaluate(async (a) => {
      const { connect } = await import(`${a}/ddpm.js`);
      const ddpm = await connect({ backend: 'cpu' });
      const model = await ddpm.load(`${a}/models/mnist/`);
      const one = async (seed) => [...(await ddpm.generate(model, { n: 1, sampler: 'ddim', steps: 8, seed }).result).images[0]];
      return [await one(3), await one(5)];
    }, env.dist);
    t.diagnostic(`ends: ${rgbDiff(strip.images[0], own[0])}, ${rgbDiff(strip.images[3], own[1])} (max byte difference)`);
    assert.ok(rgbDiff(strip.images[0], own[0]) <= 1, 'image 0 is seed 3\'s sample');
    assert.ok(rgbDiff(strip.images[3], own[1]) <= 1, 'the last image is seed 5\'s sample');
    for (const i of [1, 2]) {
      assert.ok(meanDiff(strip.images[i], own[0]) > 1 && meanDiff(strip.images[i], own[1]) > 1, `image ${i} is neither end`);
    }
    // New end seed: 6, and the strip's last image follows.
    await page.$eval('#e', (e) => e.shadowRoot.querySelector('.new-to').click());
    const next = await nextResult(key(strip));
    assert.equal(await page.$eval('#e', (e) => e.getAttribute('to')), '6');
    assert.notDeepEqual(next.images[3], strip.images[3]);
    assert.deepEqual(next.images[0], strip.images[0], 'the start seed stays');
    await page.$eval('#e', (e) => e.setAttribute('count', '1'));
    await page.waitForFunction(() => document.getElementById('e').dataset.state === 'error', null, { timeout: MINUTE });
    assert.match(await page.$eval('#e', (e) => e.shadowRoot.querySelector('.error').textContent),
      /count of <ddpm-interpolate> must be a whole number from 2 to 16 \(got "1"\)/);
    assert.deepEqual(errors.filter((e) => !/worker|blob:/i.test(e)), [], 'no console errors under the strict CSP');
    await page.context().close();
  });

  test('the page holds SDEdit closed, and runs it once opened', { timeout: 6 * MINUTE }, async () => {
    const page = await (await browser.newContext({ viewport: { width: 1280, height: 4000 } })).newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
    await page.goto(`${env.dist}/index.html?backend=cpu`);
    await page.waitForFunction(() => document.querySelector('ddpm-sdedit')?.dataset.state === 'waiting', null, { timeout: MINUTE });
    await page.waitForTimeout(1000);
    assert.equal(await page.$eval('ddpm-sdedit', (e) => e.dataset.state), 'waiting', 'closed, it does not run beside Generate');
    await page.click('#sketch-details summary');
    await page.waitForFunction(() => document.querySelector('ddpm-sdedit').result?.images.length === 4, null, { timeout: 4 * MINUTE, polling: 200 });
    assert.deepEqual(errors, []);
    await page.context().close();
  });

  test('on WebGPU they give what the CPU gives', { timeout: 6 * MINUTE }, async (t) => {
    for (const kind of ['sdedit', 'interpolate']) {
      const got = {};
      for (const where of ['gpu', 'cpu']) {
        const { page, errors, nextResult } = await open(`${where}-${kind}.html`);
        got[where] = { ...(await nextResult()), where: await page.$eval('#e', (e) => e.shadowRoot.querySelector('.where').textContent) };
        assert.deepEqual(errors.filter((e) => !/worker|blob:/i.test(e)), []);
        await page.context().close();
      }
      t.diagnostic(`${kind}: ${got.gpu.where} | ${got.cpu.where}`);
      assert.match(got.gpu.where, /WebGPU/);
      assert.match(got.cpu.where, /CPU/);
      got.gpu.images.forEach((img, i) => {
        const d = rgbDiff(img, got.cpu.images[i]);
        t.diagnostic(`${kind} image ${i}: WebGPU against the CPU, max byte difference ${d}`);
        assert.ok(d <= 2, `${kind} image ${i}: WebGPU and the CPU differ by ${d} / 255`);
      });
    }
  });
});
