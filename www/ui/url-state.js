// The sampler settings in the page's address (?sampler=ddim&steps=50&n=4&eta=0&seed=7, beside
// ?model=), so that a link reproduces a run: read once at start, written back as they change.

const KEYS = ['sampler', 'steps', 'n', 'eta', 'seed'];

/** Fills `fields` ({sampler, steps, n, eta, seed}: form controls) from `params`; returns the
 *  names the address gave. A sampler the list lacks is left out (Generate keeps the default). */
export function readSettings(params, fields) {
  const given = new Set();
  for (const key of KEYS) {
    const value = params.get(key);
    if (value === null) continue;
    const field = fields[key];
    if (field.tagName === 'SELECT' && ![...field.options].some((o) => o.value === value)) continue;
    field.value = value;
    given.add(key);
  }
  return given;
}

/** Puts the values of `fields` in the address, without a new history entry. */
export function writeSettings(fields) {
  const url = new URL(location.href);
  for (const key of KEYS) {
    const value = fields[key].value.trim();
    if (value === '' || fields[key].disabled) url.searchParams.delete(key);
    else url.searchParams.set(key, value);
  }
  if (url.href !== location.href) history.replaceState(history.state, '', url.href);
}
