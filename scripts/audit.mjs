// Lighthouse on the page (`make audit`): accessibility and best practices, mobile and desktop
// presets, on Debian's Chromium, offline. Prints the scores and the failing audits; exits 1 when
// a score is under MIN.
//   node scripts/audit.mjs [--url URL] [--out DIR]
// Without --url it serves the repository with www/serve.mjs on a free loopback port.
import { execFile } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startServer } from '../www/serve.mjs';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const LIGHTHOUSE = path.join(REPO_ROOT, 'node_modules/lighthouse/cli/index.js');
const CATEGORIES = ['accessibility', 'best-practices'];
const MIN = 95;
// The machine reaches no network beyond package registries: Chromium must not try to, and
// Lighthouse must not wait for it.
const CHROME_FLAGS = [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic',
  '--disable-default-apps', '--disable-extensions', '--metrics-recording-only', '--mute-audio',
];
const PRESETS = ['mobile', 'desktop'];

function parseArgs(argv) {
  const args = { out: path.join(REPO_ROOT, 'artifacts') };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--url') args.url = argv[++i];
    else if (argv[i] === '--out') args.out = path.resolve(argv[++i]);
    else throw new Error(`unknown argument: ${argv[i]} (usage: node scripts/audit.mjs [--url URL] [--out DIR])`);
  }
  return args;
}

/** Runs the Lighthouse CLI on `url` with `preset`; resolves to its JSON report. */
async function lighthouse(url, preset, out) {
  const report = path.join(out, `lighthouse-${preset}.json`);
  const flags = [
    LIGHTHOUSE, url, `--only-categories=${CATEGORIES.join(',')}`, '--output=json', `--output-path=${report}`,
    `--chrome-flags=${CHROME_FLAGS.join(' ')}`, '--quiet', '--max-wait-for-load=60000',
    ...(preset === 'desktop' ? ['--preset=desktop'] : []),
  ];
  await promisify(execFile)(process.execPath, flags, {
    env: { ...process.env, CHROME_PATH: process.env.CHROME_PATH || '/usr/bin/chromium' },
    maxBuffer: 64 << 20,
  });
  return JSON.parse(await readFile(report, 'utf8'));
}

/** The audits of `category` that did not pass, as lines. */
function failures(lhr, category) {
  return lhr.categories[category].auditRefs
    .map((ref) => lhr.audits[ref.id])
    .filter((a) => a.score !== null && a.score < 1 && a.scoreDisplayMode !== 'informative' && a.scoreDisplayMode !== 'notApplicable')
    .map((a) => `    ${a.id} (${a.score}): ${a.title}`);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  await mkdir(args.out, { recursive: true });
  const served = args.url ? null : await startServer({ port: 0 });
  const url = args.url ?? served.url;
  const t0 = Date.now();
  let ok = true;
  try {
    for (const preset of PRESETS) {
      const lhr = await lighthouse(url, preset, args.out);
      for (const category of CATEGORIES) {
        const score = Math.round(lhr.categories[category].score * 100);
        ok &&= score >= MIN;
        console.log(`${preset} ${category}: ${score}${score >= MIN ? '' : ` (under ${MIN})`}`);
        for (const line of failures(lhr, category)) console.log(line);
      }
      if (lhr.runtimeError) console.log(`  ${preset}: ${lhr.runtimeError.code}: ${lhr.runtimeError.message}`);
    }
  } finally {
    served?.server.close();
  }
  console.log(`lighthouse ${url}: ${((Date.now() - t0) / 1000).toFixed(0)} s, reports in ${path.relative(process.cwd(), args.out) || '.'}/lighthouse-*.json`);
  if (!ok) process.exit(1);
}

main().catch((err) => {
  console.error(`audit: ${err.stderr || err.message}`);
  process.exit(1);
});
