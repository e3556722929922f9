// Static file server for the ddpm-web page: node:http + serve-handler, on 127.0.0.1 by default.
//   node www/serve.mjs [--port 8080] [--root DIR] [--bind ADDR] [--allow-host NAME]...
//   import { startServer } from './www/serve.mjs'; const { server, url } = await startServer({ port: 0 });
//
// It hands out only what the page and an embed need, because any website open in the same
// browser can send requests to it (and, through DNS rebinding, under a host name of its own):
// - of the repository, only the files PAGE lists (the page, its modules, pkg/, the models);
//   with --root DIR, all of DIR (a folder built to be published, such as dist/); everything
//   else is 404, and so is any path with a dotfile or dot-folder in it, and any symlink that
//   leads out of what is served;
// - only requests whose Host is 127.0.0.1, localhost, [::1] or an --allow-host name (403);
// - cross-origin reads (CORS) only for what an embed fetches: modules, the wasm, the models.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import handler from 'serve-handler';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const LOOPBACK = '127.0.0.1';
const LOCAL_HOSTS = ['127.0.0.1', 'localhost', '[::1]'];
const USAGE = 'usage: node www/serve.mjs [--port 8080] [--root DIR] [--bind ADDR] [--allow-host NAME]...';

/**
 * A served part of the tree: `file` (one path) or `dir` (a folder prefix, ending in '/', '' for
 * all), optionally only names ending in one of `ext`. `cors`: other origins may read it (an embed
 * fetches it); `isolate`: sent with COOP/COEP (pages that need cross-origin isolation).
 * @typedef {{ file?: string, dir?: string, ext?: string[], cors?: boolean, isolate?: boolean }} Rule
 */

/** What `make demo` serves of the repository: the page and everything `<ddpm-demo>` and the
 *  explorable elements load (`www/explore/`: the real digits `<ddpm-forward>` starts from;
 *  `www/vendor/`: KaTeX and gifenc, copied from node_modules by `make vendor`). */
export const PAGE = [
  { file: 'index.html' },
  { dir: 'www/models/', cors: true },
  { dir: 'www/explore/', ext: ['.json'], cors: true },
  { dir: 'www/vendor/', ext: ['.mjs', '.woff2'], cors: true },
  { dir: 'www/', ext: ['.js', '.d.ts'], cors: true },
  { dir: 'www/', ext: ['.css', '.html'] },
  { dir: 'pkg/', ext: ['.js', '.wasm', '.d.ts'], cors: true },
];

/** A folder made to be published (`--root dist`): all of it, readable from any origin. */
export const ALL = [{ dir: '', cors: true }];

/** The rule that serves `rel` (a checked, '/'-separated path below the root), or undefined. */
export function ruleFor(rules, rel) {
  return rules.find((r) => (r.file !== undefined
    ? rel === r.file
    : rel.startsWith(r.dir) && (!r.ext || r.ext.some((e) => rel.endsWith(e)))));
}

/**
 * The request path as segments below the root, or an error status: 400 for what is not a plain
 * path (bad escapes, `.`/`..`, backslashes, NUL), 404 for dotfiles and dot-folders.
 */
export function checkPath(rawUrl) {
  const decode = (text) => {
    try {
      return decodeURIComponent(text);
    } catch {
      return null;
    }
  };
  const pathname = decode(new URL(rawUrl, 'http://x').pathname);
  // The raw URL too: `new URL` resolves `/a/../b` before we could see it.
  const rawDecoded = decode(rawUrl.split('?')[0]);
  if (pathname === null || rawDecoded === null) return { status: 400, why: 'the path is not valid percent-encoding' };
  const segments = pathname.split('/').slice(1);
  for (const s of [...segments, ...rawDecoded.split('/')]) {
    if (s === '..' || s === '.' || s.includes('\\') || s.includes('\0')) return { status: 400, why: 'the path leaves the served folder' };
  }
  if (segments.some((s) => s.startsWith('.'))) return { status: 404 };
  return { rel: segments.join('/') };
}

/** The host name of a Host header, lower-cased, without port or trailing dot; null when malformed. */
export function hostName(header) {
  const m = /^(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(:\d{1,5})?$/.exec((header ?? '').trim().toLowerCase());
  return m ? m[1].replace(/\.$/, '') : null;
}

function reply(res, status, text, headers = {}) {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store', ...headers });
  res.end(`${status} ${http.STATUS_CODES[status]}${text ? `: ${text}` : ''}\n`);
}

/** Where the file `rel` really is (symlinks resolved), below `realRoot`; null when missing, not a file, or outside. */
async function realRel(realRoot, rel) {
  let real;
  try {
    real = await fs.promises.realpath(path.join(realRoot, ...rel.split('/')));
    if (!(await fs.promises.stat(real)).isFile()) return null;
  } catch {
    return null;
  }
  const out = path.relative(realRoot, real);
  if (out.startsWith('..') || path.isAbsolute(out)) return null;
  return out.split(path.sep).join('/');
}

/**
 * Serves `root` on `bind`:`port` (0 = any free port). `rules`: what is served (PAGE for the
 * repository, ALL for any other root unless given). `allowHosts`: host names besides the
 * loopback ones. `onRequest(req)`, if given, sees every request (tests count them).
 */
export async function startServer({ port = 0, root = REPO_ROOT, rules, allowHosts = [], bind = LOOPBACK, onRequest } = {}) {
  const publicDir = path.resolve(root);
  if (!fs.statSync(publicDir, { throwIfNoEntry: false })?.isDirectory()) {
    throw new Error(`root is not a directory: ${publicDir}`);
  }
  const realRoot = fs.realpathSync(publicDir);
  const served = rules ?? (realRoot === fs.realpathSync(REPO_ROOT) ? PAGE : ALL);
  const hosts = new Set([...LOCAL_HOSTS, ...allowHosts.map((h) => hostName(h))]);

  async function serve(req, res) {
    const host = hostName(req.headers.host);
    if (!hosts.has(host)) {
      const hint = host ? ` (to serve it under that name, start the server with --allow-host ${host})` : '';
      return reply(res, 403, `the Host header ${JSON.stringify(req.headers.host ?? '')} is not one this server answers${hint}`);
    }
    if (!['GET', 'HEAD', 'OPTIONS'].includes(req.method)) return reply(res, 405, req.method, { Allow: 'GET, HEAD, OPTIONS' });
    const checked = checkPath(req.url);
    if (checked.status) return reply(res, checked.status, checked.why);
    if (checked.rel === '') {
      checked.rel = 'index.html';
      req.url = `/index.html${new URL(req.url, 'http://x').search}`;
    }
    const rule = ruleFor(served, checked.rel);
    if (!rule) return reply(res, 404);
    res.setHeader('Cache-Control', 'no-cache');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    if (rule.cors) {
      // Also on a 404 here, so that an embed can tell a missing model file from a refused one.
      res.setHeader('Access-Control-Allow-Origin', '*');
      res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin');
    } else {
      res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
    }
    const real = await realRel(realRoot, checked.rel);
    // A symlink must land on something served too.
    if (real === null || ruleFor(served, real) === undefined || real.split('/').some((s) => s.startsWith('.'))) {
      return reply(res, 404);
    }
    if (rule.isolate) {
      res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
      res.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
    }
    if (req.method === 'OPTIONS') {
      if (!rule.cors) return reply(res, 405, 'OPTIONS', { Allow: 'GET, HEAD' });
      res.writeHead(204, { 'Access-Control-Allow-Methods': 'GET, HEAD', 'Access-Control-Max-Age': '600' });
      return res.end();
    }
    if (checked.rel.endsWith('.safetensors')) res.setHeader('Content-Type', 'application/octet-stream');
    return handler(req, res, { public: realRoot, cleanUrls: false, directoryListing: false, symlinks: true, etag: true });
  }

  const server = http.createServer((req, res) => {
    onRequest?.(req);
    serve(req, res).catch((err) => {
      if (!res.headersSent) reply(res, 500, err.message);
      else res.end();
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, bind, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const shown = bind === '0.0.0.0' || bind === '::' ? LOOPBACK : bind;
  return { server, url: `http://${shown.includes(':') ? `[${shown}]` : shown}:${server.address().port}/` };
}

function parseArgs(argv) {
  const args = { port: 8080, root: REPO_ROOT, bind: LOOPBACK, allowHosts: [] };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].startsWith('--') && argv[i].includes('=') ? argv[i].split(/=(.*)/s) : [argv[i], undefined];
    const value = () => {
      if (inline !== undefined) return inline;
      if (i + 1 >= argv.length) throw new Error(`${flag} needs a value`);
      return argv[++i];
    };
    if (flag === '--port' || flag === '-p') args.port = Number(value());
    else if (flag === '--root') args.root = value();
    else if (flag === '--bind') args.bind = value();
    else if (flag === '--allow-host') args.allowHosts.push(value());
    else if (flag === '--help' || flag === '-h') args.help = true;
    else throw new Error(`unknown argument: ${argv[i]}`);
  }
  if (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535) {
    throw new Error('--port must be an integer in 0..65535');
  }
  for (const h of args.allowHosts) {
    if (!hostName(h) || /[/\s]/.test(h)) throw new Error(`--allow-host takes a host name such as my-laptop.local, not ${JSON.stringify(h)}`);
  }
  return args;
}

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    console.error(`serve: ${err.message}\n${USAGE}`);
    process.exit(2);
  }
  if (args.help) {
    console.log(`${USAGE}\n\nServes the page, its modules, pkg/ and www/models/ of the repository (or all of --root DIR)\n` +
      'to requests whose Host is 127.0.0.1, localhost or [::1]; --bind 0.0.0.0 --allow-host NAME serves it on a LAN.');
    return;
  }
  try {
    const { server, url } = await startServer(args);
    console.log(url);
    const stop = () => server.close(() => process.exit(0));
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  } catch (err) {
    const why = err.code === 'EADDRINUSE' ? `port ${args.port} is already in use (try --port 0)` : err.message;
    console.error(`serve: ${why}`);
    process.exit(1);
  }
}

function isMain() {
  try {
    return fs.realpathSync(process.argv[1]) === fs.realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) main();
