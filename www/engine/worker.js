// The Web Worker that runs the engine off the page's thread (see host.js).
import { createHost } from './host.js';

const handle = createHost((msg, transfer = []) => self.postMessage(msg, transfer));
self.onmessage = (event) => handle(event.data);
self.postMessage({ type: 'hello' });
