// The page's line on where the engine runs (backend-words.js), with the time the current settings
// are expected to take (speed.js): timed on a two-step probe run once the model is loaded, then
// on each run. The engine's own reason (a wgpu error, say) waits under "details"; a software
// adapter gets a note with the way to the faster CPU backend.

import { backendWords } from '../backend-words.js';
import { Speed } from '../speed.js';

const $ = (id) => document.getElementById(id);
const PROBE_STEPS = 2;

/** `settings()`: the {n, steps, sampler} in the controls, or null while they are not valid. */
export function createBackendLine(hub, settings) {
  const el = {
    before: $('backend-before'), name: $('backend'), after: $('backend-after'), estimate: $('estimate'),
    details: $('backend-details'), why: $('backend-why'), note: $('gpu-note'),
  };
  const speed = new Speed();
  let probe = null;  // {id, timer}

  const refresh = () => {
    const s = settings();
    const text = s ? speed.text(s.n, s.steps) : '';
    el.estimate.textContent = text && `Expected: ${text}.`;
  };
  hub.listen((msg) => {
    if (!probe || msg.id !== probe.id) return;
    if (msg.type === 'progress') return probe.timer.step(msg.done);
    if (!['done', 'cancelled', 'error'].includes(msg.type)) return;
    probe.timer.end();
    probe = null;
    refresh();
  });

  return {
    refresh,

    /** Shows the engine's 'backend' message. */
    show({ name, isGpu, software, note }) {
      const words = backendWords({ name, isGpu, software, note });
      el.before.textContent = words.before;
      el.name.textContent = name || '(unknown backend)';
      el.after.textContent = words.after;
      el.why.textContent = words.details ?? '';
      el.details.hidden = !words.details;
      if (/device was lost/.test(note ?? '')) {
        el.note.textContent = 'The WebGPU device was lost: the page carries on on the CPU, and keeps your drawings and fine-tuned weights.';
        el.note.hidden = false;
      } else if (words.kind === 'software') {
        const cpu = new URL(location.href);
        cpu.searchParams.set('backend', 'cpu');
        const link = Object.assign(document.createElement('a'), { href: cpu.href, textContent: 'use the CPU backend' });
        link.dataset.testid = 'use-cpu';
        el.note.replaceChildren('This WebGPU is a software adapter (the CPU emulating a GPU), about 25-40x slower than ' +
          'the page\'s own CPU backend on the MNIST model, so the default is 1 image and fine-tuning runs on the CPU workers. Faster: ',
        link, '.');
        el.note.hidden = false;
      } else {
        el.note.hidden = true;
      }
    },

    /** The engine did not start (the error box says why). */
    failed() {
      el.before.textContent = 'The engine did not start.';
      el.name.textContent = '';
      el.after.textContent = '';
    },

    /** Times two steps of the current settings (once the model is loaded), for the estimate. */
    probe(model) {
      const s = settings();
      if (probe || !s) return;
      probe = { id: hub.newId(), timer: speed.timer(s.n) };
      hub.post({ type: 'generate', id: probe.id, model, n: s.n, sampler: s.sampler, steps: PROBE_STEPS, eta: 0, seed: 0, previewEvery: 1_000_000 });
    },

    /** Stops the probe, so that a visitor's run need not wait for it. */
    stopProbe() {
      if (probe) hub.post({ type: 'cancel', id: probe.id });
    },

    /** The expected seconds for `n` images in `steps` steps; null before a step was timed. */
    seconds: (n, steps) => speed.seconds(n, steps),

    /** "about 3 min for 1 image at 20 steps", or '' before a step was timed. */
    text: (n, steps) => speed.text(n, steps),

    /** A timer for a run of `n` images (its steps refine the estimate). */
    timer: (n) => speed.timer(n),
  };
}
