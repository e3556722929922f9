// Small helpers shared by the page (ui/), <ddpm-demo> (embed.js), the JS API (ddpm.js) and the
// engine host (engine/). Nothing here touches the DOM until called, so the engine's worker can
// import it too.

/** The absolute URL of the folder `raw` (relative to `base`), ending in '/': a model's key. */
export function folderUrl(raw, base) {
  const url = new URL(raw, base);
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url.href;
}

/**
 * The engine's samplers (src/sampler/): the name it takes, a label, the steps a run takes unless
 * told (at most T; DDPM walks all T), and a line for the page's hint.
 */
export const SAMPLERS = [
  { name: 'dpm++', label: 'DPM-Solver++', steps: 20, hint: 'DPM-Solver++ (2M): deterministic, good digits in 10-20 steps.' },
  { name: 'ddim', label: 'DDIM', steps: 50, hint: 'DDIM: 20-50 steps are usually enough; eta 0 is deterministic, eta 1 adds DDPM-like noise.' },
  { name: 'dpm++-karras', label: 'DPM-Solver++ (Karras)', steps: 20, hint: 'DPM-Solver++ on Karras et al.\'s noise levels: deterministic, 10-20 steps.' },
  { name: 'ddpm', label: 'DDPM', steps: Infinity, hint: 'DDPM (ancestral, Algorithm 2): as trained, all T steps; fewer are allowed (faster, rougher).' },
];

/** What runs unless told: the sampler with the best quality per UNet call on the shipped model
 *  (BENCHMARKS.md, Samplers). */
export const DEFAULT_SAMPLER = 'dpm++';

/** The sampler named `name`; throws naming `what` and the names there are. */
export function samplerNamed(name, what = 'sampler') {
  const found = SAMPLERS.find((s) => s.name === name);
  if (!found) throw new Error(`${what} "${name}" is not a sampler: use ${SAMPLERS.map((s) => s.name).join(', ')}`);
  return found;
}

/** The steps a sampler runs unless told (DDPM all T, DDIM 50, DPM-Solver++ 20; at most T). An
 *  unknown name gets 50: the engine refuses it with the names it knows. */
export const defaultSteps = (sampler, T) => Math.min(SAMPLERS.find((s) => s.name === sampler)?.steps ?? 50, T);

/** `text` as a whole number from `lo` to `hi`; throws naming `what`, its range and what was typed. */
export function wholeNumber(text, lo, hi, what) {
  const v = String(text).trim();
  if (!/^\d+$/.test(v) || Number(v) < lo || Number(v) > hi) throw new Error(`${what} must be a whole number from ${lo} to ${hi} (got "${v}").`);
  return Number(v);
}

/** A speed as "12 steps/s" (one decimal under 10), "… steps/s" before the first one is known. */
export const stepsPerSecText = (s) => (s > 0 ? `${s.toFixed(s < 10 ? 1 : 0)} steps/s` : '… steps/s');

/** A size for people: "0.4 MB", "143 MB" (one decimal under 10 MB). */
export const megabytes = (bytes) => `${(bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0)} MB`;

/** The time left as "12s", "…" while unknown. */
export const etaText = (sec) => (sec === null || sec === undefined ? '…' : `${Math.ceil(sec)}s`);

/** Draws an RGBA frame on `canvas`, sized to it; returns the canvas. */
export function drawRgba(canvas, { width, height, rgba }) {
  if (rgba.length !== width * height * 4) {
    throw new Error(`frame of ${width}×${height} has ${rgba.length} bytes, not ${width * height * 4}`);
  }
  canvas.width = width;
  canvas.height = height;
  const pixels = new Uint8ClampedArray(rgba.buffer, rgba.byteOffset, rgba.length);
  canvas.getContext('2d').putImageData(new ImageData(pixels, width, height), 0, 0);
  return canvas;
}

/** Byte arrays one after another in one Uint8Array (a lone array is returned as it is). */
export function concatBytes(chunks) {
  if (chunks.length === 1) return chunks[0];
  const bytes = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  return bytes;
}
