// The local server (`make demo`, www/serve.mjs) hands out only what the page and an embed need:
// the rest of the folder, dotfiles, symlinks that lead out, traversal and foreign Host headers are
// refused; a page on another origin reads embed.js, pkg/ and the models and nothing else; the
// embed with its `integrity` attribute loads, and with a wrong one the browser refuses it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startServer } from '../../www/serve.mjs';
import { integrity } from '../../scripts/sri.mjs';
import { CHROMIUM, CHROMIUM_ARGS, MINUTE, REPO_ROOT } from './helpers.mjs';

// What the test puts into the folder, removed again after (and before, after a crash).
const ENV_FILE = path.join(REPO_ROOT, '.env');
const LINK_FILE = path.join(REPO_ROOT, 'www/models/e2e-outside.json');
const LINK_DIR = path.join(REPO_ROOT, 'www/models/e2e-outside');
const LINK_INSIDE = path.join(REPO_ROOT, 'www/models/e2e-inside.js');

/** `node www/serve.mjs --port 0` as `make demo` runs it; resolves to its URL and process. */
function startCli(args = []) {
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'www/serve.mjs'), '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`serve.mjs exited with ${code}`)));
    child.stdout.once('data', (d) => resolve({ child, url: String(d).trim().replace(/\/$/, '') }));
  });
}

/** GET (or `method`) of a raw path, sent as written (no normalisation), with `headers`. */
function get(base, rawPath, headers = {}, method = 'GET') {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ hostname, port, path: rawPath, method, headers }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The server's whole answer to `request`, written to the socket as is. */
function rawRequest(base, request) {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    let answer = '';
    const socket = net.connect(Number(port), hostname, () => socket.end(request));
    socket.on('data', (d) => { answer += d; });
    socket.on('end', () => resolve(answer));
    socket.on('error', reject);
  });
}

function cleanUp() {
  for (const p of [LINK_FILE, LINK_DIR, LINK_INSIDE]) rmSync(p, { force: true });
}

describe('the local server', { timeout: 10 * MINUTE }, () => {
  let demo;
  let outside;
  let madeEnv = false;
  before(async () => {
    cleanUp();
    outside = mkdtempSync(path.join(os.tmpdir(), 'ddpm-serve-'));
    writeFileSync(path.join(outside, 'secret.json'), '{"secret": true}');
    writeFileSync(path.join(outside, 'config.json'), '{"secret": true}');
    symlinkSync(path.join(outside, 'secret.json'), LINK_FILE);
    symlinkSync(outside, LINK_DIR);
    symlinkSync(path.join(REPO_ROOT, 'www/embed.js'), LINK_INSIDE);
    if (!existsSync(ENV_FILE)) {
      writeFileSync(ENV_FILE, 'SECRET=e2e\n');
      madeEnv = true;
    }
    demo = await startCli();
  });
  after(() => {
    demo?.child.kill();
    cleanUp();
    if (madeEnv) rmSync(ENV_FILE, { force: true });
    if (outside) rmSync(outside, { recursive: true, force: true });
  });

  test('serves the page and what an embed loads', async () => {
    for (const p of ['/', '/?model=x', '/index.html', '/www/ui/app.js', '/www/embed.js', '/www/ui/style.css',
      '/pkg/ddpm_web.js', '/pkg/ddpm_web_bg.wasm', '/www/models/mnist/config.json', '/www/models/e2e-inside.js']) {
      const r = await get(demo.url, p);
      assert.equal(r.status, 200, `${p}: ${r.body.slice(0, 200)}`);
    }
    assert.equal((await get(demo.url, '/pkg/ddpm_web_bg.wasm')).headers['content-type'], 'application/wasm');
  });

  test('refuses the rest of the folder, dotfiles and symlinks that lead out', async () => {
    for (const file of ['Cargo.toml', 'src/lib.rs', 'Makefile', 'www/serve.mjs', '.git/config', '.env']) {
      assert.ok(existsSync(path.join(REPO_ROOT, file)), `${file} exists, so its refusal means something`);
    }
    const outsideServed = ['/Cargo.toml', '/src/lib.rs', '/Makefile', '/www/serve.mjs', '/package.json', '/checkpoints/mnist/config.json',
      '/.git/config', '/.env', '/www/.env', '/tests/data/tiny/config.json', '/node_modules/serve-handler/package.json', '/pkg/package.json'];
    // Under www/models/ an embed may read the 404 itself (a missing model file is its error to show).
    const leadingOut = ['/www/models/e2e-outside.json', '/www/models/e2e-outside/config.json', '/www/models/mnist/', '/www/models/.env'];
    for (const p of [...outsideServed, ...leadingOut]) {
      const r = await get(demo.url, p);
      assert.equal(r.status, 404, `${p} is refused (got ${r.status})`);
      assert.doesNotMatch(r.body, /secret|\[core\]|\[package\]/i, `${p}: nothing of the file in the answer`);
      if (outsideServed.includes(p)) assert.equal(r.headers['access-control-allow-origin'], undefined, `${p}: no CORS header`);
    }
    for (const p of ['/..%2f', '/..%2fCargo.toml', '/%2e%2e/Cargo.toml', '/www/../Cargo.toml', '/www/%2e%2e/Cargo.toml',
      '/www/models/..%5c..%5cCargo.toml', '/www/%00.js', '/%E0%A4%A']) {
      const r = await get(demo.url, p);
      assert.equal(r.status, 400, `${p} is refused as a bad path (got ${r.status})`);
    }
    const post = await get(demo.url, '/www/embed.js', {}, 'POST');
    assert.equal(post.status, 405);
  });

  test('answers only loopback host names, and those given by --allow-host', async () => {
    const port = new URL(demo.url).port;
    for (const host of ['evil.example', `evil.example:${port}`, `127.0.0.1.evil.example:${port}`, 'localhost.evil.example', '[::1].evil.example']) {
      for (const p of ['/', '/.git/config', '/www/embed.js']) {
        const r = await get(demo.url, p, { Host: host });
        assert.equal(r.status, 403, `Host ${JSON.stringify(host)} ${p} is refused (got ${r.status})`);
        assert.match(r.body, /Host header/);
      }
    }
    const noHost = await rawRequest(demo.url, 'GET /www/embed.js HTTP/1.0\r\n\r\n');
    assert.match(noHost, /^HTTP\/1\.[01] 403/, 'a request without a Host header is refused');
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, 'LOCALHOST', 'localhost.']) {
      assert.equal((await get(demo.url, '/', { Host: host })).status, 200, `Host ${host} is served`);
    }
    const lan = await startCli(['--allow-host', 'my-laptop.local']);
    try {
      assert.equal((await get(lan.url, '/', { Host: `my-laptop.local:${new URL(lan.url).port}` })).status, 200);
      assert.equal((await get(lan.url, '/.git/config', { Host: 'my-laptop.local' })).status, 404);
      assert.equal((await get(lan.url, '/', { Host: 'other.local' })).status, 403);
    } finally {
      lan.child.kill();
    }
  });

  test('sends CORS headers only on what an embed fetches', async () => {
    for (const p of ['/www/embed.js', '/www/engine/host.js', '/www/engine/worker.js', '/pkg/ddpm_web.js', '/pkg/ddpm_web_bg.wasm',
      '/www/models/mnist/config.json', '/www/models/mnist/diffusion_pytorch_model.safetensors']) {
      const r = await get(demo.url, p, { Origin: 'https://evil.example' }, 'HEAD');
      assert.equal(r.headers['access-control-allow-origin'], '*', `${p} is readable by embeds`);
    }
    for (const p of ['/', '/index.html', '/www/ui/style.css', '/www/embed-example.html']) {
      const r = await get(demo.url, p, { Origin: 'https://evil.example' });
      assert.equal(r.status, 200, p);
      assert.equal(r.headers['access-control-allow-origin'], undefined, `${p}: no CORS header`);
      assert.equal(r.headers['cross-origin-resource-policy'], 'same-origin', `${p}: no cross-origin embedding either`);
    }
  });

  describe('in Chromium, from a page on another origin', () => {
    let blog;
    let browser;
    const pages = {};
    before(async () => {
      const hash = integrity(path.join(REPO_ROOT, 'www/embed.js'));
      const wrong = `sha384-${Buffer.alloc(48, 7).toString('base64')}`;
      const embed = (sri) => `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>post</title>
<script type="module" src="${demo.url}/www/embed.js" integrity="${sri}" crossorigin="anonymous"></script></head>
<body><ddpm-demo backend="cpu"></ddpm-demo></body></html>`;
      pages['/reader.html'] = '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>reader</title></head><body></body></html>';
      pages['/sri.html'] = embed(hash);
      pages['/sri-wrong.html'] = embed(wrong);
      blog = await new Promise((resolve) => {
        const server = http.createServer((req, res) => {
          const page = pages[new URL(req.url, 'http://x').pathname];
          res.writeHead(page ? 200 : 404, { 'Content-Type': 'text/html; charset=utf-8' }).end(page ?? 'not found');
        });
        server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${server.address().port}` }));
      });
      browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    });
    after(async () => {
      await browser?.close().catch(() => {});
      blog?.server.closeAllConnections?.();
      await new Promise((resolve) => (blog ? blog.server.close(resolve) : resolve()));
    });

    test('fetch() reads embed.js, pkg/ and a model file, and nothing else', async () => {
      const context = await browser.newContext();
      try {
        const page = await context.newPage();
        await page.goto(`${blog.url}/reader.html`);
        const read = (p) => page.evaluate(async (u) => {
          try {
            const r = await fetch(u);
            return `${r.status} ${(await r.text()).length}`;
          } catch (err) {
            return `refused: ${err.message}`;
          }
        }, `${demo.url}${p}`);
        for (const p of ['/www/embed.js', '/pkg/ddpm_web.js', '/pkg/ddpm_web_bg.wasm', '/www/models/mnist/config.json']) {
          assert.match(await read(p), /^200 [1-9]/, `${p} is readable from another origin`);
        }
        for (const p of ['/', '/index.html', '/www/ui/style.css', '/Cargo.toml', '/src/lib.rs', '/.git/config', '/.env']) {
          assert.match(await read(p), /^refused/, `${p} is not readable from another origin`);
        }
      } finally {
        await context.close();
      }
    });

    test('the embed loads with its integrity hash and is refused with a wrong one', async () => {
      const context = await browser.newContext();
      try {
        const page = await context.newPage();
        await page.goto(`${blog.url}/sri.html`);
        await page.waitForFunction(() => customElements.get('ddpm-demo') !== undefined, null, { timeout: MINUTE });
        const errors = [];
        page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
        await page.goto(`${blog.url}/sri-wrong.html`);
        await page.waitForFunction(() => document.readyState === 'complete', null, { timeout: MINUTE });
        await page.waitForTimeout(1000);
        assert.equal(await page.evaluate(() => customElements.get('ddpm-demo') === undefined), true, 'the element is not defined');
        assert.ok(errors.some((e) => /integrity/i.test(e)), `the browser says why: ${errors.join(' | ')}`);
      } finally {
        await context.close();
      }
    });
  });
});
