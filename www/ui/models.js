// The Settings' model picker: the shipped MNIST model and the paper's models on the Hub (name,
// resolution, size, cached or not, file format), the last one picked remembered across visits,
// and each kept model's cached weights with their size and a button that drops them.

import { HUB_MODELS } from '../hub.js';
import { megabytes } from '../util.js';
import { cachedModels, forgetCachedModel } from '../engine/model-files.js';

const REMEMBER = 'ddpm-web-model';
const $ = (id) => document.getElementById(id);

/** The model a visit without ?model= loads: the one picked last, else `fallback`. */
export function rememberedModel(fallback) {
  try {
    return localStorage.getItem(REMEMBER) || fallback;
  } catch {
    return fallback;  // storage blocked: the shipped model
  }
}

/**
 * Fills the picker; picking a model remembers it and loads it (a new address, as the Load button
 * does). `keyOf(id)`: a model's key (its folder URL) under the page's Hub setting; `current`:
 * what is loaded now, as written in the address.
 */
export async function initModelPicker({ shipped, current, keyOf, load, onCleared }) {
  const pick = $('model-pick');
  const list = $('cached-models');
  const cached = await cachedModels().catch(() => new Map());
  const options = [
    { value: shipped, text: 'MNIST digits (shipped with the page): 32×32, 7.4 MB, flat folder' },
    ...HUB_MODELS.map((m) => ({
      value: `hf:${m.id}`,
      text: `${m.label} (${m.id}): ${m.size}×${m.size}, ${m.mb} MB, flat folder${m.bin ? ', .bin converted once' : ''}` +
        `${cached.has(safeKey(keyOf, `hf:${m.id}`)) ? ', cached' : ''}`,
    })),
  ];
  const isListed = options.some((o) => o.value === current);
  pick.replaceChildren(...options.map((o) => new Option(o.text, o.value, false, o.value === current)),
    ...(isListed ? [] : [new Option(`Other: ${current}`, current, false, true)]));
  pick.addEventListener('change', () => {
    try {
      localStorage.setItem(REMEMBER, pick.value);
    } catch { /* not remembered: storage blocked */ }
    load(pick.value);
  });

  const showCached = async () => {
    const now = await cachedModels().catch(() => new Map());
    list.replaceChildren(...[...now].map(([prefix, bytes]) => {
      const li = document.createElement('li');
      const clear = Object.assign(document.createElement('button'), { type: 'button', textContent: 'Clear' });
      clear.setAttribute('aria-label', `Clear the cached weights of ${prefix} (${megabytes(bytes)})`);
      clear.addEventListener('click', async () => {
        await forgetCachedModel(prefix);
        onCleared(prefix, bytes);
        showCached();
      });
      li.append(`${prefix} — ${megabytes(bytes)} `, clear);
      return li;
    }));
    list.hidden = now.size === 0;
  };
  await showCached();
  return { refresh: showCached };
}

function safeKey(keyOf, id) {
  try {
    return keyOf(id);
  } catch {
    return null;
  }
}

