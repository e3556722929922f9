// Where the browser's CPU fallback spends its time: the engine of `pkg/` (burn flex in wasm, one
// thread) run in Node's V8 for N images x S DDIM steps of a model, each step timed, with V8's
// CPU profiler on; prints the functions with the most self time. Build the wasm without
// wasm-opt so that it keeps its function names (BENCHMARKS.md, Browser):
//   wasm-pack build --target web --release --out-dir /tmp/pkg-named . --no-default-features
//   node benches/wasm_profile.mjs --pkg /tmp/pkg-named --model www/models/mnist --n 16 --steps 4

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Session } from 'node:inspector/promises';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: {
    pkg: { type: 'string', default: 'pkg' },
    model: { type: 'string', default: 'www/models/mnist' },
    n: { type: 'string', default: '16' },
    steps: { type: 'string', default: '4' },
    top: { type: 'string', default: '20' },
  },
});
const pkg = resolve(opts.pkg);
const model = resolve(opts.model);
const engineJs = await import(`${pkg}/ddpm_web.js`);
await engineJs.default({ module_or_path: readFileSync(`${pkg}/ddpm_web_bg.wasm`) });
const engine = await engineJs.Engine.create(false);
const file = (name) => `${model}/${name}`;
engine.load_model('m', file('config.json'), readFileSync(file('config.json'), 'utf8'),
  file('scheduler_config.json'), readFileSync(file('scheduler_config.json'), 'utf8'),
  file('diffusion_pytorch_model.safetensors'), readFileSync(file('diffusion_pytorch_model.safetensors')));

const session = new Session();
session.connect();
await session.post('Profiler.enable');
await session.post('Profiler.setSamplingInterval', { interval: 500 });
await session.post('Profiler.start');
engine.start('m', Number(opts.n), 'ddim', Number(opts.steps), 0, 0, 0, 0);
const ms = [];
for (;;) {
  const t0 = performance.now();
  if (!(await engine.step(false))) break;
  ms.push(Math.round(performance.now() - t0));
}
const { profile } = await session.post('Profiler.stop');
console.log(JSON.stringify({ backend: engine.backend, n: Number(opts.n), ms_per_step: ms }));

// Self time per function name, over the samples.
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const self = new Map();
let total = 0;
profile.samples.forEach((id, i) => {
  const dt = profile.timeDeltas[i] ?? 0;
  const name = byId.get(id).callFrame.functionName || '(anonymous)';
  self.set(name, (self.get(name) ?? 0) + dt);
  total += dt;
});
for (const [name, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(opts.top))) {
  console.log(`${(100 * us / total).toFixed(1).padStart(5)}% ${(us / 1000).toFixed(0).padStart(6)} ms  ${name.slice(0, 120)}`);
}
