// Where the engine runs, in plain words for a visitor (the page and <ddpm-demo> say the same):
// `before` + `name` + `after` make the line, the engine's name kept apart so it can be shown
// as such; `details` is the engine's own reason (a wgpu error, say), for a "details" disclosure.

/** The 'backend' message of the engine host ({name, isGpu, software, note}) in words. */
export function backendWords({ name, isGpu, software, note }) {
  if (isGpu && software) {
    return { kind: 'software', before: 'Running on a software WebGPU adapter (', name, after: '): the CPU is faster here.', details: note ?? null };
  }
  if (isGpu) return { kind: 'gpu', before: 'Running on your GPU (', name, after: ').', details: note ?? null };
  return { kind: 'cpu', before: 'Running on the ', name, after: `: ${cpuReason(note)}.`, details: note ?? null };
}

/** Why the engine runs on the CPU, without the engine's internals. */
function cpuReason(note) {
  if (/device was lost/.test(note ?? '')) return 'the GPU stopped answering, so it carried on here';
  if (/^WebGPU not requested/.test(note ?? '')) return 'WebGPU was turned off for this page';
  return 'this browser offers no WebGPU';
}

/** The line as one string. */
export const backendSentence = (words) => `${words.before}${words.name}${words.after}`;
