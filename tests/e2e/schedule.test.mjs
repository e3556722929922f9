// End to end: <ddpm-schedule> from `make dist` in headless Chromium, on a page under a strict CSP
// (scripts and workers from its own origin, 'wasm-unsafe-eval', no inline styles): it draws two
// curves per panel for compare="linear,squaredcos_cap_v2", its arrays are diffusers' (the parity
// vectors of tests/data/tiny), the t attribute pins the read-out, the keyboard and the pointer
// move t (tchange), a fetched scheduler_config.json works, and bad input shows an error naming it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startServer } from '../../www/serve.mjs';
import { readSafetensors } from '../../benches/dawn.mjs';
import { CHROMIUM, CHROMIUM_ARGS, MINUTE, REPO_ROOT, screenshot } from './helpers.mjs';

const DIST = path.join(REPO_ROOT, 'dist');
const TINY = path.join(REPO_ROOT, 'tests/data/tiny');
const CSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'";

/** Records every <ddpm-schedule> event in window.__events (before the element's script runs). */
function recordEvents() {
  window.__events = [];
  for (const type of ['ready', 'tchange', 'error']) {
    document.addEventListener(type, (e) => {
      if (e.target.localName === 'ddpm-schedule') window.__events.push({ type, id: e.target.id, detail: JSON.parse(JSON.stringify(e.detail)) });
    }, true);
  }
}

const maxAbs = (a, b) => {
  assert.equal(a.length, b.length, 'lengths');
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
};

describe('<ddpm-schedule>', { timeout: 2 * MINUTE }, () => {
  let files;
  let browser;
  const requests = [];
  const expected = readSafetensors(path.join(TINY, 'expected.safetensors'));
  /** diffusers' arrays of a schedule, by the element's names (log-SNR from alphas_cumprod, in f64) */
  const diffusers = (prefix) => ({
    beta: expected[`${prefix}.betas`].data,
    alpha_bar: expected[`${prefix}.alphas_cumprod`].data,
    beta_tilde: expected[`${prefix}.posterior_variance`].data,
    log_snr: Array.from(expected[`${prefix}.alphas_cumprod`].data, (ac) => Math.log(ac / (1 - ac))),
  });

  before(async () => {
    if (!existsSync(path.join(DIST, 'schedule.js'))) throw new Error(`${DIST}/schedule.js: run \`make dist\` first`);
    files = await startServer({ port: 0, root: DIST, onRequest: (req) => requests.push(req.url) });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });
  after(async () => {
    await browser?.close().catch(() => {});
    files?.server.closeAllConnections?.();
    await new Promise((resolve) => (files ? files.server.close(resolve) : resolve()));
  });

  /** A page at `files.url/post.html` holding `body`, under CSP; /cfg/tiny/scheduler_config.json is the tiny model's. */
  async function open(body) {
    const context = await browser.newContext({ viewport: { width: 900, height: 1400 } });
    const page = await context.newPage();
    const consoleErrors = [];
    page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
    page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));
    await page.addInitScript(recordEvents);
    const base = files.url.replace(/\/$/, '');
    await page.route(`${base}/post.html`, (route) => route.fulfill({
      contentType: 'text/html; charset=utf-8', headers: { 'Content-Security-Policy': CSP },
      body: `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>post</title>
<script type="module" src="${base}/schedule.js"></script></head><body><main>${body}</main></body></html>`,
    }));
    await page.route(`${base}/cfg/tiny/scheduler_config.json`, (route) => route.fulfill({
      contentType: 'application/json', body: readFileSync(path.join(TINY, 'scheduler_config.json'), 'utf8'),
    }));
    await page.goto(`${base}/post.html`);
    const settled = (ids) => page.waitForFunction((list) => list.every((id) => ['ready', 'error'].includes(document.getElementById(id)?.dataset.state)),
      ids, { timeout: 30_000, polling: 100 });
    const events = () => page.evaluate(() => window.__events);
    const readout = (id) => page.$eval(`#${id}`, (e) => ({
      head: e.shadowRoot.querySelector('.readout thead th').textContent,
      rows: Object.fromEntries([...e.shadowRoot.querySelectorAll('.readout tbody tr')].map((tr) => [tr.dataset.schedule,
        Object.fromEntries([...tr.querySelectorAll('td')].map((td) => [td.dataset.curve, Number(td.textContent)]))])),
    }));
    return { context, page, consoleErrors, settled, events, readout };
  }

  test('compare, src, t, keyboard and pointer; arrays match diffusers', async (t) => {
    const p = await open(`<ddpm-schedule id="a" compare="linear,squaredcos_cap_v2" t="500"></ddpm-schedule>
<ddpm-schedule id="b" src="cfg/tiny/scheduler_config.json" curves="alpha_bar,log_snr"></ddpm-schedule>
<ddpm-schedule id="bad" compare="linear,nope"></ddpm-schedule>`);
    try {
      await p.settled(['a', 'b', 'bad']);
      const errorOf = (id) => p.page.$eval(`#${id}`, (e) => e.shadowRoot.querySelector('.error').textContent);
      assert.equal(await p.page.$eval('#a', (e) => e.dataset.state), 'ready', await errorOf('a'));
      assert.equal(await p.page.$eval('#b', (e) => e.dataset.state), 'ready', await errorOf('b'));

      // two curves per panel (the beta panel: beta solid and beta~ dashed, two of each)
      const panels = await p.page.$eval('#a', (e) => [...e.shadowRoot.querySelectorAll('svg[data-panel]')].map((s) => ({
        panel: s.dataset.panel,
        solid: [...s.querySelectorAll('path.curve:not(.second)')].map((c) => c.dataset.schedule),
        dashed: [...s.querySelectorAll('path.curve.second')].map((c) => c.dataset.curve),
      })));
      assert.deepEqual(panels.map((x) => x.panel), ['beta', 'alpha_bar', 'log_snr']);
      for (const x of panels) assert.deepEqual(x.solid, ['linear', 'squaredcos_cap_v2'], `${x.panel}: one curve per schedule`);
      assert.deepEqual(panels[0].dashed, ['beta_tilde', 'beta_tilde']);
      assert.deepEqual(await p.page.$eval('#b', (e) => [...e.shadowRoot.querySelectorAll('svg[data-panel]')].map((s) => s.dataset.panel)),
        ['alpha_bar', 'log_snr'], 'curves= picks the panels');

      // the arrays shown are diffusers'
      const shown = await p.page.$eval('#a', (e) => e.curves.map((c) => ({ name: c.name, T: c.T,
        beta: [...c.beta], alpha_bar: [...c.alpha_bar], log_snr: [...c.log_snr], beta_tilde: [...c.beta_tilde] })));
      for (const [i, prefix] of [[0, 'linear'], [1, 'cosine']]) {
        const want = diffusers(prefix);
        assert.equal(shown[i].T, 1000);
        for (const key of ['beta', 'alpha_bar', 'beta_tilde']) {
          const err = maxAbs(shown[i][key], want[key]);
          assert.ok(err <= 1e-6, `${shown[i].name}.${key}: max abs error ${err} against diffusers`);
          t.diagnostic(`${shown[i].name}.${key}: max abs error ${err.toExponential(2)} against diffusers`);
        }
        // ln(ac / (1 - ac)) amplifies alpha_bar's f32 rounding where 1 - ac is small (t = 0): relative
        const rel = shown[i].log_snr.reduce((m, v, t) => Math.max(m, Math.abs(v - want.log_snr[t]) / Math.max(1, Math.abs(want.log_snr[t]))), 0);
        assert.ok(rel <= 1e-6, `${shown[i].name}.log_snr: max error ${rel} against ln(ac / (1 - ac)) of diffusers' alphas_cumprod`);
        t.diagnostic(`${shown[i].name}.log_snr: max error ${rel.toExponential(2)} (relative past |log-SNR| = 1)`);
      }
      const bShown = await p.page.$eval('#b', (e) => [...e.curves[0].alpha_bar]);
      assert.ok(maxAbs(bShown, diffusers('linear').alpha_bar) <= 1e-6, 'the fetched scheduler_config.json is the linear schedule');

      // t="500" pins the read-out: the numbers shown are the paper's at t = 500, diffusers' [499]
      // (4 significant digits)
      const at500 = await p.readout('a');
      assert.equal(at500.head, 't = 500');
      for (const [name, prefix] of [['linear', 'linear'], ['squaredcos_cap_v2', 'cosine']]) {
        const want = diffusers(prefix);
        for (const key of ['beta', 'beta_tilde', 'alpha_bar', 'log_snr']) {
          const v = want[key][499];
          assert.ok(Math.abs(at500.rows[name][key] - v) <= 5e-4 * Math.abs(v), `${name} ${key} at t=500: shown ${at500.rows[name][key]}, diffusers ${v}`);
        }
      }
      let events = await p.events();
      const ready = events.find((e) => e.type === 'ready' && e.id === 'a');
      assert.deepEqual(ready.detail.names, ['linear', 'squaredcos_cap_v2']);
      assert.ok(ready.detail.lengths.every((l) => l.T === 1000 && l.beta === 1000 && l.alpha_bar === 1000 && l.log_snr === 1000 && l.beta_tilde === 1000));
      assert.equal(ready.detail.t, 500);

      // the keyboard moves t
      await p.page.focus('#a >> .plots');
      await p.page.keyboard.press('ArrowRight');
      await p.page.keyboard.press('Shift+ArrowRight');
      assert.equal((await p.readout('a')).head, 't = 511');
      assert.equal(await p.page.$eval('#a', (e) => e.shadowRoot.querySelector('.plots').getAttribute('aria-valuenow')), '511');
      await p.page.keyboard.press('End');
      const atEnd = await p.readout('a');
      assert.equal(atEnd.head, 't = 1000');
      assert.ok(Math.abs(atEnd.rows.linear.beta - 0.02) < 1e-6);
      events = (await p.events()).filter((e) => e.type === 'tchange' && e.id === 'a');
      assert.deepEqual(events.map((e) => e.detail.t), [501, 511, 1000]);
      assert.equal(events[0].detail.values[0].name, 'linear');
      assert.ok(Math.abs(events[0].detail.values[0].alpha_bar - diffusers('linear').alpha_bar[500]) < 1e-6, 'tchange carries the values at t');

      // the pointer moves t: a quarter of the way along the alpha_bar panel's x axis is index 250, t = 251
      const box = await p.page.$eval('#a', (e) => {
        const r = e.shadowRoot.querySelector('svg[data-panel=alpha_bar]').getBoundingClientRect();
        return { x: r.x, y: r.y, w: r.width, h: r.height };
      });
      const [W, left, right] = [640, 58, 14];  // schedule.js's viewBox width and margins
      await p.page.mouse.move(box.x + ((left + 0.25 * (W - left - right)) / W) * box.w, box.y + box.h / 2);
      assert.equal((await p.readout('a')).head, 't = 251');
      const last = (await p.events()).filter((e) => e.type === 'tchange' && e.id === 'a').at(-1);
      assert.equal(last.detail.t, 251);
      // leaving the plots goes back to the pinned t
      await p.page.mouse.move(1, 1);
      assert.equal((await p.readout('a')).head, 't = 500');

      // an unknown preset: the error names it, and the presets there are
      assert.equal(await p.page.$eval('#bad', (e) => e.dataset.state), 'error');
      const message = await errorOf('bad');
      assert.match(message, /unknown schedule "nope".*linear, scaled_linear, squaredcos_cap_v2/);
      const error = (await p.events()).find((e) => e.type === 'error' && e.id === 'bad');
      assert.equal(error.detail.message, message);
      assert.deepEqual(p.consoleErrors, [], 'no console errors');
      const wasm = requests.filter((u) => u.endsWith('/ddpm_web_bg.wasm'));
      assert.equal(wasm.length, 1, 'three elements, one wasm module (the page\'s engine host)');
    } finally {
      await screenshot(p.page, 'e2e-schedule.png');
      await p.context.close();
    }
  });

  test('an unreadable config says which and why', async () => {
    const p = await open(`<ddpm-schedule id="missing" src="no/such/scheduler_config.json"></ddpm-schedule>
<ddpm-schedule id="broken" src="schedule.js"></ddpm-schedule><ddpm-schedule id="t" compare="linear" t="0"></ddpm-schedule>`);
    try {
      await p.settled(['missing', 'broken', 't']);
      const errorOf = (id) => p.page.$eval(`#${id}`, (e) => [e.dataset.state, e.shadowRoot.querySelector('.error').textContent]);
      const [state, message] = await errorOf('missing');
      assert.equal(state, 'error');
      assert.match(message, /no\/such\/scheduler_config\.json: HTTP 404/);
      const [state2, message2] = await errorOf('broken');
      assert.equal(state2, 'error');
      assert.match(message2, /schedule\.js: invalid JSON/);
      assert.deepEqual(await errorOf('t'), ['error', 't="0" must be a whole number from 1 to 1000']);
      assert.deepEqual(p.consoleErrors.filter((e) => !/404/.test(e)), [], 'no console errors besides the 404');
    } finally {
      await p.context.close();
    }
  });
});
