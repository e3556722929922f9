// Connects a page to the engine host (host.js): in a Web Worker when the page may start
// one (the worker file itself on the same origin; from another origin, a blob: worker that
// imports it), else, where a Content-Security-Policy forbids both, on the page's own thread.
// Every page has one connection, shared by the app and all <ddpm-demo> elements.

const WORKER = new URL('./worker.js', import.meta.url);
const HOST = new URL('./host.js', import.meta.url);

let hub = null;

/** The page's connection: {post(msg, transfer), listen(fn) -> unlisten, newId(), mode}. Every
 *  job's id comes from newId(), so that the app, its fine-tuning panel, <ddpm-demo> elements and
 *  the JS API never answer each other's messages. */
export function connect() {
  if (!hub) hub = makeHub();
  return hub;
}

function makeHub() {
  const listeners = new Set();
  const dispatch = (msg) => {
    for (const fn of [...listeners]) {
      try {
        fn(msg);
      } catch (err) {
        console.error(err);
      }
    }
  };
  let pending = [];   // messages posted before the host is up
  let send = null;
  let ids = 0;
  const h = {
    mode: 'starting',
    newId: () => ++ids,
    post(msg, transfer = []) {
      if (send) send(msg, transfer);
      else pending.push([msg, transfer]);
    },
    listen(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
  };
  const flush = (to, mode) => {
    send = to;
    h.mode = mode;
    for (const [msg, transfer] of pending) send(msg, transfer);
    pending = [];
  };
  const onPage = async () => {
    try {
      const { createHost } = await import(HOST.href);
      const handle = createHost((msg) => setTimeout(() => dispatch(msg), 0));
      flush((msg) => handle(msg), 'page');
    } catch (err) {
      dispatch({ type: 'error', where: 'init', message: `${HOST.href}: the engine could not start (${err.message || err})` });
    }
  };
  try {
    const worker = startWorker({
      onHello: () => flush((msg, transfer) => worker.postMessage(msg, transfer), 'worker'),
      onMessage: dispatch,
      onError: (why, started) => {
        if (started) {
          dispatch({ type: 'error', where: 'init', message: `${WORKER.href}: ${why || 'the worker failed (see the browser console)'}` });
          return;
        }
        worker.terminate();  // the page may not start it (CSP): run the engine here instead
        onPage();
      },
    });
  } catch {
    onPage();
  }
  return h;
}

/** A new engine host worker: the worker file itself on the same origin; from another origin,
 *  a blob: worker that imports it. Calls onHello() when its host is up, onMessage(msg) for each
 *  message after that, and onError(why, started) when it fails (before or after its hello).
 *  Throws where the context may not start a worker. */
export function startWorker({ onHello, onMessage, onError }) {
  const worker = sameOrigin(WORKER)
    ? new Worker(WORKER, { type: 'module' })
    : new Worker(URL.createObjectURL(new Blob([`import ${JSON.stringify(WORKER.href)};`], { type: 'text/javascript' })), { type: 'module' });
  let started = false;
  worker.onmessage = (event) => {
    if (!started && event.data?.type === 'hello') {
      started = true;
      onHello();
    } else {
      onMessage(event.data);
    }
  };
  worker.onerror = (event) => {
    event.preventDefault();
    onError(event.message, started);
  };
  return worker;
}

const sameOrigin = (url) => url.origin === location.origin;
