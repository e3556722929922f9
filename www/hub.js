// Models on the Hugging Face Hub by id: `hf:OWNER/NAME[@REVISION][/SUBFOLDER]` names the folder
// `HUB/OWNER/NAME/resolve/REVISION/SUBFOLDER/`, which the engine loads like any model URL. The
// Hub's base URL is a setting (the page's ?hub=, <ddpm-demo hub>, load()'s `hub` option), so that
// tests and mirrors can stand in for it.

import { folderUrl } from './util.js';

export const DEFAULT_HUB = 'https://huggingface.co';

/** What a visitor can pick besides the shipped model: the paper's models as diffusers keeps them,
 *  each a flat folder (config.json beside the weights, and a model_index.json); `mb`: the weights
 *  file's size; `bin`: only diffusers' older .bin, converted in the page once. */
export const HUB_MODELS = [
  { id: 'google/ddpm-cifar10-32', label: 'CIFAR-10', size: 32, mb: 143, bin: false },
  { id: 'google/ddpm-celebahq-256', label: 'CelebA-HQ faces', size: 256, mb: 455, bin: true },
  { id: 'google/ddpm-church-256', label: 'LSUN churches', size: 256, mb: 455, bin: true },
  { id: 'google/ddpm-bedroom-256', label: 'LSUN bedrooms', size: 256, mb: 455, bin: true },
  { id: 'google/ddpm-cat-256', label: 'LSUN cats', size: 256, mb: 455, bin: false },
  { id: 'google/ddpm-ema-celebahq-256', label: 'CelebA-HQ faces (EMA)', size: 256, mb: 455, bin: true },
  { id: 'google/ddpm-ema-church-256', label: 'LSUN churches (EMA)', size: 256, mb: 455, bin: true },
  { id: 'google/ddpm-ema-bedroom-256', label: 'LSUN bedrooms (EMA)', size: 256, mb: 455, bin: true },
  { id: 'google/ddpm-ema-cat-256', label: 'LSUN cats (EMA)', size: 256, mb: 455, bin: true },
];

const PART = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * `hf:OWNER/NAME[@REVISION][/SUBFOLDER]` as {owner, name, revision, subfolder}; null for anything
 * that does not start with `hf:`; throws naming what is wrong with an `hf:` id that is malformed.
 */
export function parseHubId(raw) {
  const text = String(raw).trim();
  if (!text.startsWith('hf:')) return null;
  const m = /^hf:([^/@]+)\/([^/@]+)(?:@([^/]+))?(?:\/(.*))?$/.exec(text);
  const bad = (why) => new Error(`"${text}" is not a Hub model id (${why}): write hf:OWNER/NAME, ` +
    'optionally @REVISION and /SUBFOLDER, e.g. hf:google/ddpm-cifar10-32');
  if (!m) throw bad('no OWNER/NAME');
  const [, owner, name, revision = 'main', sub = ''] = m;
  if (!PART.test(owner) || !PART.test(name)) throw bad('OWNER and NAME take letters, digits, ".", "_" and "-"');
  const subfolder = sub.replace(/\/+$/, '');
  if (subfolder.split('/').some((p) => p === '..' || p === '.' || (subfolder && !p))) throw bad(`subfolder "${sub}"`);
  return { owner, name, revision, subfolder };
}

/** The folder URL of a parsed Hub id under `hub` (default: the Hub itself), ending in '/'. */
export function hubFolderUrl({ owner, name, revision, subfolder }, hub = DEFAULT_HUB) {
  let base;
  try {
    base = new URL(String(hub || DEFAULT_HUB));
  } catch {
    throw new Error(`hub "${hub}" is not a URL (e.g. ${DEFAULT_HUB})`);
  }
  if (!/^https?:$/.test(base.protocol)) throw new Error(`hub "${hub}" is not an http(s) URL`);
  const path = [owner, name, 'resolve', encodeURIComponent(revision), ...(subfolder ? subfolder.split('/') : [])];
  return new URL(`${base.pathname.replace(/\/*$/, '/')}${path.join('/')}/`, base).href;
}

/** A model's key, the absolute URL of its folder: an `hf:` id's folder under `hub`, or `raw` as
 *  a URL relative to `base`. */
export function modelUrl(raw, base, hub) {
  const id = parseHubId(raw);
  return id ? hubFolderUrl(id, hub) : folderUrl(raw, base);
}
