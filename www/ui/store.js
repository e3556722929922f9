// What the user made, kept in IndexedDB across reloads: drawings and uploads (PNG blobs) and
// fine-tuned weights (per base model URL). Every call resolves, also where IndexedDB is missing
// (private mode): then nothing is kept, and `available` says so.

const DB = 'ddpm-web';
const VERSION = 1;
let opened = null;

function open() {
  if (!opened) {
    opened = new Promise((resolve) => {
      if (!globalThis.indexedDB) return resolve(null);
      const req = indexedDB.open(DB, VERSION);
      req.onupgradeneeded = () => {
        req.result.createObjectStore('drawings', { keyPath: 'id', autoIncrement: true });
        req.result.createObjectStore('tuned');
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => resolve(null);
      req.onblocked = () => resolve(null);
    });
  }
  return opened;
}

/** Runs `fn(store)` in a transaction; resolves to the result of the request it returns. */
async function run(name, mode, fn) {
  const db = await open();
  if (!db) return undefined;
  return new Promise((resolve, reject) => {
    const tx = db.transaction(name, mode);
    const req = fn(tx.objectStore(name));
    tx.oncomplete = () => resolve(req?.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error('IndexedDB transaction aborted (storage full?)'));
  });
}

export const available = async () => Boolean(await open());
export const listDrawings = async () => (await run('drawings', 'readonly', (s) => s.getAll())) ?? [];
export const addDrawing = (blob, name) => run('drawings', 'readwrite', (s) => s.add({ blob, name, added: Date.now() }));
export const removeDrawing = (id) => run('drawings', 'readwrite', (s) => s.delete(id));
export const getTuned = (baseUrl) => run('tuned', 'readonly', (s) => s.get(baseUrl));
export const putTuned = (baseUrl, record) => run('tuned', 'readwrite', (s) => s.put(record, baseUrl));
export const deleteTuned = (baseUrl) => run('tuned', 'readwrite', (s) => s.delete(baseUrl));
