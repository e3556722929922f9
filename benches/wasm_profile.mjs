// Where the browser's CPU fallback spends its time: the engine of `pkg/` (burn flex in wasm, one
// thread) run in Node's V8 for N images x S DDIM steps of a model, each step timed, with V8's
// CPU profiler on; or, with --tune S, S fine-tuning steps at --batch on that many images (the
// page's one-worker path, `tune_step`). Prints the functions with the most self time, and with
// --callers NAME, the call paths (nine frames up) of the functions whose name holds NAME. Build the wasm without
// wasm-opt so that it keeps its function names (BENCHMARKS.md, Browser):
//   wasm-pack build --target web --release --out-dir /tmp/pkg-named . --no-default-features
//   node benches/wasm_profile.mjs --pkg /tmp/pkg-named --model www/models/mnist --n 16 --steps 4
//   node benches/wasm_profile.mjs --pkg /tmp/pkg-named --model www/models/mnist --tune 4 --batch 8

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
    tune: { type: 'string', default: '0' },
    batch: { type: 'string', default: '8' },
    callers: { type: 'string' },
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
const ms = [];
const timed = async (call) => {
  const t0 = performance.now();
  const more = await call();
  ms.push(Math.round(performance.now() - t0));
  return more;
};
const tuneSteps = Number(opts.tune);
if (tuneSteps > 0) {
  // Gray squares of growing size as the images (speed does not depend on what they show).
  const batch = Number(opts.batch);
  const { sample_size: size } = JSON.parse(readFileSync(file('config.json'), 'utf8'));
  const rgba = new Uint8Array(batch * size * size * 4).map((_, i) => {
    const [img, px] = [Math.floor(i / (4 * size * size)), Math.floor(i / 4) % (size * size)];
    return (i % 4 === 3 || Math.max(Math.abs(px % size - size / 2), Math.abs(px / size - size / 2)) < 2 + img) ? 255 : 0;
  });
  engine.tune_start('m', rgba, batch, 1e-4, 0);
  for (let s = 0; s < tuneSteps; s++) await timed(() => engine.tune_step(batch, true));
} else {
  engine.start('m', Number(opts.n), 'ddim', Number(opts.steps), 0, 0, 0, 0);
  while (await timed(() => engine.step(false)));
  ms.pop();
}
const { profile } = await session.post('Profiler.stop');
console.log(JSON.stringify({ backend: engine.backend, n: Number(opts.n), tune: tuneSteps, ms_per_step: ms }));

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

// Where the functions named like --callers are called from: self time by nine callers up.
if (opts.callers) {
  const parent = new Map();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const name = (id) => byId.get(id)?.callFrame.functionName.replace(/::h[0-9a-f]{16}$/, '').replace(/^.*(fn |impl |::)(?=[^:]+$)/, '').slice(0, 60) ?? '-';
  const paths = new Map();
  profile.samples.forEach((id, i) => {
    if (!name(id).includes(opts.callers)) return;
    const up = [parent.get(id)];
    while (up.length < 9) up.push(parent.get(up.at(-1)));
    const path = up.map(name).join(' <- ');
    paths.set(path, (paths.get(path) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  console.log(`callers of ${opts.callers}:`);
  for (const [path, us] of [...paths].sort((a, b) => b[1] - a[1]).slice(0, 10)) {
    console.log(`${(us / 1000).toFixed(0).padStart(6)} ms  ${path}`);
  }
}
