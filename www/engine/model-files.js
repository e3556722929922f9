// A model's files: a diffusers folder (flat or pipeline layout) downloaded with progress, its
// weights checked against a SHA-256 when one is given, and kept in Cache Storage so that a second
// visit needs no network. Nothing here knows the engine: `load` takes the files.

import { concatBytes, folderUrl, megabytes } from '../util.js';
import { describeError } from './state.js';

/**
 * Fetches the model folder `url` (from Cache Storage where kept) and hands its files to
 * `load(args)` (engine.load_model's arguments after the key); a kept file that does not load is
 * dropped and fetched afresh once. Resolves to {args, layout, cached, texts} once loaded.
 * `convertBin(url, bytes)`: diffusers' older .bin as safetensors bytes (the engine's reader).
 * `maxBytes`: a file larger than that is not downloaded (a TooLarge error says its size), so
 * the visitor can confirm it first. `onWeightsFetch(configUrl, configText)`: called as the weights
 * start to download (not when they come from Cache Storage), so the engine can get ready meanwhile.
 */
export async function loadModelFiles(url, { sha256, onProgress, load, convertBin, maxBytes = Infinity, onWeightsFetch = () => {} }) {
  const take = async (files) => {
    // A .bin kept as safetensors was checked when it was downloaded.
    if (sha256 && !(files.weights.cached && files.weights.convertedFrom)) await checkSha256(files.weights, sha256);
    delete files.weights.original;  // the .bin's bytes, not needed past the check
    const args = loadArgs(files);
    await load(args);
    return args;
  };
  const opts = { onProgress, convertBin, maxBytes, onWeightsFetch };
  let files = await fetchModelFiles(url, { ...opts, useCache: true });
  let args;
  try {
    args = await take(files);
  } catch (err) {
    if (!files.list.some((f) => f.cached)) throw err;
    // Something read from Cache Storage did not load: drop it and fetch afresh once.
    await forgetInCache(files.list);
    files = await fetchModelFiles(url, { ...opts, useCache: false });
    args = await take(files);
  }
  await commitToCache(files.list);
  const texts = { config: decode(files.config.bytes), scheduler: files.scheduler.bytes ? decode(files.scheduler.bytes) : null };
  return { args, layout: files.layout, cached: files.list.every((f) => f.cached), texts };
}

const decode = (bytes) => new TextDecoder().decode(bytes);

/** A file over the size the visitor has agreed to download: `bytes` says how big. */
export class TooLarge extends Error {
  constructor(url, file, bytes, maxBytes) {
    super(`${url}: ${megabytes(bytes)} to download (over ${megabytes(maxBytes)}): confirm the download to go on`);
    Object.assign(this, { url, file, bytes });
  }
}


/** Refuses a weights file whose SHA-256 is not `expected` (64 hex digits); a converted .bin is
 *  checked as it was downloaded. */
async function checkSha256({ url, bytes, convertedFrom, original }, expected) {
  if (convertedFrom) [url, bytes] = [convertedFrom, original];
  const want = String(expected).trim().toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(want)) throw new Error(`sha256 "${expected}" is not 64 hexadecimal digits`);
  if (!globalThis.crypto?.subtle) {
    throw new Error(`${url}: the sha256 cannot be checked here (no crypto.subtle: the page is not https or localhost)`);
  }
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  const got = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
  if (got !== want) throw new Error(`${url}: sha256 mismatch: expected ${want}, the file has ${got}; the weights were refused`);
}

function loadArgs({ config, scheduler, weights }) {
  return [config.url, decode(config.bytes), scheduler.url, scheduler.bytes ? decode(scheduler.bytes) : null, weights.url, weights.bytes];
}

const CACHE_NAME = 'ddpm-web-models-v1';
/** The header of a kept safetensors that the page converted from a .bin: the .bin's URL. */
const CONVERTED_FROM = 'X-Converted-From';
const STATUS_TEXT = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 410: 'Gone',
  429: 'Too Many Requests', 500: 'Internal Server Error', 502: 'Bad Gateway',
  503: 'Service Unavailable', 504: 'Gateway Timeout',
};

/**
 * Fetches a diffusers model folder: flat (config.json, diffusion_pytorch_model.safetensors,
 * scheduler_config.json) or pipeline (model_index.json + unet/ + scheduler/). `prefix` is an
 * absolute URL. A missing scheduler config is allowed (bytes: null).
 */
async function fetchModelFiles(prefixIn, { onProgress, useCache, convertBin, maxBytes, onWeightsFetch }) {
  const prefix = folderUrl(prefixIn, import.meta.url);
  const cache = useCache ? await openCache() : null;
  const list = [];
  const get = async (name, allow404, onDownload) => {
    const file = await getFile(new URL(name, prefix).href, name, { cache, allow404, onProgress, maxBytes, onDownload });
    list.push(file);
    return file;
  };
  // A folder with only diffusers' older diffusion_pytorch_model.bin (torch.save's zip): the
  // engine's reader turns it into safetensors (it builds tensors only, no Python runs), kept
  // under the safetensors' URL so that a later visit neither downloads nor parses the .bin.
  const getWeights = async (name, config) => {
    const onDownload = () => onWeightsFetch(config.url, decode(config.bytes));
    const file = await get(name, true, onDownload);
    if (file.bytes) return file;
    const binName = name.replace(/safetensors$/, 'bin');
    const bin = await getFile(new URL(binName, prefix).href, binName, { cache: null, allow404: true, onProgress, maxBytes, onDownload });
    if (!bin.bytes) {
      throw new Error(`${file.url}: ${httpStatus(file.status)}, and there is no ${binName} beside it either ` +
        `(${httpStatus(bin.status)}): the folder has no weights`);
    }
    onProgress({ file: binName, url: bin.url, loaded: bin.bytes.length, total: bin.bytes.length, cached: false, converting: true });
    const bytes = await convertBin(bin.url, bin.bytes);
    return Object.assign(file, { bytes, cached: false, convertedFrom: bin.url, original: bin.bytes });
  };
  const flatConfig = await get('config.json', true);
  if (flatConfig.bytes) {
    const scheduler = await get('scheduler_config.json', true);
    const weights = await getWeights('diffusion_pytorch_model.safetensors', flatConfig);
    return { prefix, layout: 'flat', config: flatConfig, scheduler, weights, list };
  }
  const index = await get('model_index.json', true);
  if (!index.bytes) {
    const refused = [flatConfig, index].some((f) => f.status === 403);
    throw new Error(`${flatConfig.url}: ${httpStatus(flatConfig.status)} (and ${index.url}: ${httpStatus(index.status)}): ` +
      `there is no diffusers model at ${prefix}${refused ? ', or the server refuses access to it (a private repository?)' : ''}`);
  }
  const config = await get('unet/config.json', false);
  const scheduler = await get('scheduler/scheduler_config.json', true);
  const weights = await getWeights('unet/diffusion_pytorch_model.safetensors', config);
  return { prefix, layout: 'pipeline', config, scheduler, weights, list };
}

const httpStatus = (status) => `HTTP ${status} ${STATUS_TEXT[status] || ''}`.trimEnd();

/**
 * One file, from Cache Storage when there, else from the network: {url, name, bytes|null, cached,
 * status}. With `allow404` a missing file is bytes: null; a 403 counts as missing too (S3 and
 * other object stores answer 403 for a key that does not exist). `onDownload`: called once, as
 * the body starts to come from the network (past the size check).
 */
async function getFile(url, name, { cache, allow404, onProgress, maxBytes = Infinity, onDownload = null }) {
  const report = (loaded, total, cached, extra) => onProgress({ file: name, url, loaded, total, cached, ...extra });
  const missing = (cached, status) => {
    if (allow404) return { url, name, bytes: null, cached, status };
    throw new Error(`${url}: ${httpStatus(status)}`);
  };
  const hit = cache ? await cache.match(url).catch(() => undefined) : undefined;
  if (hit) {
    if (hit.status === 404) return missing(true, 404);
    const bytes = new Uint8Array(await hit.arrayBuffer());
    report(bytes.length, bytes.length, true);
    return { url, name, bytes, cached: true, convertedFrom: hit.headers.get(CONVERTED_FROM) || undefined };
  }
  // A download cut short starts again from the start once (the Hub's CDN does not always honour
  // a Range through its redirect), then gives up saying how far it got.
  for (let attempt = 1; ; attempt++) {
    let resp;
    try {
      // No Referer: the Hub's CDN has refused requests over it.
      resp = await fetch(url, { referrerPolicy: 'no-referrer' });
    } catch (err) {
      throw new Error(`${url}: network error (${describeError(err)}): the server cannot be reached, ` +
        'or it does not allow cross-origin requests (CORS)');
    }
    if (resp.status === 404 || (allow404 && resp.status === 403)) return missing(false, resp.status);
    if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status} ${resp.statusText || STATUS_TEXT[resp.status] || ''}`.trimEnd());
    try {
      const bytes = await readBody(url, resp, maxBytes, (loaded, total, speed) => {
        onDownload?.();
        onDownload = null;
        report(loaded, total, false, { ...speed, attempt });
      });
      return { url, name, bytes, cached: false };
    } catch (err) {
      if (!(err instanceof CutShort) || attempt >= 2) throw err;
    }
  }
}

/** A download that ended before its Content-Length. */
class CutShort extends Error {}

/**
 * Reads a response body chunk by chunk, reporting progress (bytes, bytes/s and seconds left) at
 * most every 100 ms. A body longer than `maxBytes` by its Content-Length is not read (TooLarge).
 */
async function readBody(url, resp, maxBytes, report) {
  const encoding = resp.headers.get('content-encoding');
  let total = encoding && encoding !== 'identity' ? null : Number(resp.headers.get('content-length')) || null;
  const expected = total;
  if (total !== null && total > maxBytes) {
    resp.body?.cancel().catch(() => {});
    throw new TooLarge(url, url.slice(url.lastIndexOf('/') + 1), total, maxBytes);
  }
  const started = performance.now();
  const speed = (loaded) => {
    const bytesPerSec = loaded / Math.max((performance.now() - started) / 1000, 1e-3);
    return { bytesPerSec, etaSec: total !== null && loaded > 0 ? (total - loaded) / bytesPerSec : null };
  };
  if (!resp.body) {
    const bytes = new Uint8Array(await resp.arrayBuffer());
    report(bytes.length, bytes.length);
    return bytes;
  }
  const reader = resp.body.getReader();
  const chunks = [];
  let loaded = 0;
  let last = 0;
  report(0, total, speed(0));
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (err) {
      throw new CutShort(`${url}: the download was cut after ${megabytes(loaded)}${total ? ` of ${megabytes(total)}` : ''}, ` +
        `twice (${describeError(err)}): check the connection and load the model again`);
    }
    if (chunk.done) break;
    chunks.push(chunk.value);
    loaded += chunk.value.length;
    if (total !== null && loaded > total) total = null;  // the length was not the body's
    const now = performance.now();
    if (now - last >= 100) {
      last = now;
      report(loaded, total, speed(loaded));
    }
  }
  if (expected !== null && loaded < expected) {
    throw new CutShort(`${url}: the download was cut after ${megabytes(loaded)} of ${megabytes(expected)}, twice: ` +
      'check the connection and load the model again');
  }
  report(loaded, loaded, speed(loaded));
  return concatBytes(chunks);
}

async function openCache() {
  try {
    return globalThis.caches ? await globalThis.caches.open(CACHE_NAME) : null;
  } catch {
    return null;  // no Cache Storage here (insecure context, private mode): use the network only
  }
}

/** Stores freshly downloaded files (a 404 as a 404, so a second visit needs no network at all). */
async function commitToCache(list) {
  const cache = await openCache();
  if (!cache) return;
  for (const f of list) {
    if (f.cached) continue;
    const headers = { 'Content-Type': 'application/octet-stream', ...(f.convertedFrom ? { [CONVERTED_FROM]: f.convertedFrom } : {}) };
    const resp = f.bytes
      ? new Response(f.bytes, { headers })
      : new Response(null, { status: 404, statusText: 'Not Found' });
    try {
      await cache.put(f.url, resp);
    } catch {
      // Over quota: the model still runs, it just is not kept; a half-kept model is dropped
      // so that a later visit does not mix kept and fresh files.
      await forgetInCache(list);
      return;
    }
  }
}

async function forgetInCache(list) {
  const cache = await openCache();
  if (cache) await Promise.all(list.map((f) => cache.delete(f.url).catch(() => false)));
}

/** Drops every kept model file; resolves to whether there were any. */
export async function clearModelCache() {
  try {
    return globalThis.caches ? await globalThis.caches.delete(CACHE_NAME) : false;
  } catch {
    return false;
  }
}

/** The files of a model folder, as kept under their URLs (flat and pipeline layouts). */
const MODEL_FILES = /(?:unet\/|scheduler\/)?(?:config\.json|scheduler_config\.json|model_index\.json|diffusion_pytorch_model\.safetensors)$/;

/** The kept models: Map of folder URL -> bytes kept for it. */
export async function cachedModels() {
  const cache = await openCache();
  const sizes = new Map();
  if (!cache) return sizes;
  for (const req of await cache.keys()) {
    const prefix = req.url.replace(MODEL_FILES, '');
    const resp = await cache.match(req);
    const bytes = resp?.status === 200 ? (await resp.blob()).size : 0;
    sizes.set(prefix, (sizes.get(prefix) ?? 0) + bytes);
  }
  return sizes;
}

/** Drops the kept files of the model folder `prefix` (what cachedModels names). */
export async function forgetCachedModel(prefix) {
  const cache = await openCache();
  if (!cache) return;
  for (const req of await cache.keys()) {
    if (req.url.replace(MODEL_FILES, '') === prefix) await cache.delete(req);
  }
}
