// What the engine host's modules share: the wasm Engine in use, its epoch (bumped when a lost
// WebGPU device made host.js replace the engine: jobs of an older epoch then stay silent), and
// the way messages go out.

export const host = {
  engine: null,
  epoch: 0,
  current: null,           // the job running now
  softwareAdapter: false,  // WebGPU on a fallback adapter (SwiftShader): the CPU emulating a GPU
  glue: null,              // the wasm-bindgen module's exports
  memory: null,            // the wasm instance's memory
  warmed: 0,               // models whose GPU kernels were compiled while their weights downloaded
  warmOnSoftware: false,   // a test hook: that warm-up on a software adapter too
  post: () => {},
};

/** The engine of the jobs of `mine` (throws when it did not start). */
export function engineOf(mine) {
  if (!host.engine || mine !== host.epoch) throw new Error('the engine did not start');
  return host.engine;
}

/** The error's text for a message; a trap of the wasm instance says to reload. */
export function describeError(err) {
  if (err === undefined || err === null) return 'unknown error';
  if (typeof err === 'string') return err;
  let text = err.message ? String(err.message) : String(err);
  if (typeof WebAssembly !== 'undefined' && err instanceof WebAssembly.RuntimeError) {
    text = `the engine crashed (${text}); reload the page`;
  }
  return text;
}
