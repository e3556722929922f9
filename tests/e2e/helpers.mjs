// Shared end-to-end plumbing: the static server, headless Chromium, one page with its errors.
import { existsSync } from 'node:fs';
import http from 'node:http';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { PAGE, startServer } from '../../www/serve.mjs';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const ARTIFACTS = path.join(REPO_ROOT, 'artifacts');
/** What is served: the repository root, or E2E_ROOT (a tree with the same layout). */
export const SERVE_ROOT = path.resolve(process.env.E2E_ROOT || REPO_ROOT);
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--no-sandbox', '--enable-unsafe-webgpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
export const MINUTE = 60_000;
/** The tiny parity model (0.18 M parameters, 16x16) as served: fast enough for SwiftShader. */
export const TINY = '/tests/data/tiny/';

/**
 * What the tests and benches serve besides the page: the parity models, the fixtures, and the
 * onnxruntime-web anchor (its page needs cross-origin isolation for threads).
 */
export const TEST_RULES = [
  ...PAGE,
  { dir: 'tests/data/', cors: true },
  { dir: 'tests/e2e/fixtures/' },
  { file: 'benches/ort.html', isolate: true },
  { dir: 'node_modules/onnxruntime-web/dist/', isolate: true },
];

/**
 * Starts the server on a free port and Chromium; `requests` lists every path served. `rules`:
 * more of the tree to serve (serve.mjs's Rule), e.g. a bench's model folder. `webgpu: false`:
 * Chromium as a visitor without a GPU meets it (no adapter: wgpu's error, the CPU backend).
 */
export async function startEnv({ rules = [], webgpu = true } = {}) {
  for (const [file, why] of [
    [path.join(SERVE_ROOT, 'pkg/ddpm_web.js'), 'pkg/ is not built: run `make build-web`'],
    [CHROMIUM, 'Chromium is missing: apt-get install chromium (or set CHROMIUM_PATH)'],
  ]) {
    if (!existsSync(file)) throw new Error(`${file}: ${why}`);
  }
  const requests = [];
  const { server, url } = await startServer({ port: 0, root: SERVE_ROOT, rules: [...TEST_RULES, ...rules], onRequest: (req) => requests.push(req.url) });
  let browser;
  try {
    const args = webgpu ? CHROMIUM_ARGS : CHROMIUM_ARGS.filter((a) => a !== '--enable-unsafe-webgpu');
    browser = await chromium.launch({ executablePath: CHROMIUM, args });
  } catch (err) {
    server.close();
    throw err;
  }
  return {
    url,
    browser,
    requests,
    async close() {
      await browser.close().catch(() => {});
      server.closeAllConnections?.();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * Opens `url` in a fresh browser context (so a fresh Cache Storage). Collects console errors and
 * page errors; every wait fails at once on a page error or when the page shows data-state=error.
 */
export async function openPage(browser, url, contextOptions = {}) {
  const context = await browser.newContext({ viewport: { width: 1024, height: 900 }, ...contextOptions });
  const page = await context.newPage();
  const consoleErrors = [];
  const pageErrors = [];
  let onPageError;
  const pageFailed = new Promise((_, reject) => { onPageError = reject; });
  pageFailed.catch(() => {});
  page.on('console', (msg) => {
    if (msg.type() === 'error') consoleErrors.push(msg.text());
  });
  page.on('pageerror', (err) => {
    pageErrors.push(err);
    onPageError(new Error(`page error: ${err.message}`));
  });
  await page.goto(url);

  const state = () => page.evaluate(() => document.body.dataset.state);
  const errorText = async () => (await page.getByTestId('error').innerText()).trim();

  /** Waits until `pageFn(arg)` is truthy in the page or the page is in data-state=error. */
  async function waitFor(pageFn, arg, timeout) {
    const wrapped = `(() => document.body.dataset.state === 'error' || (${pageFn})(${JSON.stringify(arg)}))()`;
    try {
      await Promise.race([page.waitForFunction(wrapped, null, { timeout, polling: 250 }), pageFailed]);
    } catch (err) {
      const where = await page.evaluate(() => `data-state=${document.body.dataset.state}, ` +
        `model: ${document.getElementById('model-text')?.textContent}, ` +
        `progress: ${document.getElementById('progress-text')?.textContent}`).catch(() => '');
      err.message += ` (page: ${where})`;
      throw err;
    }
  }

  /** Waits for data-state to be one of `wanted`; throws with the error box when it is 'error' instead. */
  async function waitForState(wanted, timeout) {
    const states = [].concat(wanted);
    await waitFor((s) => s.includes(document.body.dataset.state), states, timeout);
    const now = await state();
    if (!states.includes(now)) throw new Error(`page went to data-state=${now}: ${await errorText()}`);
    return now;
  }

  return { context, page, consoleErrors, pageErrors, state, errorText, waitFor, waitForState, close: () => context.close() };
}

/**
 * Opens `env.url + query` on a fresh context, runs `body(session)`, then screenshots to
 * artifacts/SHOT, reports console errors, closes, and asserts no uncaught page errors.
 */
export async function withPage(t, env, query, shot, body) {
  const s = await openPage(env.browser, `${env.url}${query}`);
  try {
    await body(s);
  } finally {
    await screenshot(s.page, shot);
    for (const text of s.consoleErrors) t.diagnostic(`console error: ${text}`);
    await s.close();
  }
  if (s.pageErrors.length) throw new Error(`uncaught errors on the page: ${s.pageErrors.map(String).join('; ')}`);
}

/** Screenshot (the full page unless `fullPage: false`) to artifacts/NAME; never fails the test by itself. */
export async function screenshot(page, name, { fullPage = true } = {}) {
  try {
    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, name), fullPage });
  } catch (err) {
    console.error(`screenshot ${name}: ${err.message}`);
  }
}

/** Mean-free spread of the RGB values of every canvas in `selector` (alpha left out). */
export function canvasStats(page, selector) {
  return page.$$eval(selector, (canvases) => canvases.map((c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    let sum = 0;
    let sum2 = 0;
    for (let i = 0; i < d.length; i += 4) {
      for (let k = 0; k < 3; k++) {
        n += 1;
        sum += d[i + k];
        sum2 += d[i + k] * d[i + k];
      }
    }
    const mean = sum / n;
    return { width: c.width, height: c.height, mean, variance: sum2 / n - mean * mean };
  }));
}

/** The engine host's test-hook 'stats' (an 'init' with testHooks: true came first):
 *  {wasmBytes, warmed, gpuBuffers, gpuBytes}. */
export function engineStats(page) {
  return page.evaluate(async () => {
    const hub = (await import('/www/engine/client.js')).connect();
    return new Promise((resolve) => {
      const stop = hub.listen((msg) => {
        if (msg.type !== 'stats') return;
        stop();
        resolve(msg);
      });
      hub.post({ type: 'stats' });
    });
  });
}

/** Closes `browser` and each HTTP server (any may be missing: a `before` that failed early). */
export async function closeAll(browser, servers) {
  await browser?.close().catch(() => {});
  for (const s of servers) {
    s?.closeAllConnections?.();
    await new Promise((resolve) => (s ? s.close(resolve) : resolve()));
  }
}

/**
 * `dist/` (after `make dist`) on one origin and a blog on another, whose pages load from the
 * first under a strict CSP (scripts and styles from the first origin only, no inline styles): `html(path, distUrl)` gives a page's HTML. Resolves to
 * {dist, blog, servers} (the two URLs, no trailing slash; the servers, for closeAll).
 */
export async function startBlog(html) {
  const dist = path.join(REPO_ROOT, 'dist');
  if (!existsSync(path.join(dist, 'embed.js'))) throw new Error(`${dist}: run \`make dist\` first`);
  const files = await startServer({ port: 0, root: dist });
  const a = files.url.replace(/\/$/, '');
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Security-Policy': `default-src ${a}; script-src ${a} 'wasm-unsafe-eval'; style-src ${a}` });
    res.end(html(req.url, a));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    dist: a,
    blog: `http://127.0.0.1:${server.address().port}`,
    servers: [files.server, server],
  };
}
