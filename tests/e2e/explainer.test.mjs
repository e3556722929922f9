// End to end: explainer.html from `make dist`, under the README's Content-Security-Policy (scripts,
// styles, fonts and workers from its own origin, 'wasm-unsafe-eval'; no inline styles), in
// Chromium without WebGPU (the CPU backend, as a visitor without a GPU meets it): every equation is
// typeset by KaTeX with its fonts loaded, every element is defined and runs without an error
// state, nothing fails to load and nothing reaches the console; it reads at 320 px and in dark mode.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startServer } from '../../www/serve.mjs';
import { CHROMIUM, CHROMIUM_ARGS, MINUTE, REPO_ROOT, closeAll, screenshot } from './helpers.mjs';

const DIST = path.join(REPO_ROOT, 'dist');
// docs/embed.md's policy with the article's host as 'self'; style-src falls back to default-src.
const CSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:";
const ELEMENTS = ['ddpm-forward', 'ddpm-schedule', 'ddpm-trajectory', 'ddpm-sdedit', 'ddpm-interpolate'];
// The samplers' elements with few steps, so that what they start on load fits a 2-core machine:
// inserted right after the tag name, these win over the article's own attributes (the HTML parser
// keeps an attribute's first occurrence).
const CHEAP = {
  'ddpm-trajectory': 'ddpm-steps="10" ddim-steps="5"',
  'ddpm-sdedit': 'steps="5" seeds="2"',
  'ddpm-interpolate': 'steps="5" count="3"',
};

/** Records the CSP's violations, from before the page's scripts run. */
function recordViolations() {
  window.__violations = [];
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__violations.push(`${e.effectiveDirective} blocked ${e.blockedURI || '(inline)'} at ${e.sourceFile}:${e.lineNumber}`);
  });
}

describe('explainer.html', { timeout: 4 * MINUTE }, () => {
  let files;
  let browser;
  const served = [];
  before(async () => {
    if (!existsSync(path.join(DIST, 'explainer.html'))) throw new Error(`${DIST}/explainer.html: run \`make dist\` first`);
    files = await startServer({ port: 0, root: DIST, onRequest: (req) => served.push(req.url) });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS.filter((a) => a !== '--enable-unsafe-webgpu') });
  });
  after(async () => {
    await closeAll(browser, [files?.server]);
  });

  test('typesets its math, runs its elements under a strict CSP, with no errors', { timeout: 3 * MINUTE }, async (t) => {
    const context = await browser.newContext({ viewport: { width: 900, height: 1000 } });
    const page = await context.newPage();
    const consoleErrors = [];
    const failed = [];
    page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
    page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));
    page.on('requestfailed', (r) => failed.push(`${r.url()}: ${r.failure()?.errorText}`));
    page.on('response', (r) => r.status() >= 400 && failed.push(`${r.url()}: HTTP ${r.status()}`));
    await page.addInitScript(recordViolations);
    const base = files.url.replace(/\/$/, '');
    let html = readFileSync(path.join(DIST, 'explainer.html'), 'utf8');
    for (const [tag, attrs] of Object.entries(CHEAP)) html = html.replaceAll(`<${tag}`, `<${tag} ${attrs}`);
    await page.route(`${base}/explainer.html`, (route) => route.fulfill({
      contentType: 'text/html; charset=utf-8', headers: { 'Content-Security-Policy': CSP }, body: html,
    }));
    const started = Date.now();
    try {
      await page.goto(`${base}/explainer.html`);

      // Every .math element holds KaTeX's output, and the fonts it asked for loaded.
      await page.waitForFunction(() => document.documentElement.dataset.math === 'typeset', null, { timeout: 30_000 });
      const math = await page.$$eval('.math', (list) => list.map((e) => ({ typeset: !!e.querySelector('.katex'), tex: e.textContent.slice(0, 60) })));
      assert.ok(math.length >= 40, `the article's equations (${math.length})`);
      assert.deepEqual(math.filter((m) => !m.typeset), [], 'every .math element is typeset by KaTeX');
      assert.equal(await page.$$eval('.math.display', (l) => l.filter((e) => !e.querySelector('.katex-display')).length), 0, 'display equations in display mode');
      const fonts = await page.evaluate(async () => {
        await document.fonts.ready;
        return [...document.fonts].filter((f) => f.family.startsWith('KaTeX') && f.status !== 'unloaded').map((f) => `${f.family} ${f.weight} ${f.style}: ${f.status}`);
      });
      t.diagnostic(`fonts used: ${fonts.join(', ')}`);
      for (const family of ['KaTeX_Main', 'KaTeX_Math', 'KaTeX_AMS', 'KaTeX_Caligraphic']) {
        assert.ok(fonts.some((f) => f.startsWith(`${family} `) && f.endsWith('loaded')), `${family} loaded: ${fonts}`);
      }
      assert.deepEqual(fonts.filter((f) => !f.endsWith('loaded')), [], 'no font failed');
      assert.ok(served.some((u) => /^\/vendor\/katex\/fonts\/KaTeX_Main-Regular\.woff2/.test(u)), 'the woff2 fonts come from vendor/');

      // Each element is defined and, brought into view (they start when near it), runs on the
      // shared engine (the CPU) to ready, never to error.
      const present = await page.evaluate((tags) => tags.filter((tag) => document.querySelector(tag)), ELEMENTS);
      assert.deepEqual(present, ELEMENTS, 'the article uses every element');
      assert.deepEqual(await page.evaluate((tags) => tags.filter((tag) => !customElements.get(tag)), ELEMENTS), [], 'every element is defined');
      assert.equal(await page.$eval('ddpm-trajectory', (e) => e.getAttribute('ddpm-steps')), '10', 'the test\'s few steps apply');
      const all = page.locator(ELEMENTS.join(','));
      const count = await all.count();
      const states = () => all.evaluateAll((list) => list.map((e) => `${e.localName}: ${e.dataset.state}`));
      const errors = () => all.evaluateAll((list) => list.filter((e) => e.dataset.state === 'error')
        .map((e) => `${e.localName}: ${e.shadowRoot?.querySelector('.error')?.textContent}`));
      for (let i = 0; i < count; i++) {
        const element = all.nth(i);
        await element.scrollIntoViewIfNeeded();
        const tag = await element.evaluate((e) => e.localName);
        try {
          await page.waitForFunction((e) => ['ready', 'error'].includes(e.dataset.state), await element.elementHandle(), { timeout: 60_000, polling: 100 });
        } catch (err) {
          err.message = `${tag} (#${i}) did not settle: ${err.message} (states: ${(await states()).join(', ')})`;
          throw err;
        }
        assert.deepEqual(await errors(), [], `no element in data-state=error once ${tag} (#${i}) settled`);
        t.diagnostic(`${tag} ready after ${((Date.now() - started) / 1000).toFixed(1)} s`);
      }
      // A late error (a run that fails after ready) gets a moment to show.
      await page.waitForTimeout(2000);
      assert.deepEqual(await errors(), [], 'no element in data-state=error at the end');

      // The top of the article, for docs/explainer.png.
      await page.evaluate(() => window.scrollTo(0, 0));
      await screenshot(page, 'explainer.png', { fullPage: false });

      // A phone: no sideways scrolling at 320 px (wide equations scroll inside themselves).
      await page.setViewportSize({ width: 320, height: 640 });
      const wide = await page.evaluate(() => ({
        page: document.documentElement.scrollWidth,
        over: [...document.querySelectorAll('main *')].filter((e) => e.getBoundingClientRect().right > 321 && !e.closest('.katex-display'))
          .map((e) => e.localName + (e.className && typeof e.className === 'string' ? `.${e.className.split(' ')[0]}` : '')).slice(0, 8),
      }));
      assert.equal(wide.page, 320, `no horizontal scroll at 320 px (wider: ${wide.over})`);
      const scrolling = await page.waitForFunction(() => {
        const wider = [...document.querySelectorAll('.katex-display')].filter((d) => d.scrollWidth > d.clientWidth);
        return wider.length > 0 && wider.every((d) => d.tabIndex === 0) && wider.length;
      }, null, { timeout: 5000 });
      t.diagnostic(`at 320 px, ${await scrolling.jsonValue()} equations scroll sideways, each focusable`);

      // Dark mode follows the reader's setting.
      await page.emulateMedia({ colorScheme: 'dark' });
      const dark = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
      assert.equal(dark, 'rgb(21, 21, 23)', 'dark background under prefers-color-scheme: dark');

      const violations = await page.evaluate(() => window.__violations);
      assert.deepEqual(violations, [], 'no CSP violations');
      assert.deepEqual(failed, [], 'no failed requests');
      assert.deepEqual(consoleErrors, [], 'no console errors');
      t.diagnostic(`${served.length} requests, ${((Date.now() - started) / 1000).toFixed(1)} s`);
    } finally {
      for (const text of [...consoleErrors, ...failed]) t.diagnostic(`console or request: ${text}`);
      await context.close();
    }
  });
});
