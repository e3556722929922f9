// The Web Worker that runs the engine off the page's thread (see engine-host.js).
import { createHost } from './engine-host.js';

const handle = createHost((msg, transfer = []) => self.postMessage(msg, transfer));
self.onmessage = (event) => handle(event.data);
self.postMessage({ type: 'hello' });
