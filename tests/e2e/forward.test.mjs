// End to end: <ddpm-forward> from `make dist` in a blog page under a strict CSP, on the shipped
// model and the CPU backend: it loads, shows x_t, eps, eps_hat and x0_hat at its `t`, follows
// its attributes and the slider, answers within a second a position, and its numbers are the
// forward process's: x_t is x_0 at t = 0 and noise at t = T, the predicted x_0 is close to x_0
// at a small t, and a drawing can replace the digit.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, MINUTE, closeAll, screenshot, startBlog } from './helpers.mjs';

describe('<ddpm-forward>', { timeout: 10 * MINUTE }, () => {
  let env;
  let blog;
  let browser;
  before(async () => {
    // /gpu.html: WebGPU where the browser has it (SwiftShader here); any other page: the CPU
    env = await startBlog((url, a) => `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>a post</title>
<script type="module" src="${a}/forward.js"></script></head><body><article><h1>The forward process</h1>
<ddpm-forward id="f" t="500" seed="7"${url.startsWith('/gpu') ? '' : ' backend="cpu"'}></ddpm-forward></article></body></html>`);
    blog = { url: env.blog };
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });
  after(async () => {
    await closeAll(browser, env?.servers ?? []);
  });

  test('shows the forward process at t, follows the slider and the attributes', { timeout: 8 * MINUTE }, async (t) => {
    const page = await (await browser.newContext()).newPage();
    const errors = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
    await page.goto(`${blog.url}/post.html`);
    const viewAt = async (tValue, timeout = 3 * MINUTE) => {
      await page.waitForFunction((want) => {
        const e = document.getElementById('f');
        return e.dataset.state === 'ready' && e.view?.t === want;
      }, tValue, { timeout, polling: 50 });
      return page.$eval('#f', (e) => {
        const stats = (v) => {
          const a = [...v];
          const mean = a.reduce((s, x) => s + x, 0) / a.length;
          return { mean, std: Math.sqrt(a.reduce((s, x) => s + (x - mean) ** 2, 0) / a.length) };
        };
        const diff = (u, v) => Math.max(...[...u].map((x, i) => Math.abs(x - v[i])));
        const { values, x0 } = e.view;
        return {
          t: e.view.t, seed: e.view.seed, a: e.view.sqrtAlphaBar, b: e.view.sqrtOneMinusAlphaBar, snr: e.view.snr,
          xtVsX0: diff(values.x_t, x0), x0hatVsX0: diff(values.x0_hat, x0), xt: stats(values.x_t),
          closed: diff(values.x_t, [...x0].map((x, i) => e.view.sqrtAlphaBar * x + e.view.sqrtOneMinusAlphaBar * values.eps[i])),
          numbers: e.shadowRoot.querySelector('#numbers').textContent,
          spreads: [...e.shadowRoot.querySelectorAll('canvas.img')].map((c) => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let lo = 255; let hi = 0;
            for (let i = 0; i < d.length; i += 4) { lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); }
            return hi - lo;
          }),
        };
      });
    };

    const at500 = await viewAt(500);
    t.diagnostic(JSON.stringify({ ...at500, spreads: at500.spreads }));
    assert.equal(at500.seed, 7);
    assert.ok(at500.closed < 1e-5, `x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps (max diff ${at500.closed})`);
    assert.match(at500.numbers, /t = 500: √ᾱ = 0\.\d{4}, √\(1 − ᾱ\) = 0\.\d{4}, SNR = /);
    assert.equal(at500.spreads.length, 5, 'x_0, x_t, eps, eps_hat, x0_hat');
    assert.ok(at500.spreads.every((s) => s > 100), `every panel shows an image: ${at500.spreads}`);
    await screenshot(page, 'e2e-forward-t500.png');
    await page.locator('#f').screenshot({ path: path.join(ARTIFACTS, 'forward.png') });  // docs/forward.png

    // The attribute pins t; at 0 x_t is x_0 (to 8-bit precision: exactly), at T it is noise.
    await page.$eval('#f', (e) => e.setAttribute('t', '0'));
    const at0 = await viewAt(0);
    assert.equal(at0.xtVsX0, 0, 'at t = 0, x_t is x_0');
    assert.equal(at0.snr, Infinity);
    await page.$eval('#f', (e) => e.setAttribute('t', '1000'));
    const atT = await viewAt(1000);
    assert.ok(Math.abs(atT.xt.mean) < 0.1 && Math.abs(atT.xt.std - 1) < 0.1, `at t = T, x_t is N(0, 1) noise: ${JSON.stringify(atT.xt)}`);
    // A trained model's predicted x_0 at a small t is close to x_0.
    await page.$eval('#f', (e) => e.setAttribute('t', '20'));
    const at20 = await viewAt(20);
    assert.ok(at20.x0hatVsX0 < 0.25, `predicted x_0 at t = 20 within 0.25 of x_0 (max diff ${at20.x0hatVsX0})`);

    // The slider, moved as a reader moves it: one view once it settles, within a second.
    const events = page.evaluate(() => new Promise((resolve) => {
      const seen = [];
      document.getElementById('f').addEventListener('view', (e) => { seen.push(e.detail.t); if (e.detail.t === 300) resolve(seen); });
    }));
    const started = Date.now();
    await page.$eval('#f', (e) => {
      const slider = e.shadowRoot.querySelector('#t');
      for (const v of [100, 200, 300]) {
        slider.value = String(v);
        slider.dispatchEvent(new Event('input'));
      }
    });
    const seen = await events;
    const ms = Date.now() - started;
    t.diagnostic(`slider to t = 300: view in ${ms} ms, views ${JSON.stringify(seen)}`);
    assert.deepEqual(seen, [300], 'the model runs once, for the position the slider settled on');
    assert.equal(await page.$eval('#f', (e) => e.getAttribute('t')), '300');

    // New noise: another seed, another eps.
    await page.$eval('#f', (e) => e.shadowRoot.querySelector('.renoise').click());
    await page.waitForFunction(() => document.getElementById('f').view?.seed === 8, null, { timeout: MINUTE });
    // A drawing replaces the digit.
    const before = await page.$eval('#f', (e) => [...e.view.x0]);
    await page.$eval('#f', (e) => e.shadowRoot.querySelector('.draw').click());
    const pad = await page.evaluateHandle(() => document.getElementById('f').shadowRoot.querySelector('.pad'));
    const box = await pad.boundingBox();
    await page.mouse.move(box.x + 40, box.y + 30);
    await page.mouse.down();
    await page.mouse.move(box.x + 120, box.y + 140, { steps: 8 });
    await page.mouse.up();
    await page.$eval('#f', (e) => e.shadowRoot.querySelector('.use').click());
    await page.waitForFunction((old) => {
      const v = document.getElementById('f').view;
      return v && [...v.x0].some((x, i) => x !== old[i]);
    }, before, { timeout: MINUTE });
    // A bad attribute names itself.
    await page.$eval('#f', (e) => e.setAttribute('t', '5000'));
    await page.waitForFunction(() => document.getElementById('f').dataset.state === 'error', null, { timeout: MINUTE });
    const message = await page.$eval('#f', (e) => e.shadowRoot.querySelector('.error').textContent);
    assert.match(message, /t of <ddpm-forward> must be a whole number from 0 to 1000 \(got "5000"\)/);
    // The CSP refuses the engine's blob: worker (the element then runs it on the page), which
    // Chromium reports on the console; nothing else may be there.
    assert.deepEqual(errors.filter((e) => !/worker|blob:/i.test(e)), [], 'no console errors under the strict CSP');
  });

  test('on WebGPU it shows what the CPU shows', { timeout: 6 * MINUTE }, async (t) => {
    const values = async (name) => {
      const page = await (await browser.newContext()).newPage();
      await page.goto(`${blog.url}/${name}`);
      await page.waitForFunction(() => document.getElementById('f').view?.t === 500, null, { timeout: 4 * MINUTE, polling: 100 });
      const out = await page.$eval('#f', (e) => ({
        where: e.shadowRoot.querySelector('.where').textContent,
        eps: [...e.view.values.eps], epsHat: [...e.view.values.eps_hat], x0Hat: [...e.view.values.x0_hat],
      }));
      await page.context().close();
      return out;
    };
    const [gpu, cpu] = [await values('gpu.html'), await values('post.html')];
    t.diagnostic(`${gpu.where} | ${cpu.where}`);
    assert.match(gpu.where, /WebGPU/, 'the element runs on WebGPU where the browser has it');
    assert.match(cpu.where, /CPU/);
    const diff = (u, v) => Math.max(...u.map((x, i) => Math.abs(x - v[i])));
    assert.equal(diff(gpu.eps, cpu.eps), 0, 'the seed draws the same noise on both');
    assert.ok(diff(gpu.epsHat, cpu.epsHat) < 1e-3, `eps_hat: WebGPU against the CPU, max diff ${diff(gpu.epsHat, cpu.epsHat)}`);
    assert.ok(diff(gpu.x0Hat, cpu.x0Hat) < 1e-3, `x0_hat: max diff ${diff(gpu.x0Hat, cpu.x0Hat)}`);
  });
});
