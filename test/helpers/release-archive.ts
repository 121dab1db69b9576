/**
 * Release archives for tests.
 *
 * `packedRelease()` runs the real `edge-classifier pack` once for the
 * current build (keyed by a hash of dist/ and the lock file) into a folder
 * under the system's temporary folder, shared by the test files that run in
 * parallel (a lock folder makes one of them pack while the others wait).
 *
 * `repack(archive, outDir, {version, mutate})` makes another release from
 * it the way a build with other code would look: unpacked, `mutate(dir)`
 * applied (e.g. break a native module, patch the program), the version set
 * in package.json and release.json, the program file list recomputed,
 * packed again with its `.sha256`.
 */

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { repoRoot } from './assets.js';
import { CLI } from './cli.js';

const run = promisify(execFile);

async function walk(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(path.join(dir, rel), { withFileTypes: true })) {
    const r = path.join(rel, e.name);
    if (e.isDirectory()) out.push(...(await walk(dir, r)));
    else if (e.isFile()) out.push(r);
  }
  return out.sort();
}

/** sha256 of a file, hex. */
export async function sha256Of(file: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
}

/** Version of the archive `packedRelease()` makes. */
export const BASE_VERSION = '1.0.0';

/** The archive of the current build (dist/, lock file, git commit and changes), packed once and shared between test files. */
export async function packedRelease(): Promise<string> {
  const hash = createHash('sha256');
  for (const f of await walk(path.join(repoRoot, 'dist'))) hash.update(f).update(await readFile(path.join(repoRoot, 'dist', f)));
  hash.update(await readFile(path.join(repoRoot, 'package-lock.json')));
  // The manifest records the commit and whether the tree had changes: a new commit is a new archive.
  hash.update((await run('git', ['-C', repoRoot, 'rev-parse', 'HEAD'])).stdout);
  hash.update((await run('git', ['-C', repoRoot, 'status', '--porcelain', '--untracked-files=no'])).stdout);
  const key = hash.digest('hex').slice(0, 16);
  // One folder per checkout: two checkouts testing at once on one machine must not remove each other's archives.
  const base = path.join(tmpdir(), `edge-classifier-test-releases-${createHash('sha256').update(repoRoot).digest('hex').slice(0, 8)}`);
  const dir = path.join(base, key);
  const archive = path.join(dir, `edge-classifier-${BASE_VERSION}-linux-${process.arch}.tar.gz`);
  const lock = `${dir}.lock`;
  await mkdir(base, { recursive: true });
  for (let waited = 0; ; waited += 250) {
    if (existsSync(`${archive}.sha256`)) return archive;
    try {
      await mkdir(lock);
    } catch {
      if (waited > 240_000) throw new Error(`waited 240 s for another test to pack ${archive} (lock ${lock})`);
      await sleep(250);
      continue;
    }
    try {
      // Archives of earlier builds are of no use any more.
      for (const old of await readdir(base)) if (old !== key && old !== `${key}.lock`) await rm(path.join(base, old), { recursive: true, force: true });
      await mkdir(dir, { recursive: true });
      await run(process.execPath, [CLI, 'pack', '--out', dir, '--version', BASE_VERSION], {
        cwd: repoRoot,
        maxBuffer: 1 << 24,
        env: { ...process.env, EDGE_CLASSIFIER_MIRROR: process.env.EDGE_CLASSIFIER_MIRROR ?? path.join(repoRoot, '..', 'shared', 'assets') },
      });
      return archive;
    } finally {
      await rm(lock, { recursive: true, force: true });
    }
  }
}

/** Options of {@link repack}. */
export interface RepackOptions {
  readonly version: string;
  /** Changes the unpacked release (its folder) before it is packed again. */
  readonly mutate?: (dir: string) => Promise<void>;
  /** Changes the release after its program file list is made (a copy that differs from what was packed). */
  readonly afterList?: (dir: string) => Promise<unknown>;
  /** Fields to overwrite in release.json (e.g. another arch). */
  readonly manifest?: Record<string, unknown>;
}

/** Makes another release archive from `archive` (see the file comment); returns its path. */
export async function repack(archive: string, outDir: string, o: RepackOptions): Promise<string> {
  const work = await mkdtemp(path.join(outDir, '.repack-'));
  try {
    await run('tar', ['-xzf', archive, '-C', work]);
    const pj = JSON.parse(await readFile(path.join(work, 'package.json'), 'utf8')) as Record<string, unknown>;
    pj.version = o.version;
    await writeFile(path.join(work, 'package.json'), JSON.stringify(pj, null, 2));
    await o.mutate?.(work);
    const manifest = JSON.parse(await readFile(path.join(work, 'release.json'), 'utf8')) as Record<string, unknown>;
    Object.assign(manifest, { version: o.version, built_at: new Date().toISOString() }, o.manifest);
    await writeFile(path.join(work, 'release.json'), JSON.stringify(manifest, null, 2));
    const files: Record<string, string> = { 'package.json': await sha256Of(path.join(work, 'package.json')) };
    for (const f of await walk(path.join(work, 'dist'))) files[path.join('dist', f)] = await sha256Of(path.join(work, 'dist', f));
    await writeFile(path.join(work, 'program-files.json'), JSON.stringify(files));
    await o.afterList?.(work);
    const name = `edge-classifier-${o.version}-linux-${String(manifest.arch)}.tar.gz`;
    const out = path.join(outDir, name);
    await run('tar', ['-C', work, '--use-compress-program=gzip -1', '-cf', out, '.']);
    await writeFile(`${out}.sha256`, `${await sha256Of(out)}  ${name}\n`);
    return out;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** An archive holding only a release.json (enough for the checks made before unpacking), with its .sha256. */
export async function manifestOnlyArchive(outDir: string, manifest: Record<string, unknown>): Promise<string> {
  const work = await mkdtemp(path.join(outDir, '.manifest-'));
  try {
    await writeFile(path.join(work, 'release.json'), JSON.stringify(manifest));
    const name = `edge-classifier-${String(manifest.version)}-linux-${String(manifest.arch)}.tar.gz`;
    const out = path.join(outDir, name);
    await run('tar', ['-C', work, '-czf', out, '.']);
    await writeFile(`${out}.sha256`, `${await sha256Of(out)}  ${name}\n`);
    return out;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
