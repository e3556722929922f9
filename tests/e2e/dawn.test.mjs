// WebGPU through Dawn (Chrome's WebGPU engine, npm `webgpu`) in Node, on SwiftShader's Vulkan driver
// from Debian's chromium: benches/dawn.mjs runs the tiny parity model in the engine of pkg/, its
// UNet matches diffusers (tests/data/tiny/expected.safetensors, `unet_out`) within 1e-4 with the
// sampling path's own kernels, the page's warm-up compiles them ahead of the load, a DDIM step is
// timed and counted, and fine-tuning runs, so that the harness behind BENCHMARKS.md's figures
// keeps working.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { swiftshaderIcd } from '../../benches/dawn.mjs';
import { MINUTE, REPO_ROOT } from './helpers.mjs';

const icd = swiftshaderIcd();

test('benches/dawn.mjs: the tiny model on Dawn + SwiftShader matches diffusers', {
  timeout: 5 * MINUTE,
  skip: icd ? false : 'no SwiftShader Vulkan ICD (vk_swiftshader_icd.json): Debian\'s chromium installs it (make setup-web)',
}, async (t) => {
  const { stdout } = await promisify(execFile)(process.execPath, [
    path.join(REPO_ROOT, 'benches/dawn.mjs'), '--model', path.join(REPO_ROOT, 'tests/data/tiny'),
    '--parity', '--batches', '1', '--steps', '1', '--by-kernel', '--tune', '3', '--tune-batch', '2', '--warm',
  ], { cwd: REPO_ROOT, timeout: 4 * MINUTE, maxBuffer: 1 << 20 });
  const lines = stdout.trim().split('\n').map((l) => (t.diagnostic(l), JSON.parse(l)));
  const get = (what) => lines.find((l) => l.what === what);
  assert.equal(get('adapter').adapter.architecture, 'swiftshader', 'Dawn runs on SwiftShader');
  assert.equal(get('adapter').icd, icd);
  const parity = get('parity');
  assert.deepEqual(parity.shape, [3, 1, 16, 16]);
  assert.ok(parity.max_abs_err <= 1e-4, `UNet against diffusers' f32 output: max abs error ${parity.max_abs_err}`);
  assert.ok(parity.max_abs_err_f64 <= 1e-4, `UNet against diffusers' f64 output: max abs error ${parity.max_abs_err_f64}`);
  // The page's warm-up while the weights download: a zero-weight stand-in compiles the UNet's
  // kernels, so the first step compiles only the sampler's few; the load itself runs no kernel
  // (no parameter initialiser runs before the file's values replace it).
  const warm = get('warm');
  const first = get('first_image');
  assert.equal(warm.ran, true);
  assert.ok(warm.pipelines >= 20, `the stand-in compiled ${warm.pipelines} pipelines`);
  assert.deepEqual([first.load_launches, first.load_pipelines], [0, 0], 'loading launches no kernel');
  assert.equal(first.images, 1);
  const step = get('step');
  assert.equal(step.batch, 1);
  assert.ok(step.ms_per_step > 0);
  assert.ok(step.launches_per_step > 0, 'dispatchWorkgroups is counted');
  // Sampling runs group norm (+ SiLU) and attention as one kernel each, with the time embedding
  // and the q, k, v biases added inside them (src/unet/cube.rs): no reductions are left in a step,
  // and it takes 125 launches where burn's ops took 518. The up path reshapes channels-last
  // (src/unet/layout.rs), so no convolution input is copied to that layout first.
  const ops = get('launches_by_kernel').by_op;
  assert.ok(ops.group_norm_kernel > 0 && ops.attention_kernel > 0, `one-kernel norm and attention in use: ${JSON.stringify(ops)}`);
  assert.equal(ops.reduce_kernel, undefined, `no reduction kernels left: ${JSON.stringify(ops)}`);
  assert.equal(ops.copy_kernel_pack, undefined, `no layout copies before convolutions: ${JSON.stringify(ops)}`);
  assert.ok(step.launches_per_step <= 130, `${step.launches_per_step} launches a step`);
  assert.ok(step.first_step_pipelines <= 8, `the first step after the warm-up compiled ${step.first_step_pipelines} pipelines`);
  assert.ok(step.peak_buffer_bytes > 0, 'buffer bytes are tracked');
  // Fine-tuning as the page does it, on the same device: three Adam steps, each loss read back.
  const tune = get('tune');
  assert.deepEqual([tune.steps, tune.batch, tune.read_every], [3, 2, 1]);
  assert.ok(Number.isFinite(tune.loss_first_read) && Number.isFinite(tune.loss_last), `losses ${tune.loss_first_read}, ${tune.loss_last}`);
  assert.ok(tune.launches_per_step > step.launches_per_step, `a training step (${tune.launches_per_step} launches) does more than a sampling step`);
  assert.ok(tune.total_ms > 0);
  assert.ok(lines.every((l) => l.backend === 'ours'));
});
