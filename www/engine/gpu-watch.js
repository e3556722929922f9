// The WebGPU side of the engine host: the adapter's description, and the devices wgpu asks for
// through this realm's navigator.gpu, watched so that a lost device is seen at once (host.js then
// carries on on the CPU). Tests get two hooks, only after enableTestHooks(): counting the GPU
// buffers alive (a memory-leak check) and destroying the devices as a lost GPU would.

const devices = new Set();      // the WebGPU devices in use
const lossWaiters = new Set();  // called when a device loss is seen
let onLost = () => {};

/** Calls `lost(why)` whenever a device wgpu requested is lost. */
export function watchGpu(lost) {
  onLost = lost;
  const adapter = globalThis.GPUAdapter?.prototype;
  if (!adapter || adapter.requestDevice.ddpmWatched) return;
  const requestDevice = adapter.requestDevice;
  adapter.requestDevice = Object.assign(async function (...args) {
    const d = await requestDevice.apply(this, args);
    devices.add(d);
    d.lost.then((info) => {
      devices.delete(d);
      onLost(info?.message || info?.reason || 'unknown reason');
      for (const done of [...lossWaiters]) done();
    });
    return d;
  }, { ddpmWatched: true });
}

/** Waits until a device loss is seen (an error may arrive just before its device's `lost`), at
 *  most `ms`: an error that was no device loss is reported after `ms`, one that was, at once. */
export const lossOr = (ms) => new Promise((resolve) => {
  const done = () => { lossWaiters.delete(done); resolve(); };
  lossWaiters.add(done);
  setTimeout(done, ms);
});

/** The adapter's own description, whether it is a fallback (software) adapter, and the largest
 *  buffer it allows (the engine holds its own device). */
export async function adapterInfo() {
  try {
    const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
    const info = adapter?.info ?? {};
    const limits = adapter?.limits;
    return {
      name: [info.description || info.vendor, info.architecture].filter(Boolean).join(' ') || 'unnamed adapter',
      software: Boolean(info.isFallbackAdapter ?? adapter?.isFallbackAdapter),
      // The engine's device asks for the adapter's limits; one tensor is one storage buffer.
      maxBuffer: limits ? Math.min(limits.maxBufferSize, limits.maxStorageBufferBindingSize) : null,
    };
  } catch {
    return { name: 'unnamed adapter', software: false, maxBuffer: null };
  }
}

// ---- test hooks ------------------------------------------------------------------------------

let hooks = false;
const gpu = { buffers: 0, bytes: 0 };  // GPU buffers created and not yet destroyed
const bufferSizes = new WeakMap();

export const testHooksOn = () => hooks;

/** Counts the GPU buffers created from now on; must run before the engine asks for its device. */
export function enableTestHooks() {
  const device = globalThis.GPUDevice?.prototype;
  const buffer = globalThis.GPUBuffer?.prototype;
  if (hooks) return;
  hooks = true;
  if (!device || !buffer) return;
  const createBuffer = device.createBuffer;
  device.createBuffer = function (desc) {
    const b = createBuffer.call(this, desc);
    bufferSizes.set(b, Number(desc?.size) || 0);
    gpu.buffers += 1;
    gpu.bytes += bufferSizes.get(b);
    return b;
  };
  const destroy = buffer.destroy;
  buffer.destroy = function () {
    if (bufferSizes.has(this)) {
      gpu.buffers -= 1;
      gpu.bytes -= bufferSizes.get(this);
      bufferSizes.delete(this);
    }
    return destroy.call(this);
  };
}

/** The GPU buffers alive and their bytes (zero unless the test hooks are on). */
export const gpuBuffers = () => ({ gpuBuffers: gpu.buffers, gpuBytes: gpu.bytes });

/** Destroys every device in use, as a lost GPU would. */
export function loseDevices() {
  devices.forEach((d) => d.destroy());
}
