// Subresource Integrity for embed.js: `node scripts/sri.mjs dist/embed.js` prints the hash and the
// two lines a blog pastes (README: Embed in your blog), so a changed file on the host is refused.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The `integrity` value of a file: sha384, as browsers check it. */
export function integrity(file) {
  return `sha384-${createHash('sha384').update(readFileSync(file)).digest('base64')}`;
}

/** The embed snippet for `src` (the URL embed.js will have) with `hash`. */
export function snippet(src, hash) {
  return `<script type="module" src="${src}" integrity="${hash}" crossorigin="anonymous"></script>\n` +
    '<ddpm-demo autoplay show-steps></ddpm-demo>';
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: node scripts/sri.mjs dist/embed.js');
    process.exit(2);
  }
  let hash;
  try {
    hash = integrity(file);
  } catch (err) {
    console.error(`sri: ${file}: ${err.message}`);
    process.exit(1);
  }
  console.log(`${path.basename(file)}: integrity="${hash}"\n\nthe embed, with https://YOUR-HOST/ddpm/ where dist/ is published:\n` +
    `${snippet('https://YOUR-HOST/ddpm/embed.js', hash)}`);
}
