// End to end: <ddpm-demo> from `make dist` (origin A) embedded in blog pages on another origin
// (B, another port): two elements finish and share one download, a bad model fails inside its
// own element only, and a page whose Content-Security-Policy allows only A's scripts and
// 'wasm-unsafe-eval' still works (the engine then runs on the page: no blob: worker allowed).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startServer } from '../../www/serve.mjs';
import { integrity } from '../../scripts/sri.mjs';
import { CHROMIUM, CHROMIUM_ARGS, MINUTE, REPO_ROOT, closeAll, screenshot } from './helpers.mjs';

const DIST = path.join(REPO_ROOT, 'dist');

/** The blog: pages made up on the fly, `csp` sent as a header where given. */
function startBlog(pages) {
  const server = http.createServer((req, res) => {
    const page = pages[new URL(req.url, 'http://x').pathname];
    if (!page) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', ...(page.csp ? { 'Content-Security-Policy': page.csp } : {}) });
    res.end(page.html);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${server.address().port}` })));
}

const article = (script, demos, sri) => `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>blog</title>
<script type="module" src="${script}"${sri ? ` integrity="${sri}" crossorigin="anonymous"` : ''}></script></head>
<body><article><h1>A post</h1><p>Some text.</p>${demos}</article></body></html>`;

describe('<ddpm-demo> on another origin', { timeout: 30 * MINUTE }, () => {
  let files;
  let blog;
  let browser;
  const requests = [];
  before(async () => {
    if (!existsSync(path.join(DIST, 'embed.js'))) throw new Error(`${DIST}/embed.js: run \`make dist\` first`);
    files = await startServer({ port: 0, root: DIST, onRequest: (req) => requests.push(req.url) });
    const a = files.url.replace(/\/$/, '');
    const script = `${a}/embed.js`;
    // The shipped MNIST model on the CPU backend (SwiftShader's WebGPU takes ~10 s per step of it).
    const demo = (attrs, n = 2) => `<ddpm-demo autoplay backend="cpu" n="${n}" steps="5" size="48" ${attrs}></ddpm-demo>`;
    blog = await startBlog({
      // #one: 4 images, 2 rows, so split across CPU workers started from a worker of another origin
      '/post.html': { html: article(script, `${demo('id="one" show-steps', 4)}<p>More text.</p>${demo('id="two" controls="full" eta="1"')}` +
        `${demo(`id="bad" model="${a}/no/such/model/"`)}`) },
      '/strict.html': {
        csp: `default-src ${a}; script-src ${a} 'wasm-unsafe-eval'`,
        // The README's snippet: embed.js pinned by the hash `make dist` prints.
        html: article(script, demo('id="one"'), integrity(path.join(DIST, 'embed.js'))),
      },
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });
  after(async () => {
    await closeAll(browser, [files?.server, blog?.server]);
  });

  /** Opens the blog page `name`; returns the page, its console errors, and a waiter on states. */
  async function open(name) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const consoleErrors = [];
    page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
    page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));
    await page.goto(`${blog.url}/${name}`);
    const stateOf = (id) => page.$eval(`#${id}`, (e) => e.dataset.state);
    const settle = (ids, timeout) => page.waitForFunction(
      (list) => list.every((id) => ['done', 'error'].includes(document.getElementById(id).dataset.state)), ids, { timeout, polling: 250 });
    const errorOf = (id) => page.$eval(`#${id}`, (e) => e.shadowRoot.querySelector('.error').textContent);
    const canvases = (id) => page.$eval(`#${id}`, (e) => [...e.shadowRoot.querySelectorAll('.grid canvas')].map((c) => {
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let lo = 255;
      let hi = 0;
      for (let i = 0; i < d.length; i += 4) { lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); }
      return { width: c.width, spread: hi - lo };
    }));
    return { context, page, consoleErrors, stateOf, settle, errorOf, canvases };
  }

  test('two demos finish with one download; a bad model fails in its own element', { timeout: 15 * MINUTE }, async (t) => {
    const p = await open('post.html');
    try {
      const events = p.page.evaluate(() => new Promise((resolve) => {
        const seen = { progress: 0, done: 0, error: 0, workers: {}, cores: navigator.hardwareConcurrency };
        for (const e of document.querySelectorAll('ddpm-demo')) {
          e.addEventListener('done', (ev) => { seen.workers[e.id] = ev.detail.workers; });
          for (const type of ['progress', 'done', 'error']) e.addEventListener(type, () => { seen[type] += 1; if (seen.done === 2 && seen.error === 1) resolve(seen); });
        }
      }));
      await p.settle(['one', 'two', 'bad'], 12 * MINUTE);
      for (const [id, n] of [['one', 4], ['two', 2]]) {
        assert.equal(await p.stateOf(id), 'done', `#${id}: ${await p.errorOf(id)}`);
        const images = await p.canvases(id);
        assert.equal(images.length, n, `#${id} shows its ${n} images`);
        assert.ok(images.every((c) => c.spread > 0), `#${id}: images are not blank`);
      }
      assert.equal(await p.stateOf('bad'), 'error');
      const text = await p.errorOf('bad');
      assert.match(text, /\/no\/such\/model\/.*404/s, 'the error names the URL and the status');
      const seen = await events;
      assert.ok(seen.progress > 0, 'progress events fired');
      assert.deepEqual(seen.workers, { one: Math.min(2, seen.cores), two: 1 }, 'the 4 images split across CPU workers where there are cores; 2 images (one row) do not');
      // where it runs, in the page's words, with the time its settings take; the engine's reason folded
      const shown = await p.page.$eval('#one', (e) => ({
        line: e.shadowRoot.querySelector('.backend').innerText, visible: e.shadowRoot.querySelector('.demo').innerText,
        why: e.shadowRoot.querySelector('details p').textContent, label: e.shadowRoot.querySelector('.grid canvas').getAttribute('aria-label'),
      }));
      assert.match(shown.line, /^Running on the CPU \(wasm\): WebGPU was turned off for this page\. Expected: .* for 4 images at 5 steps\.$/);
      assert.doesNotMatch(shown.visible, /not requested/, 'the engine\'s own words wait under details');
      assert.equal(shown.why, 'WebGPU not requested');
      assert.match(shown.label, /^Generated image 1 of 4 \(DPM-Solver\+\+, 5 steps, seed \d+\)$/);
      const strip = await p.page.$eval('#one', (e) => e.shadowRoot.querySelectorAll('.strip canvas').length);
      assert.ok(strip >= 2, `show-steps: a denoising strip (${strip} frames)`);
      const weights = requests.filter((u) => u.endsWith('/models/mnist/diffusion_pytorch_model.safetensors'));
      assert.equal(weights.length, 1, 'the model is downloaded once for both elements');
      const unexpected = p.consoleErrors.filter((e) => !/404|no\/such\/model/.test(e));
      assert.deepEqual(unexpected, [], 'no console errors besides the bad model\'s 404');
      t.diagnostic(`bad model: ${text}`);
    } finally {
      await screenshot(p.page, 'e2e-embed.png');
      await p.context.close();
    }
  });

  test('pinned by its integrity hash, works under a CSP that allows only the script origin and wasm-unsafe-eval', { timeout: 10 * MINUTE }, async (t) => {
    const p = await open('strict.html');
    try {
      await p.settle(['one'], 8 * MINUTE);
      assert.equal(await p.stateOf('one'), 'done', await p.errorOf('one'));
      assert.equal((await p.canvases('one')).length, 2);
      for (const e of p.consoleErrors) t.diagnostic(`console: ${e}`);
      const others = p.consoleErrors.filter((e) => !/worker|blob:/i.test(e));
      assert.deepEqual(others, [], 'no console errors besides the refused blob: worker');
    } finally {
      await screenshot(p.page, 'e2e-embed-csp.png');
      await p.context.close();
    }
  });
});
