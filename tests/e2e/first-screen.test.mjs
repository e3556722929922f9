// The page as a visitor without a GPU meets it (issue 46): Chromium without WebGPU's flag, so
// wgpu finds no adapter and the engine runs on the CPU. On a phone (390x844) and a laptop
// (1280x900) the first screen says what this is, and Generate and its digits fit on it without
// scrolling; wgpu's error waits under "details"; the settings are in the address; every control is
// a touch target of 44 px or more; nothing scrolls sideways at 320 px; a finger draws on the pad.
// Screenshots: artifacts/first-screen-390x844.png and first-screen-1280x900.png (the first is
// docs/page.png, the README's picture).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MINUTE, openPage, screenshot, startEnv } from './helpers.mjs';

const INTERNALS = /WgpuDevice|adapter available|not requested/;

/** The bounding boxes of `selectors`, each asserted inside the viewport, with no scrolling. */
async function assertOnFirstScreen(page, selectors) {
  const { scrollY, width, height } = await page.evaluate(() => ({ scrollY: window.scrollY, width: innerWidth, height: innerHeight }));
  assert.equal(scrollY, 0, 'the page is not scrolled');
  for (const selector of selectors) {
    const box = await page.locator(selector).first().boundingBox();
    assert.ok(box, `${selector} is shown`);
    assert.ok(box.x >= 0 && box.y >= 0 && box.x + box.width <= width && box.y + box.height <= height,
      `${selector} is on the first screen (${JSON.stringify(box)} in ${width}x${height})`);
  }
}

describe('the first screen, without a GPU', { timeout: 20 * MINUTE }, () => {
  let env;
  before(async () => { env = await startEnv({ webgpu: false }); });
  after(async () => { await env?.close(); });

  for (const [width, height] of [[390, 844], [1280, 900]]) {
    test(`${width}x${height}: what this is, Generate and its digits, no wgpu internals`, { timeout: 8 * MINUTE }, async (t) => {
      const phone = width < 600;
      const s = await openPage(env.browser, `${env.url}?steps=8`, { viewport: { width, height }, hasTouch: phone, isMobile: phone });
      const { page, waitFor, waitForState } = s;
      try {
        await waitForState('ready', 5 * MINUTE);
        assert.match(await page.locator('h1').innerText(), /digits/, 'the title says what this is');
        const line = page.getByTestId('backend-line');
        assert.match(await line.innerText(), /^Running on the CPU \(wasm\): this browser offers no WebGPU\./);
        // the expected time, from the two steps timed once the model loaded
        await waitFor(() => /Expected: .* for 4 images at 8 steps/.test(document.getElementById('estimate').textContent), null, 2 * MINUTE);
        assert.doesNotMatch(await page.locator('body').innerText(), INTERNALS, 'no wgpu internals in the visible text');
        assert.equal(await page.getByTestId('backend-why').isVisible(), false, 'the engine\'s reason is folded');
        await page.locator('#backend-details summary').click();
        assert.match(await page.getByTestId('backend-why').innerText(), /No adapter available for WgpuDevice/, 'details has the engine\'s reason');
        await page.locator('#backend-details summary').click();

        await assertOnFirstScreen(page, ['h1', '[data-testid=generate]']);
        await page.getByTestId('generate').click();
        await waitForState('done', 5 * MINUTE);
        const images = page.locator('[data-testid=results] canvas');
        assert.equal(await images.count(), 4, 'four digits (the CPU backend\'s default)');
        await assertOnFirstScreen(page, ['h1', '[data-testid=generate]', '[data-testid=xt]', '[data-testid=results]',
          ...[0, 1, 2, 3].map((i) => `[data-testid=results] figure:nth-child(${i + 1}) canvas`)]);
        const box = await images.first().boundingBox();
        assert.ok(box.width >= 72, `the digits are scaled up (${box.width} px wide)`);
        assert.equal(await images.first().evaluate((c) => getComputedStyle(c).imageRendering), 'pixelated');
        assert.match(await images.first().getAttribute('aria-label'), /^Generated image 1 of 4 \(DPM-Solver\+\+, 8 steps, seed 42\)$/);
        await screenshot(page, `first-screen-${width}x${height}.png`, { fullPage: false });

        // a link to this page reproduces the run
        const address = new URL(page.url()).searchParams;
        assert.deepEqual(['sampler', 'steps', 'n', 'seed'].map((k) => address.get(k)), ['dpm++', '8', '4', '42']);
        if (!phone) return;

        // touch targets, and no sideways scrolling on the smallest phones
        const small = await page.evaluate(() => [...document.querySelectorAll('button, select, input, summary, a.button, label.check')]
          .filter((e) => e.getClientRects().length && !(e.matches('input[type=checkbox]')))
          .map((e) => [e.id || e.textContent.trim().slice(0, 20) || e.tagName, e.getBoundingClientRect().height])
          .filter(([, h]) => h < 44));
        assert.deepEqual(small, [], 'every control is at least 44 px tall');
        await page.setViewportSize({ width: 320, height: 700 });
        assert.equal(await page.evaluate(() => document.documentElement.scrollWidth), 320, 'no horizontal scroll at 320 px');
        // a finger on the pad draws a stroke, which "Add drawing" takes
        assert.equal(await page.getByTestId('pad').evaluate((c) => getComputedStyle(c).touchAction), 'none');
        await page.getByTestId('pad').scrollIntoViewIfNeeded();
        const pad = await page.getByTestId('pad').boundingBox();
        await page.touchscreen.tap(pad.x + pad.width / 2, pad.y + pad.height / 2);
        await page.getByTestId('pad-add').click();
        await page.waitForFunction(() => document.querySelector('[data-testid=dataset-count]').textContent === '1 image(s)');
      } finally {
        for (const text of s.consoleErrors) t.diagnostic(`console error: ${text}`);
        await s.close();
      }
      assert.deepEqual(s.pageErrors, []);
    });
  }

  test('the settings come back from the address; dark mode; fewer live frames for reduced motion', { timeout: 6 * MINUTE }, async () => {
    const query = '?sampler=ddim&steps=8&n=2&eta=0.5&seed=7';
    const s = await openPage(env.browser, `${env.url}${query}`, { colorScheme: 'dark', reducedMotion: 'reduce' });
    const { page, waitForState } = s;
    try {
      await waitForState('ready', 5 * MINUTE);
      const values = await page.evaluate(() => ['sampler', 'steps', 'n', 'eta', 'seed'].map((id) => document.getElementById(id).value));
      assert.deepEqual(values, ['ddim', '8', '2', '0.5', '7']);
      const dark = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
      assert.equal(dark, 'rgb(21, 21, 23)', 'a dark background where the system asks for one');
      const frames = page.evaluate(async () => {
        const hub = (await import('/www/engine/client.js')).connect();
        return new Promise((resolve) => {
          let n = 0;
          const stop = hub.listen((msg) => {
            if (msg.type === 'preview') n += 1;
            if (msg.type === 'done' && document.body.dataset.state !== 'loading') {
              stop();
              resolve(n);
            }
          });
        });
      });
      await page.getByTestId('generate').click();
      await waitForState('done', 5 * MINUTE);
      assert.ok(await frames <= 4, `at most 4 live frames of 8 steps (${await frames})`);
      assert.match(await page.getByTestId('status').innerText(), /DDIM, 8 steps, seed 7/);
    } finally {
      await s.close();
    }
  });
});
