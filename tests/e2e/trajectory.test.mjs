// End to end: <ddpm-trajectory> from `make dist` in a blog page on another origin under a strict
// CSP (no inline styles), on the shipped model and the CPU backend with few steps: it keeps one
// frame per step of each sampler, its last predicted x_0 is the sample, a seed gives the same
// frames again and another seed others, the scrubber (by keyboard) and the position attribute
// move what is shown, the eta slider reruns DDIM only, the PNG strip and the GIF are what they
// should be, and a bad attribute names itself. On WebGPU it keeps the frames the CPU keeps.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, MINUTE, closeAll, startBlog } from './helpers.mjs';

// The exports' sizes: the shipped model's 32x32 images drawn 3x (96 px), 4 px apart and around.
const TILE = 96;
const GAP = 4;
const span = (k) => k * TILE + (k + 1) * GAP;

/** In the page: what the element kept, per sampler, with a hash of its frames. */
function kept(e) {
  const hash = (arrays) => {
    let h = 2166136261;
    for (const a of arrays) for (const b of a) h = Math.imul(h ^ b, 16777619) >>> 0;
    return h;
  };
  const maxDiff = (u, v) => (u.length === v.length ? u.reduce((m, x, i) => Math.max(m, Math.abs(x - v[i])), 0) : Infinity);
  const side = (frames, sample) => ({
    count: frames.length,
    dones: frames.map((f) => f.done),
    sizes: [...new Set(frames.map((f) => `${f.xt.width}x${f.xt.height} ${f.x0.width}x${f.x0.height}`))],
    xt: hash(frames.map((f) => f.xt.rgba)),
    x0: hash(frames.map((f) => f.x0.rgba)),
    lastXtVsSample: maxDiff(frames.at(-1).xt.rgba, sample.rgba),
    lastX0VsSample: maxDiff(frames.at(-1).x0.rgba, sample.rgba),
  });
  const { frames, samples } = e;
  return { state: e.dataset.state, ddpm: side(frames.ddpm, samples.ddpm), ddim: side(frames.ddim, samples.ddim) };
}

/** In the page: what the element shows, and whether each x_t canvas shows the frame its
 *  caption names. */
function shown(e) {
  const root = e.shadowRoot;
  const [ddpm, ddim] = root.querySelectorAll('.side');
  const pixels = (c) => c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const side = (el, frames) => {
    const at = el.querySelector('.at').textContent;
    const step = Number(/after step (\d+) of/.exec(at)?.[1]);
    const canvas = pixels(el.querySelector('canvas.xt'));
    return { at, head: el.querySelector('.head').textContent, label: el.querySelector('canvas.xt').getAttribute('aria-label'),
      matches: canvas.every((b, i) => b === frames[step - 1]?.xt.rgba[i]), first: Array.from(canvas.slice(0, 400)) };
  };
  return {
    pos: root.querySelector('#pos').value, max: root.querySelector('#pos').max, percent: root.querySelector('.posval').value,
    valuetext: root.querySelector('#pos').getAttribute('aria-valuetext'),
    ddpm: side(ddpm, e.frames.ddpm), ddim: side(ddim, e.frames.ddim),
  };
}

/** The image descriptors of a GIF, walking its blocks; throws on a malformed one. */
function gifFrames(bytes) {
  assert.equal(bytes.subarray(0, 6).toString('latin1'), 'GIF89a');
  const width = bytes.readUInt16LE(6);
  const height = bytes.readUInt16LE(8);
  const table = (flags) => (flags & 0x80 ? 3 * 2 ** ((flags & 7) + 1) : 0);
  let at = 13 + table(bytes[10]);
  const subBlocks = () => {
    while (bytes[at] !== 0) at += bytes[at] + 1;
    at += 1;
  };
  let frames = 0;
  for (;;) {
    const block = bytes[at];
    if (block === 0x3b) break;
    if (block === 0x21) {
      at += 2;
      subBlocks();
    } else if (block === 0x2c) {
      frames += 1;
      at += 10 + table(bytes[at + 9]) + 1;
      subBlocks();
    } else {
      throw new Error(`GIF: block 0x${block?.toString(16)} at byte ${at}`);
    }
    if (at >= bytes.length) throw new Error('GIF: no trailer');
  }
  return { width, height, frames };
}

describe('<ddpm-trajectory>', { timeout: 12 * MINUTE }, () => {
  let env;
  let blog;
  let browser;
  before(async () => {
    // /gpu.html: WebGPU where the browser has it (SwiftShader here), with /cpu3.html its CPU
    // counterpart; /bad-model.html: a malformed Hub id; any other page: the CPU, with more steps
    const attrs = (url) => (url.startsWith('/gpu') ? 'seed="5" ddpm-steps="3" ddim-steps="3"'
      : url.startsWith('/cpu3') ? 'seed="5" ddpm-steps="3" ddim-steps="3" backend="cpu"'
        : url.startsWith('/bad-model') ? 'model="hf:nope" backend="cpu"'
          : 'seed="5" ddpm-steps="20" ddim-steps="10" backend="cpu"');
    env = await startBlog((url, a) => `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>a post</title>
<script type="module" src="${a}/trajectory.js"></script></head><body><article><h1>Two samplers, one seed</h1>
<ddpm-trajectory id="tr" ${attrs(url)}></ddpm-trajectory></article></body></html>`);
    blog = { url: env.blog };
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });
  after(async () => {
    await closeAll(browser, env?.servers ?? []);
  });

  /** A page on `name`, its console errors, and its element's events (which do not bubble). */
  async function open(name) {
    const page = await (await browser.newContext({ viewport: { width: 1024, height: 900 } })).newPage();
    const errors = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
    await page.addInitScript(() => {
      window.seen = [];
      for (const type of ['ready', 'progress', 'done', 'error']) {
        document.addEventListener(type, (e) => e.target.localName === 'ddpm-trajectory' && window.seen.push({ type, detail: e.detail }), true);
      }
    });
    await page.goto(`${blog.url}/${name}`);
    return { page, errors };
  }

  /** Waits for every run the element's attributes ask for to be done. */
  const settled = (page, timeout = 4 * MINUTE) =>
    page.waitForFunction(() => ['ready', 'error'].includes(document.getElementById('tr').dataset.state), null, { timeout, polling: 100 })
      .then(() => page.$eval('#tr', (e) => e.dataset.state === 'error' && e.shadowRoot.querySelector('.error').textContent))
      .then((error) => assert.equal(error, false, 'the element shows no error'));
  const dones = (page) => page.evaluate(() => window.seen.filter((s) => s.type === 'done').map((s) => s.detail));

  test('keeps each step of both samplers, scrubs them, reruns DDIM on eta, saves a PNG and a GIF', { timeout: 10 * MINUTE }, async (t) => {
    const { page, errors } = await open('post.html');
    const started = Date.now();
    await settled(page);
    t.diagnostic(`DDIM-10 and DDPM-20 on the CPU: ${Date.now() - started} ms`);
    const first = await page.$eval('#tr', kept);
    t.diagnostic(JSON.stringify(first));

    // A frame per step, in order, each the model's 32x32 image; the last x_t is the sample, and
    // so is DDIM's last predicted x_0.
    assert.deepEqual(first.ddpm.dones, Array.from({ length: 20 }, (_, i) => i + 1));
    assert.deepEqual(first.ddim.dones, Array.from({ length: 10 }, (_, i) => i + 1));
    assert.deepEqual(first.ddpm.sizes, ['32x32 32x32']);
    assert.deepEqual(first.ddim.sizes, ['32x32 32x32']);
    assert.equal(first.ddpm.lastXtVsSample, 0, 'DDPM: the last x_t is the sample');
    assert.equal(first.ddim.lastXtVsSample, 0, 'DDIM: the last x_t is the sample');
    assert.equal(first.ddim.lastX0VsSample, 0, 'DDIM: the last predicted x_0 is the sample');
    const seen = await page.evaluate(() => window.seen);
    assert.deepEqual(seen.find((s) => s.type === 'ready').detail, { T: 1000 });
    assert.deepEqual(await dones(page), [
      { sampler: 'ddim', seed: 5, steps: 10, eta: 0, frames: 10 },
      { sampler: 'ddpm', seed: 5, steps: 20, eta: 0, frames: 20 },
    ], 'DDIM runs first');
    assert.ok(seen.filter((s) => s.type === 'progress').length >= 30, 'progress at every step');

    // The scrubber starts at the samples; Home takes both samplers to their first step, and the
    // same fraction of the way is the same fraction of each run.
    const end = await page.$eval('#tr', shown);
    assert.equal(end.max, '20');
    assert.equal(end.ddpm.at, 'after step 20 of 20');
    assert.equal(end.ddim.at, 'after step 10 of 10');
    assert.ok(end.ddpm.matches && end.ddim.matches, 'the canvases show the frames their captions name');
    assert.equal(end.ddim.head, 'DDIM · 10 steps · η = 0');
    await page.locator('#tr #pos').focus();
    await page.keyboard.press('Home');
    const start = await page.$eval('#tr', shown);
    assert.equal(start.ddpm.at, 'after step 1 of 20');
    assert.equal(start.ddim.at, 'after step 1 of 10');
    assert.ok(start.ddpm.matches && start.ddim.matches);
    assert.notDeepEqual(start.ddpm.first, end.ddpm.first, 'the scrubber changes the pixels shown');
    assert.equal(start.percent, '5%');
    assert.match(start.valuetext, /DDPM step 1 of 20, DDIM step 1 of 10/);
    for (let i = 0; i < 9; i++) await page.keyboard.press('ArrowRight');
    const half = await page.$eval('#tr', shown);
    assert.equal(half.ddpm.at, 'after step 10 of 20');
    assert.equal(half.ddim.at, 'after step 5 of 10');
    assert.equal(half.ddpm.label, 'DDPM: x_t after step 10 of 20');
    await page.$eval('#tr', (e) => e.setAttribute('position', '0.75'));
    const pinned = await page.$eval('#tr', shown);
    assert.equal(pinned.ddpm.at, 'after step 15 of 20');
    assert.ok(pinned.ddim.at === 'after step 8 of 10' && pinned.ddim.matches);
    await page.locator('#tr').screenshot({ path: path.join(ARTIFACTS, 'trajectory.png') });
    // Play runs the scrubber on to the samples.
    await page.locator('#tr .play').click();
    assert.equal(await page.$eval('#tr', (e) => e.shadowRoot.querySelector('.play').getAttribute('aria-pressed')), 'true');
    await page.waitForFunction(() => {
      const root = document.getElementById('tr').shadowRoot;
      return root.querySelector('#pos').value === '20' && root.querySelector('.play').getAttribute('aria-pressed') === 'false';
    }, null, { timeout: MINUTE });
    assert.equal((await page.$eval('#tr', shown)).ddim.at, 'after step 10 of 10');

    // The seed pins the frames: another seed, other frames; the first seed again, the same ones.
    await page.$eval('#tr', (e) => e.setAttribute('seed', '6'));
    await settled(page);
    const other = await page.$eval('#tr', kept);
    assert.ok(other.ddpm.xt !== first.ddpm.xt && other.ddim.xt !== first.ddim.xt && other.ddim.x0 !== first.ddim.x0, 'seed 6 gives other frames');
    await page.$eval('#tr', (e) => e.setAttribute('seed', '5'));
    await settled(page);
    const again = await page.$eval('#tr', kept);
    assert.deepEqual([again.ddpm.xt, again.ddpm.x0, again.ddim.xt, again.ddim.x0],
      [first.ddpm.xt, first.ddpm.x0, first.ddim.xt, first.ddim.x0], 'seed 5 again: the same frames');

    // The eta slider, by keyboard: once it settles, DDIM runs again (and only DDIM).
    const before = (await dones(page)).length;
    await page.locator('#tr #eta').focus();
    await page.keyboard.press('End');
    await page.waitForFunction(() => document.getElementById('tr').getAttribute('eta') === '1', null, { timeout: MINUTE });
    await settled(page);
    const noisy = await page.$eval('#tr', kept);
    assert.deepEqual((await dones(page)).slice(before), [{ sampler: 'ddim', seed: 5, steps: 10, eta: 1, frames: 10 }]);
    assert.notEqual(noisy.ddim.xt, first.ddim.xt, 'eta 1 gives DDIM other frames');
    assert.equal(noisy.ddpm.xt, first.ddpm.xt, 'DDPM is left as it was');
    assert.equal((await page.$eval('#tr', shown)).ddim.head, 'DDIM · 10 steps · η = 1');

    // The PNG strip: a row of x_t per sampler, 10 frames from the first step to the sample.
    const [png] = await Promise.all([page.waitForEvent('download'), page.locator('#tr .png').click()]);
    assert.equal(png.suggestedFilename(), 'ddpm-trajectory-seed5-ddpm20-ddim10-eta1.png');
    const pngBytes = await readFile(await png.path());
    assert.equal(pngBytes.subarray(0, 8).toString('hex'), '89504e470d0a1a0a', 'a PNG');
    assert.deepEqual([pngBytes.readUInt32BE(16), pngBytes.readUInt32BE(20)], [span(10), span(2)]);
    const decoded = await page.$eval('#tr', async (e, { TILE, GAP }) => {
      const bitmap = await createImageBitmap(await e.png());
      const c = new OffscreenCanvas(bitmap.width, bitmap.height);
      const ctx = c.getContext('2d');
      ctx.drawImage(bitmap, 0, 0);
      // every model pixel of the first and the last image of each row, at the middle of its 3x3 block
      const tileIs = (frame, col, row) => {
        const d = ctx.getImageData(GAP + col * (TILE + GAP), GAP + row * (TILE + GAP), TILE, TILE).data;
        const k = TILE / frame.width;
        for (let y = 0; y < frame.height; y++) {
          for (let x = 0; x < frame.width; x++) {
            const at = ((y * k + 1) * TILE + x * k + 1) * 4;
            if ([0, 1, 2].some((ch) => d[at + ch] !== frame.rgba[(y * frame.width + x) * 4 + ch])) return false;
          }
        }
        return true;
      };
      const { ddpm, ddim } = e.frames;
      return { width: bitmap.width, height: bitmap.height,
        tiles: [tileIs(ddpm[0].xt, 0, 0), tileIs(ddpm.at(-1).xt, 9, 0), tileIs(ddim[0].xt, 0, 1), tileIs(ddim.at(-1).xt, 9, 1)] };
    }, { TILE, GAP });
    assert.deepEqual(decoded, { width: span(10), height: span(2), tiles: [true, true, true, true] });

    // The GIF: x_t and the predicted x_0 of both, one frame per DDPM step (20 at most 48).
    const [gif] = await Promise.all([page.waitForEvent('download'), page.locator('#tr .gif').click()]);
    assert.equal(gif.suggestedFilename(), 'ddpm-trajectory-seed5-ddpm20-ddim10-eta1.gif');
    const gifBytes = await readFile(await gif.path());
    assert.deepEqual(gifFrames(gifBytes), { width: span(2), height: span(2), frames: 20 });
    t.diagnostic(`PNG ${pngBytes.length} bytes, GIF ${gifBytes.length} bytes`);

    // A bad attribute names itself, and the element carries on once it is right again.
    for (const [name, value, message] of [
      ['ddim-steps', 'abc', /ddim-steps of <ddpm-trajectory> must be a whole number from 1 to 1000 \(got "abc"\)/],
      ['seed', '-1', /seed of <ddpm-trajectory> must be a whole number from 0 to 4294967295 \(got "-1"\)/],
      ['eta', '2', /eta of <ddpm-trajectory> must be a number from 0 to 1 \(got "2"\)/],
    ]) {
      const good = await page.$eval('#tr', (e, n) => e.getAttribute(n), name);
      await page.$eval('#tr', (e, [n, v]) => e.setAttribute(n, v), [name, value]);
      assert.equal(await page.$eval('#tr', (e) => e.dataset.state), 'error');
      assert.match(await page.$eval('#tr', (e) => e.shadowRoot.querySelector('.error').textContent), message);
      await page.$eval('#tr', (e, [n, v]) => e.setAttribute(n, v), [name, good]);
      await settled(page);
    }
    const last = await page.$eval('#tr', kept);
    assert.equal(last.ddim.xt, noisy.ddim.xt, 'the frames kept through the bad attributes');

    // A new eta while DDPM runs: DDPM stops, DDIM runs, then DDPM again, to the end.
    const mark = (await dones(page)).length;
    await page.$eval('#tr', (e) => e.setAttribute('ddpm-steps', '60'));
    await page.waitForFunction(() => window.seen.some((s) => s.type === 'progress' && s.detail.sampler === 'ddpm' && s.detail.total === 60 && s.detail.done >= 5),
      null, { timeout: MINUTE, polling: 50 });
    await page.$eval('#tr', (e) => e.setAttribute('eta', '0.5'));
    await settled(page);
    assert.deepEqual((await dones(page)).slice(mark), [
      { sampler: 'ddim', seed: 5, steps: 10, eta: 0.5, frames: 10 },
      { sampler: 'ddpm', seed: 5, steps: 60, eta: 0, frames: 60 },
    ]);
    const resumed = await page.$eval('#tr', kept);
    assert.deepEqual(resumed.ddpm.dones, Array.from({ length: 60 }, (_, i) => i + 1));
    assert.equal(resumed.ddpm.lastXtVsSample, 0);
    // The CSP refuses the engine's blob: worker (the element then runs it on the page), which
    // Chromium reports on the console; nothing else may be there.
    assert.deepEqual(errors.filter((e) => !/worker|blob:/i.test(e)), [], 'no console errors under the strict CSP');
  });

  test('a malformed model attribute names itself', { timeout: 2 * MINUTE }, async () => {
    const { page } = await open('bad-model.html');
    await page.waitForFunction(() => document.getElementById('tr').dataset.state === 'error', null, { timeout: MINUTE });
    const message = await page.$eval('#tr', (e) => e.shadowRoot.querySelector('.error').textContent);
    assert.match(message, /^model="hf:nope" of <ddpm-trajectory>: "hf:nope" is not a Hub model id/);
    assert.deepEqual(await page.evaluate(() => window.seen.filter((s) => s.type === 'error').length), 1);
    await page.context().close();
  });

  test('on WebGPU it keeps the frames the CPU keeps', { timeout: 6 * MINUTE }, async (t) => {
    const frames = async (name) => {
      const { page } = await open(name);
      await settled(page, 5 * MINUTE);
      const out = await page.$eval('#tr', (e) => ({
        where: e.shadowRoot.querySelector('.where').textContent,
        frames: Object.fromEntries(Object.entries(e.frames).map(([k, fs]) => [k, fs.map((f) => [...f.xt.rgba, ...f.x0.rgba])])),
      }));
      await page.context().close();
      return out;
    };
    const [gpu, cpu] = [await frames('gpu.html'), await frames('cpu3.html')];
    t.diagnostic(`${gpu.where} | ${cpu.where}`);
    assert.match(gpu.where, /WebGPU/, 'the element runs on WebGPU where the browser has it');
    assert.match(cpu.where, /CPU/);
    for (const sampler of ['ddpm', 'ddim']) {
      assert.equal(gpu.frames[sampler].length, 3);
      const diff = Math.max(...gpu.frames[sampler].flatMap((f, i) => f.map((b, j) => Math.abs(b - cpu.frames[sampler][i][j]))));
      t.diagnostic(`${sampler}: WebGPU against the CPU, max diff ${diff} of 255`);
      assert.ok(diff <= 2, `${sampler}: WebGPU's frames are the CPU's within 2 of 255 (max diff ${diff})`);
    }
  });
});
