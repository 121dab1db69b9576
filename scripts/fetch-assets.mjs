#!/usr/bin/env node
// Fetches the default model and the sample frames listed in models/manifest.json
// when they are missing, and checks each against its sha256.
//
//   node scripts/fetch-assets.mjs            download from the public upstream
//   EDGE_CLASSIFIER_MIRROR=DIR node scripts/fetch-assets.mjs
//                                            copy from a local mirror folder
//                                            (offline and air-gapped installs)
//
// A file already present with the right sha256 is left alone. A file whose
// sha256 differs is never kept: the script exits 1 naming the file, the
// expected and the received hash. Node.js built-ins only (fetch, crypto), so
// it runs before anything is built.
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DOWNLOAD_TIMEOUT_MS = 120_000;

/** sha256 of a file as lower-case hex, or null when the file does not exist. */
async function sha256Of(file) {
  try {
    return createHash('sha256')
      .update(await readFile(file))
      .digest('hex');
  } catch (err) {
    if (err.code === 'ENOENT') return null;
    throw err;
  }
}

async function download(url, dest) {
  const response = await fetch(url, { signal: AbortSignal.timeout(DOWNLOAD_TIMEOUT_MS), redirect: 'follow' });
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status} ${response.statusText}`);
  await writeFile(dest, Buffer.from(await response.arrayBuffer()));
}

/**
 * Makes sure every manifest file exists with its sha256, under `dest`
 * (default: the package root).
 * @returns {Promise<string[]>} one line per file saying what was done
 */
export async function fetchAssets({ mirror = process.env.EDGE_CLASSIFIER_MIRROR, dest: destRoot = root, log = console.log } = {}) {
  const manifest = JSON.parse(await readFile(path.join(root, 'models', 'manifest.json'), 'utf8'));
  for (const entry of manifest.files) {
    const dest = path.join(destRoot, entry.file);
    if ((await sha256Of(dest)) === entry.sha256) {
      log(`ok       ${entry.file}`);
      continue;
    }
    await mkdir(path.dirname(dest), { recursive: true });
    const partial = `${dest}.partial`;
    const from = mirror ? path.resolve(mirror, entry.mirror_path) : entry.url;
    try {
      if (mirror) await copyFile(from, partial);
      else await download(entry.url, partial);
    } catch (err) {
      await rm(partial, { force: true });
      const hint = mirror
        ? `is EDGE_CLASSIFIER_MIRROR (${mirror}) a folder holding ${entry.mirror_path}?`
        : 'no network? set EDGE_CLASSIFIER_MIRROR to a folder holding the files (see README)';
      throw new Error(`cannot fetch ${entry.file} from ${from}: ${err.code === 'ENOENT' ? 'no such file' : err.message} (${hint})`);
    }
    const got = await sha256Of(partial);
    if (got !== entry.sha256) {
      await rm(partial, { force: true });
      throw new Error(`${entry.file} from ${from} has sha256 ${got}, expected ${entry.sha256}: refusing to use it`);
    }
    await rename(partial, dest);
    log(`fetched  ${entry.file} (${mirror ? 'mirror' : 'upstream'}, sha256 ok)`);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  fetchAssets().catch((err) => {
    console.error(`fetch-assets: ${err.message}`);
    process.exit(1);
  });
}
