// A 256-pixel Hub model in the page, outside `make test` (a 455 MB download and minutes of CPU):
// random weights with google/ddpm-celebahq-256's exact config, as that repository has them (only
// a .bin, old attention names), served by the stand-in Hub. Prints JSON lines: the download and
// conversion time, the wasm memory after loading (it never shrinks, so it is the peak), and the
// time of one DDIM step for one image on the CPU backend.
//
//   node benches/hub_256.mjs [--steps 1] [--backend cpu|auto]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { REPO_ROOT, startEnv } from '../tests/e2e/helpers.mjs';
import { startMockHub } from '../tests/e2e/mock-hub.mjs';
import { legacyAttentionName, readSafetensors, torchSave } from '../tests/e2e/torch-bin.mjs';

const { values: opt } = parseArgs({ options: { steps: { type: 'string', default: '1' }, backend: { type: 'string', default: 'cpu' } } });
const TARGET = process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache/ddpm-web/target');
const cfg = path.join(REPO_ROOT, 'tests/data/hub/ddpm-celebahq-256');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ddpm-256-'));
const say = (o) => console.log(JSON.stringify(o));

try {
  const init = path.join(dir, 'init');
  execFileSync(path.join(TARGET, 'debug/ddpm'), ['init', '--config', path.join(cfg, 'config.json'), '--scheduler', path.join(cfg, 'scheduler_config.json'), '--out', init]);
  const repo = path.join(dir, 'celebahq');
  fs.mkdirSync(repo);
  const tensors = readSafetensors(fs.readFileSync(path.join(init, 'diffusion_pytorch_model.safetensors')));
  fs.writeFileSync(path.join(repo, 'diffusion_pytorch_model.bin'), torchSave(tensors, legacyAttentionName));
  for (const f of ['config.json', 'scheduler_config.json', 'model_index.json']) fs.copyFileSync(path.join(cfg, f), path.join(repo, f));
  const binBytes = fs.statSync(path.join(repo, 'diffusion_pytorch_model.bin')).size;
  say({ what: 'fixture', params: tensors.reduce((s, t) => s + t.bytes.length / 4, 0), binBytes });

  const hub = await startMockHub({ repos: { 'google/ddpm-celebahq-256': repo } });
  const env = await startEnv();
  try {
    const page = await (await env.browser.newContext()).newPage();
    page.on('console', (m) => m.type() === 'error' && console.error(m.text()));
    await page.goto(`${env.url}tests/e2e/fixtures/api.html`);
    const r = await page.evaluate(async ({ hubUrl, backend, steps }) => {
      const { connect } = await import('/www/ddpm.js');
      // The engine's test hooks (its 'stats': the wasm memory's size), then the API on that engine.
      const hub = (await import('/www/engine/client.js')).connect();
      hub.post({ type: 'init', preferGpu: backend !== 'cpu', testHooks: true });
      const stats = () => new Promise((resolve) => {
        const stop = hub.listen((msg) => { if (msg.type === 'stats') { stop(); resolve(msg); } });
        hub.post({ type: 'stats' });
      });
      const ddpm = await connect({ backend });
      const t0 = performance.now();
      let converted = null;
      const model = await ddpm.load('hf:google/ddpm-celebahq-256', { hub: hubUrl, onDownload: (d) => { if (d.converting && converted === null) converted = performance.now() - t0; } });
      const loadMs = performance.now() - t0;
      const { wasmBytes } = await stats();
      const t1 = performance.now();
      const out = await ddpm.generate(model, { n: 1, sampler: 'ddim', steps, seed: 0 }).result;
      const stepMs = (performance.now() - t1) / steps;
      return { backend: ddpm.backend, loadMs, downloadMs: converted, wasmBytesAfterLoad: wasmBytes, wasmBytesAfterStep: (await stats()).wasmBytes, info: model.info, stepMs, width: out.width };
    }, { hubUrl: hub.hub, backend: opt.backend, steps: Number(opt.steps) });
    say({ what: 'page', ...r });
  } finally {
    await env.close();
    hub.close();
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
