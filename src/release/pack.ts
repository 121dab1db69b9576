import { existsSync } from 'node:fs';
import { cp, lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { OperationError, sha256File, writeFileAtomic } from './atomic.js';
import { execCapture, lastLines } from './exec.js';
import type { Progress } from './gate.js';
import { checkVersion } from './layout.js';
import { archiveName, MANIFEST_FILE, type ReleaseManifest } from './manifest.js';
import { selfTestRelease } from './self-test.js';

/** Top-level files and folders of the source tree that go into a release (node_modules, models and samples are added separately). */
const RELEASE_FILES = ['package.json', 'package-lock.json', 'README.md', 'dist', 'systemd'];

/** Options of {@link pack}. */
export interface PackOptions {
  /** The program's root folder (holding package.json and a built dist/). */
  readonly source: string;
  /** Folder the archive goes to. */
  readonly outDir: string;
  /** Release version; default package.json's. */
  readonly version?: string;
  /** Target `process.arch`; default this machine's. */
  readonly arch?: string;
  readonly progress: Progress;
  /** npm binary for listing and installing packages. Default `npm`. */
  readonly npm?: string;
  /**
   * The commit the source is, when `source` is not a git checkout (a copy
   * sent to a builder host by `fleet build`); default: asked of git.
   */
  readonly commit?: { readonly commit: string; readonly dirty: boolean };
}

/** What {@link pack} made. */
export interface PackResult {
  readonly archive: string;
  readonly sha256File: string;
  readonly sha256: string;
  readonly manifest: ReleaseManifest;
}

/**
 * Production dependencies that the program never loads, left out of a
 * release (80 MB of the 137 MB an SD card would otherwise carry). The pack
 * self-test proves the release works without them.
 */
const NOT_SHIPPED: Readonly<Record<string, string>> = {
  '@tensorflow/tfjs-core': "tfjs-tflite-node's JavaScript API needs it; the program loads only that package's TFLite C library",
  '@tensorflow/tfjs-tflite': 'the same: only the JavaScript API of tfjs-tflite-node uses it',
  '@types/node': 'type declarations, for the compiler only',
};

/**
 * Packages whose node-gyp addon the program neither builds (`allowScripts`
 * false) nor loads: only a prebuilt library they carry is used, given here
 * by arch, relative to the package folder.
 */
const LIBRARY_ONLY: Readonly<Record<string, (arch: string) => string>> = {
  // Our own binding (inference/tflite-c.ts) loads its libtensorflowlite_c.so through koffi.
  'tfjs-tflite-node': (arch) => `cc_deps/linux_${arch === 'x64' ? 'amd64' : arch}/libtensorflowlite_c.so`,
};

/**
 * The tree `npm ci --os --cpu` fetched into a staged release for another
 * arch, made what a release of this machine's arch holds: the
 * {@link NOT_SHIPPED} packages removed (npm installs every production
 * dependency), and each {@link LIBRARY_ONLY} package checked to carry its
 * library for `arch` in the fetched tree itself (the source tree's copy is
 * this machine's).
 * @throws OperationError (`arch`) naming each package whose library is missing.
 */
export async function finishFetchedTree(staging: string, arch: string): Promise<void> {
  const nm = path.join(staging, 'node_modules');
  for (const name of Object.keys(NOT_SHIPPED)) await rm(path.join(nm, name), { recursive: true, force: true });
  const missing: string[] = [];
  for (const [name, library] of Object.entries(LIBRARY_ONLY)) {
    const dir = path.join(nm, name);
    if (!existsSync(dir)) missing.push(`${name} was not fetched`);
    else if (!existsSync(path.join(dir, library(arch)))) missing.push(`${name} has no ${library(arch)}`);
  }
  if (missing.length > 0) {
    throw new OperationError(
      'arch',
      `the packages fetched for linux-${arch} lack a library the program loads: ${missing.join('; ')}`,
      `run edge-classifier pack on a linux-${arch} machine (a fleet builder host)`,
    );
  }
}

/** One installed package with native code, and how it gets its binary. */
interface NativePart {
  readonly name: string;
  readonly version: string;
  /**
   * `node-gyp`: compiled from source when installed (needs the target's
   * compiler and headers); `absent`: a library the program needs is not
   * built for the target arch at all.
   */
  readonly build: 'node-gyp' | 'prebuilt' | 'absent';
}

async function packageJson(dir: string): Promise<{ name?: string; version?: string; gypfile?: boolean; scripts?: Record<string, string> }> {
  return JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8'));
}

/** Folders of the production packages (no dev dependencies), from npm's own view of the tree. */
async function productionPackages(source: string, npm: string): Promise<string[]> {
  const r = await execCapture(npm, ['ls', '--omit=dev', '--all', '--parseable'], { cwd: source, timeoutMs: 60_000 });
  if (r.spawnError) throw new OperationError('npm', `cannot run ${npm} (${r.spawnError.code})`, 'install npm (it comes with Node.js)');
  const nm = path.join(source, 'node_modules') + path.sep;
  const dirs = r.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith(nm))
    .sort();
  if (r.code !== 0 && dirs.length === 0) throw new OperationError('npm', `npm ls failed: ${lastLines(r.stderr)}`, 'run npm ci first');
  const shipped = dirs.filter((d) => !Object.keys(NOT_SHIPPED).some((name) => d.endsWith(`${path.sep}node_modules${path.sep}${name}`)));
  // Keep only the outermost folders: nested node_modules are copied with their parent.
  return shipped.filter((d, i) => !shipped.slice(0, i).some((p) => d.startsWith(p + path.sep)));
}

/** Does `dir` (recursively) hold a compiled Node.js addon (`*.node`)? */
async function holdsAddon(dir: string, depth = 0): Promise<boolean> {
  if (depth > 6) return false;
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (e.isFile() && e.name.endsWith('.node')) return true;
    if (e.isDirectory() && e.name !== 'node_modules' && (await holdsAddon(path.join(dir, e.name), depth + 1))) return true;
  }
  return false;
}

/**
 * The packages with native code among `dirs`: those that node-gyp compiles
 * at install (a `binding.gyp` at their root, `gypfile: true`, or an install
 * script running node-gyp), those that ship a compiled addon, and the
 * {@link LIBRARY_ONLY} ones (prebuilt when their library exists for `arch`).
 */
async function nativeParts(dirs: readonly string[], arch: string): Promise<NativePart[]> {
  const parts: NativePart[] = [];
  const visit = async (dir: string) => {
    let pj: Awaited<ReturnType<typeof packageJson>>;
    try {
      pj = await packageJson(dir);
    } catch {
      return;
    }
    const name = pj.name ?? path.basename(dir);
    const library = LIBRARY_ONLY[name];
    if (library) {
      parts.push({ name, version: pj.version ?? '?', build: existsSync(path.join(dir, library(arch))) ? 'prebuilt' : 'absent' });
      return;
    }
    const install = `${pj.scripts?.install ?? ''} ${pj.scripts?.preinstall ?? ''} ${pj.scripts?.postinstall ?? ''}`;
    const gyp = existsSync(path.join(dir, 'binding.gyp')) || pj.gypfile === true || /node-gyp(?!-build)/.test(install);
    const prebuilt = existsSync(path.join(dir, 'prebuilds', `linux-${arch}`));
    if (gyp && !prebuilt) parts.push({ name, version: pj.version ?? '?', build: 'node-gyp' });
    else if (prebuilt || (await holdsAddon(dir))) parts.push({ name, version: pj.version ?? '?', build: 'prebuilt' });
    const nested = path.join(dir, 'node_modules');
    for (const e of await readdir(nested, { withFileTypes: true }).catch(() => [])) {
      if (!e.isDirectory()) continue;
      if (e.name.startsWith('@')) {
        for (const s of await readdir(path.join(nested, e.name)).catch(() => [])) await visit(path.join(nested, e.name, s));
      } else await visit(path.join(nested, e.name));
    }
  };
  for (const d of dirs) await visit(d);
  return parts;
}

/** Bytes and files under `dir` (symlinks counted as links). */
async function treeSize(dir: string): Promise<{ bytes: number; files: number }> {
  let bytes = 0;
  let files = 0;
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else {
        bytes += (await lstat(p)).size;
        files++;
      }
    }
  };
  await walk(dir);
  return { bytes, files };
}

/** sha256 of each program file (`dist/**`, `package.json`), by path relative to `dir`: what the release's self-test checks. */
async function programFiles(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = { 'package.json': await sha256File(path.join(dir, 'package.json')) };
  const walk = async (rel: string) => {
    for (const e of await readdir(path.join(dir, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) await walk(r);
      else if (e.isFile()) out[r] = await sha256File(path.join(dir, r));
    }
  };
  await walk('dist');
  return out;
}

async function gitCommit(source: string): Promise<{ commit: string; dirty: boolean }> {
  const head = await execCapture('git', ['-C', source, 'rev-parse', 'HEAD'], { timeoutMs: 10_000 });
  if (head.code !== 0) return { commit: 'unknown', dirty: false };
  const status = await execCapture('git', ['-C', source, 'status', '--porcelain', '--untracked-files=no'], { timeoutMs: 10_000 });
  return { commit: head.stdout.trim(), dirty: status.stdout.trim() !== '' };
}

/**
 * Builds a release archive of the program at `source` for `arch`:
 * `edge-classifier-<version>-linux-<arch>.tar.gz` holding `release.json`
 * (the manifest), the built `dist/`, `package.json`, the lock file, the
 * unit, the production `node_modules` and the default model and sample
 * frames (`models/`, `samples/`, fetched when missing); beside it
 * `<archive>.sha256` in `sha256sum` format.
 *
 * For this machine's arch the production packages are copied from the
 * installed tree (already built for it), and the staged release must pass
 * its own self-test (load everything, classify a sample frame) before it
 * is archived. For another arch, `npm ci --os=linux --cpu=<arch>` fetches the
 * prebuilt binaries — only when no package must be compiled for the target;
 * otherwise it refuses naming each such package.
 * @throws OperationError naming the check (`dist`, `arch`, `npm`, `self-test`, `tar`).
 */
export async function pack(o: PackOptions): Promise<PackResult> {
  const npm = o.npm ?? 'npm';
  const pj = await packageJson(o.source);
  const version = checkVersion(o.version ?? pj.version ?? '');
  const arch = o.arch ?? process.arch;
  const native = process.platform === 'linux' && arch === process.arch;
  if (!existsSync(path.join(o.source, 'dist', 'cli.js'))) throw new OperationError('dist', `${o.source}/dist/cli.js is missing`, 'run npm run build first');

  const prod = await productionPackages(o.source, npm);
  const parts = await nativeParts(prod, arch);
  if (!native) {
    const compiled = parts.filter((p) => p.build === 'node-gyp');
    const absent = parts.filter((p) => p.build === 'absent');
    if (compiled.length > 0 || absent.length > 0) {
      const names = (ps: NativePart[]) => ps.map((p) => `${p.name}@${p.version}`).join(', ');
      const why = [
        ...(compiled.length > 0
          ? [`${names(compiled)} ${compiled.length === 1 ? 'is' : 'are'} compiled by node-gyp when installed, with no prebuilt binary for linux-${arch}`]
          : []),
        ...(absent.length > 0 ? [`${names(absent)} ${absent.length === 1 ? 'carries' : 'carry'} no library for linux-${arch}`] : []),
      ];
      throw new OperationError(
        'arch',
        `cannot pack for linux-${arch} on ${process.platform}-${process.arch}: ${why.join('; ')}`,
        `run edge-classifier pack on a linux-${arch} machine (a fleet builder host)`,
      );
    }
  }

  await mkdir(o.outDir, { recursive: true });
  const staging = await mkdtemp(path.join(o.outDir, '.pack-'));
  try {
    o.progress(`staging ${version} for linux-${arch}`);
    for (const f of RELEASE_FILES) {
      if (existsSync(path.join(o.source, f))) await cp(path.join(o.source, f), path.join(staging, f), { recursive: true, verbatimSymlinks: true });
    }
    // The release's own package.json carries the release version, so `--version` and the health file say it.
    const stagedPj = JSON.parse(await readFile(path.join(staging, 'package.json'), 'utf8')) as Record<string, unknown>;
    stagedPj.version = version;
    await writeFile(path.join(staging, 'package.json'), `${JSON.stringify(stagedPj, null, 2)}\n`);

    // The default model and the sample frames the self-tests classify.
    const fetchScript = path.join(o.source, 'scripts', 'fetch-assets.mjs');
    const assets = JSON.parse(await readFile(path.join(o.source, 'models', 'manifest.json'), 'utf8')) as { files: { file: string }[] };
    if (existsSync(fetchScript)) {
      const { fetchAssets } = (await import(pathToFileURL(fetchScript).href)) as { fetchAssets: (o: { log: (l: string) => void }) => Promise<void> };
      await fetchAssets({ log: () => undefined }).catch((err: Error) => {
        throw new OperationError('assets', `cannot get the default model and sample frames: ${err.message}`);
      });
    }
    await mkdir(path.join(staging, 'models'), { recursive: true });
    await cp(path.join(o.source, 'models', 'manifest.json'), path.join(staging, 'models', 'manifest.json'));
    for (const a of assets.files) {
      if (!existsSync(path.join(o.source, a.file))) throw new OperationError('assets', `${a.file} is missing`, 'run npm run fetch-assets');
      await mkdir(path.dirname(path.join(staging, a.file)), { recursive: true });
      await cp(path.join(o.source, a.file), path.join(staging, a.file));
    }

    if (native) {
      o.progress(`copying ${prod.length} production packages`);
      for (const d of prod) {
        const rel = path.relative(o.source, d);
        await cp(d, path.join(staging, rel), { recursive: true, verbatimSymlinks: true });
      }
    } else {
      o.progress(`npm ci --omit=dev --os=linux --cpu=${arch} (prebuilt binaries)`);
      const r = await execCapture(npm, ['ci', '--omit=dev', '--os=linux', `--cpu=${arch}`, '--libc=glibc', '--ignore-scripts', '--no-audit', '--no-fund'], {
        cwd: staging,
        timeoutMs: 600_000,
      });
      if (r.code !== 0) throw new OperationError('npm', `npm ci for linux-${arch} failed: ${lastLines(r.stderr)}`, 'check the network or the npm cache');
      await finishFetchedTree(staging, arch);
    }

    await writeFile(path.join(staging, 'program-files.json'), `${JSON.stringify(await programFiles(staging))}\n`);
    const { commit, dirty } = o.commit ?? (await gitCommit(o.source));
    const size = await treeSize(staging);
    const manifest: ReleaseManifest = {
      name: 'edge-classifier',
      format: 1,
      version,
      commit,
      dirty,
      platform: 'linux',
      arch,
      // Another arch: the packages are prebuilt for N-API or this ABI; the device checks it against its own node.
      node_abi: process.versions.modules,
      node_version: process.version,
      built_at: new Date().toISOString(),
      unpacked_bytes: size.bytes,
      files: size.files + 1,
      native: parts.map((p) => `${p.name}@${p.version}`),
    };
    await writeFile(path.join(staging, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);

    if (native) {
      o.progress('self-test of the staged release');
      await selfTestRelease({
        dir: staging,
        node: process.execPath,
        source: path.join(staging, 'samples'),
        samples: [path.join(staging, 'samples')],
        progress: o.progress,
      });
    }

    const name = archiveName(version, arch);
    const archive = path.join(o.outDir, name);
    const partial = path.join(o.outDir, `.${name}.partial`);
    o.progress(`writing ${name}`);
    const tar = await execCapture('tar', ['-C', staging, '-czf', partial, '--owner=0', '--group=0', '--numeric-owner', '.'], { timeoutMs: 600_000 });
    if (tar.code !== 0) {
      await rm(partial, { force: true });
      throw new OperationError('tar', `tar failed: ${lastLines(tar.stderr)}`, tar.stderr.includes('No space') ? `free space in ${o.outDir}` : undefined);
    }
    await rename(partial, archive);
    const sha256 = await sha256File(archive);
    const sumFile = `${archive}.sha256`;
    await writeFileAtomic(sumFile, `${sha256}  ${name}\n`);
    return { archive, sha256File: sumFile, sha256, manifest };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
