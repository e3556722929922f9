// Reading form fields: a clear message naming the field, its range and what was typed.

/** The steps a sampler runs unless told: DDPM all T, DDIM 50 (or T when smaller). */
export const defaultSteps = (sampler, T) => (sampler === 'ddpm' ? T : Math.min(50, T));

/** The whole number in `input`, from `lo` to `hi`; throws naming `what` otherwise. */
export function wholeNumber(input, lo, hi, what) {
  const v = input.value.trim();
  if (!/^\d+$/.test(v) || Number(v) < lo || Number(v) > hi) throw new Error(`${what} must be a whole number from ${lo} to ${hi} (got "${v}").`);
  return Number(v);
}
