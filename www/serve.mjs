// Static file server for the ddpm-web page: node:http + serve-handler, on 127.0.0.1 only.
//   node www/serve.mjs --port 8080 [--root DIR]      prints http://127.0.0.1:PORT/
//   import { startServer } from './www/serve.mjs'; const { server, url } = await startServer({ port: 0 });
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import handler from 'serve-handler';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HOST = '127.0.0.1';

const OPTIONS = {
  cleanUrls: true,         // / serves index.html (and /x.html redirects to /x)
  directoryListing: false,
  symlinks: true,          // a model folder may be a symlink
  etag: true,
  headers: [
    // Embeds on other origins import embed.js, the engine and the model files (README "Embed in your blog").
    { source: '**', headers: [
      { key: 'Cache-Control', value: 'no-cache' },
      { key: 'Access-Control-Allow-Origin', value: '*' },
      { key: 'Cross-Origin-Resource-Policy', value: 'cross-origin' },
    ] },
    { source: '**/*.safetensors', headers: [{ key: 'Content-Type', value: 'application/octet-stream' }] },
    // The onnxruntime-web anchor may use wasm threads, which need a cross-origin isolated page
    // (and its thread workers, the same policy).
    { source: '{benches,node_modules/onnxruntime-web}/**', headers: [
      { key: 'Cross-Origin-Opener-Policy', value: 'same-origin' },
      { key: 'Cross-Origin-Embedder-Policy', value: 'require-corp' },
    ] },
  ],
};

/**
 * Serves `root` (default: the repository root) on 127.0.0.1:`port` (0 = any free port).
 * `onRequest(req)`, if given, sees every request (tests count them).
 */
export function startServer({ port = 0, root = REPO_ROOT, onRequest } = {}) {
  const publicDir = path.resolve(root);
  if (!fs.statSync(publicDir, { throwIfNoEntry: false })?.isDirectory()) {
    return Promise.reject(new Error(`root is not a directory: ${publicDir}`));
  }
  const server = http.createServer((req, res) => {
    onRequest?.(req);
    handler(req, res, { ...OPTIONS, public: publicDir }).catch((err) => {
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(`500 Internal Server Error: ${err.message}\n`);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, HOST, () => {
      server.off('error', reject);
      resolve({ server, url: `http://${HOST}:${server.address().port}/` });
    });
  });
}

function parseArgs(argv) {
  const args = { port: 8080, root: REPO_ROOT };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--port' || a === '-p') args.port = Number(value());
    else if (a.startsWith('--port=')) args.port = Number(a.slice(7));
    else if (a === '--root') args.root = value();
    else if (a.startsWith('--root=')) args.root = a.slice(7);
    else if (a === '--help' || a === '-h') args.help = true;
    else throw new Error(`unknown argument: ${a}`);
  }
  if (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535) {
    throw new Error('--port must be an integer in 0..65535');
  }
  return args;
}

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    console.error(`serve: ${err.message}\nusage: node www/serve.mjs --port 8080 [--root DIR]`);
    process.exit(2);
  }
  if (args.help) {
    console.log('usage: node www/serve.mjs --port 8080 [--root DIR]');
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
