// A local stand-in for the Hugging Face Hub, for tests without a network. Like the Hub:
// - HUB/OWNER/NAME/resolve/REV/PATH answers a small file (a config) itself and a large one (the
//   weights) with a 302 to a second origin, the CDN; both send CORS headers, x-repo-commit and
//   an ETag (x-linked-etag on the redirect), as huggingface_hub and hf-hub expect;
// - a file the repository lacks is a 404 (X-Error-Code: EntryNotFound), a private repository a
//   403 (a missing one a 401, as the Hub answers);
// - the CDN honours Range (206, Content-Range), which hf-hub's size probe uses.
// `cut`: file names whose first download is cut after half its bytes (a dropped connection).
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';

const DIRECT_LIMIT = 1 << 20;  // the Hub serves small files itself, LFS files through its CDN
const COMMIT = 'a'.repeat(40);

/**
 * Serves `repos` ({'OWNER/NAME': folder}) on two loopback origins; `private` lists repositories
 * that answer 403. Resolves to {hub, cdn, requests, close()}.
 */
export async function startMockHub({ repos, private: closed = [], cut = [] }) {
  const requests = [];
  const cutOnce = new Set(cut);
  const cors = {
    'Access-Control-Allow-Origin': '*',
    'Access-Control-Expose-Headers': 'Content-Length, Content-Range, ETag, X-Repo-Commit, X-Linked-Etag, X-Linked-Size, X-Error-Code',
  };
  const etag = (file) => `"${createHash('sha256').update(`${file}:${fs.statSync(file).size}`).digest('hex')}"`;
  const find = (repo, rel) => {
    const root = repos[repo];
    const file = path.join(root, rel);
    return root && !rel.split('/').includes('..') && fs.statSync(file, { throwIfNoEntry: false })?.isFile() ? file : null;
  };
  const sendFile = (req, res, file, headers) => {
    const size = fs.statSync(file).size;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range || '');
    const [start, end] = range ? [Number(range[1]), range[2] ? Math.min(Number(range[2]), size - 1) : size - 1] : [0, size - 1];
    const base = { ...cors, ...headers, 'Content-Type': 'application/octet-stream', 'Accept-Ranges': 'bytes', ETag: etag(file) };
    if (range) res.writeHead(206, { ...base, 'Content-Length': end - start + 1, 'Content-Range': `bytes ${start}-${end}/${size}` });
    else res.writeHead(200, { ...base, 'Content-Length': size });
    if (req.method === 'HEAD') return res.end();
    const name = path.basename(file);
    if (!range && cutOnce.delete(name)) {
      // Half the body, then the connection drops: the client sees a body shorter than its length.
      const half = fs.readFileSync(file).subarray(0, Math.floor(size / 2));
      return res.write(half, () => res.socket.destroy());
    }
    fs.createReadStream(file, { start, end }).pipe(res);
  };
  const listen = (handler) => new Promise((resolve) => {
    const server = http.createServer((req, res) => {
      requests.push(`${req.method} ${req.url}`);
      if (req.method === 'OPTIONS') {
        res.writeHead(204, { ...cors, 'Access-Control-Allow-Headers': 'Range', 'Access-Control-Allow-Methods': 'GET, HEAD' });
        return res.end();
      }
      handler(req, res);
    });
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
  const cdnServer = await listen((req, res) => {
    const m = /^\/cdn\/([^/]+\/[^/]+)\/[^/]+\/(.+)$/.exec(decodeURIComponent(new URL(req.url, 'http://x').pathname));
    const file = m && find(m[1], m[2]);
    if (!file) return res.writeHead(404, cors).end('not found');
    sendFile(req, res, file, {});
  });
  const cdn = `http://127.0.0.1:${cdnServer.address().port}`;
  const hubServer = await listen((req, res) => {
    const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(decodeURIComponent(new URL(req.url, 'http://x').pathname));
    if (!m) return res.writeHead(404, cors).end('no such page');
    const [, repo, rev, rel] = m;
    if (closed.includes(repo)) return res.writeHead(403, { ...cors, 'X-Error-Code': 'GatedRepo' }).end('access denied');
    if (!repos[repo]) return res.writeHead(401, { ...cors, 'X-Error-Code': 'RepoNotFound' }).end('repository not found');
    const file = find(repo, rel);
    if (!file) return res.writeHead(404, { ...cors, 'X-Error-Code': 'EntryNotFound', 'X-Repo-Commit': COMMIT }).end('entry not found');
    const size = fs.statSync(file).size;
    if (size <= DIRECT_LIMIT) return sendFile(req, res, file, { 'X-Repo-Commit': COMMIT });
    res.writeHead(302, {
      ...cors, Location: `${cdn}/cdn/${repo}/${rev}/${rel}`, 'X-Repo-Commit': COMMIT,
      'X-Linked-Etag': etag(file), 'X-Linked-Size': String(size), 'Content-Length': 0,
    });
    res.end();
  });
  const hub = `http://127.0.0.1:${hubServer.address().port}`;
  return {
    hub, cdn, requests,
    close() {
      for (const s of [hubServer, cdnServer]) { s.closeAllConnections?.(); s.close(); }
    },
  };
}
