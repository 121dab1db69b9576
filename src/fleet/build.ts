/**
 * `fleet build --arch ARCH`: build a release archive on a device of that
 * arch (a `builder: true` host), for the parts that must be compiled there
 * (`edge-classifier pack` refuses to cross-build them and names them).
 *
 * What goes to the builder: the files git tracks in this checkout (as they
 * are in the working tree) and the program built here (`dist/`, plain
 * JavaScript: the builder does not run the TypeScript compiler). There
 * `npm ci` installs the dependencies for the builder's arch and Node.js —
 * kept for the next build while package-lock.json and the Node.js ABI stay
 * the same, since a full install takes minutes on a Pi — then
 * `edge-classifier pack`; the archive and its .sha256 come back and are
 * checked here.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { archOfMachine, lastLine, RemoteDevice } from './device.js';
import type { FleetHost } from './inventory.js';
import { type ProgressSink, type ReleaseArchive, readReleaseArchive } from './push.js';
import { CancelledError, classifySshFailure, SshError, SshSession } from './ssh.js';
import { TransferError } from './transfer.js';

/** The checkout fleet runs from (holds package.json). */
const SOURCE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Build folder on the builder, relative to the login's home. */
const BUILD_DIR = '.cache/edge-classifier/build';

class BuildError extends Error {
  constructor(
    message: string,
    readonly hint: string,
  ) {
    super(message);
    this.name = 'BuildError';
  }
}

export interface BuildOptions {
  /** Node.js arch to build for: arm64, x64, arm. */
  readonly arch: string;
  /** Use this builder host (by name); default the first builder of that arch. */
  readonly builder?: string;
  /** Local folder for the archive. */
  readonly out: string;
  /** Passed to `pack --version`. */
  readonly version?: string;
  readonly controlDir: string;
  readonly acceptNewHostKeys: boolean;
  readonly progress: ProgressSink;
  readonly signal: AbortSignal;
}

/** The checkout's commit, and whether tracked files differ from it. */
function sourceCommit(root: string = SOURCE_ROOT): { commit: string; dirty: boolean } {
  const git = (args: string[]): string => execFileSync('git', ['-C', root, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  return { commit: git(['rev-parse', 'HEAD']), dirty: git(['status', '--porcelain', '--untracked-files=no']) !== '' };
}

/** Every file under `root/sub`, as paths relative to `root`. */
function listTree(root: string, sub: string): string[] {
  return readdirSync(path.join(root, sub), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? listTree(root, path.join(sub, e.name)) : e.isFile() ? [path.join(sub, e.name)] : [],
  );
}

/** The files git tracks in the checkout (paths relative to it). Throws BuildError outside a git checkout. */
function sourceFiles(root: string = SOURCE_ROOT): string[] {
  try {
    return execFileSync('git', ['-C', root, 'ls-files', '-z'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
      .split('\0')
      .filter((f) => f !== '');
  } catch (err) {
    throw new BuildError(
      `fleet build sends the source of a git checkout, and ${root} is not one (${lastLine((err as { stderr?: string }).stderr ?? '') || (err as Error).message})`,
      'run it from a clone of edge-classifier',
    );
  }
}

function rsync(args: string[], signal: AbortSignal, stdin?: string): Promise<{ code: number | null; stderr: string; cancelled: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn('rsync', args, { stdio: [stdin !== undefined ? 'pipe' : 'ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let cancelled = false;
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    if (stdin !== undefined) child.stdin!.end(stdin);
    const abort = (): void => {
      cancelled = true;
      child.kill('SIGTERM');
    };
    signal.addEventListener('abort', abort, { once: true });
    child.once('error', (e) => reject(new TransferError(`cannot run rsync: ${e.message}`, 'install rsync')));
    child.once('close', (code) => {
      signal.removeEventListener('abort', abort);
      resolve({ code, stderr, cancelled });
    });
  });
}

/**
 * Picks a builder for `options.arch`, builds there and fetches the archive.
 * Resolves with the checked archive; rejects with BuildError (no builder,
 * build failed), SshError or TransferError.
 */
export async function buildOnBuilder(hosts: readonly FleetHost[], options: BuildOptions): Promise<{ archive: ReleaseArchive; builder: string }> {
  const candidates = hosts.filter((h) => h.builder && (options.builder === undefined || h.name === options.builder));
  if (candidates.length === 0) {
    throw new BuildError(
      options.builder !== undefined ? `no builder host named '${options.builder}' in the inventory` : 'no host has builder: true in the inventory',
      `mark a device of arch ${options.arch} with builder: true (it needs Node.js 20+, npm, python3, make and g++)`,
    );
  }
  const tried: string[] = [];
  for (const host of candidates) {
    const session = new SshSession(host, { controlDir: options.controlDir, acceptNewHostKeys: options.acceptNewHostKeys });
    try {
      options.progress.update(host.name, 'connecting');
      await session.connect(options.signal);
      const facts = await new RemoteDevice(session).facts(options.signal);
      const arch = archOfMachine(facts.machine);
      if (arch !== options.arch) {
        tried.push(`${host.name} is ${arch}`);
        options.progress.update(host.name, `not ${options.arch}: skipped`);
        continue;
      }
      return { archive: await buildOn(session, facts.home, options), builder: host.name };
    } catch (err) {
      if (err instanceof SshError) {
        tried.push(`${host.name}: ${err.message}`);
        options.progress.update(host.name, err.message);
        if (options.builder !== undefined) throw err;
        continue;
      }
      throw err;
    } finally {
      await session.close();
    }
  }
  throw new BuildError(`no reachable builder of arch ${options.arch} (${tried.join('; ')})`, `mark a device of arch ${options.arch} with builder: true`);
}

async function buildOn(session: SshSession, home: string, options: BuildOptions): Promise<ReleaseArchive> {
  const host = session.host;
  const note = (t: string): void => options.progress.update(host.name, t);
  const dir = `${home.replace(/\/+$/, '')}/${BUILD_DIR}`;
  if (!existsSync(path.join(SOURCE_ROOT, 'dist', 'cli.js'))) throw new BuildError(`${SOURCE_ROOT}/dist is not built`, 'run npm run build first');
  const files = [...sourceFiles().filter((f) => !f.startsWith('dist/')), ...listTree(SOURCE_ROOT, 'dist')];
  note(`sending the source (${files.length} files)`);
  // A fresh source tree each time, but the installed node_modules stays.
  const prep = await session.run(
    [
      'sh',
      '-c',
      'mkdir -p "$1/src" && find "$1/src" -mindepth 1 -maxdepth 1 ! -name node_modules -exec rm -rf {} + && rm -rf "$1/out" && mkdir -p "$1/out"',
      'sh',
      dir,
    ],
    { signal: options.signal },
  );
  if (prep.code !== 0) throw new BuildError(`cannot prepare ${dir} on ${host.name}: ${lastLine(prep.stderr)}`, 'check the disk and permissions of the login');
  const sent = await rsync(
    ['-e', session.rsyncShell(), '--from0', '--files-from=-', '--times', '--', `${SOURCE_ROOT}/`, session.remotePath(`${dir}/src/`)],
    options.signal,
    `${files.join('\0')}\0`,
  );
  if (sent.cancelled) throw new CancelledError(`sending the source to ${host.name}`);
  if (sent.code !== 0)
    throw classifySshFailure(host, sent.stderr) ?? new TransferError(`sending the source to ${host.name} failed: ${lastLine(sent.stderr)}`, 'try again');

  // `installed` records the lockfile and Node.js ABI node_modules was installed for.
  const script =
    'set -e; d=$1; shift; cd "$d/src"; ' +
    'want="$(sha256sum package-lock.json | cut -d" " -f1) $(node -p process.versions.modules)"; ' +
    'if [ -d node_modules ] && [ "$(cat ../installed 2>/dev/null)" = "$want" ]; then echo "dependencies up to date"; ' +
    'else echo "npm ci"; rm -f ../installed; npm ci --prefer-offline --no-audit --no-fund >&2; echo "$want" > ../installed; fi; ' +
    'echo "pack"; node dist/cli.js pack --out "$d/out" "$@" >&2; ' +
    'ls "$d/out"/*.tar.gz';
  // The builder's copy has no .git: the commit (and uncommitted changes) go to pack as flags.
  const { commit, dirty } = sourceCommit();
  const packArgs = [...(options.version !== undefined ? ['--version', options.version] : []), '--commit', commit, ...(dirty ? ['--dirty'] : [])];
  const r = await session.run(['sh', '-c', script, 'sh', dir, ...packArgs], {
    signal: options.signal,
    onStdoutLine: (l) => l.trim() !== '' && note(l.trim()),
    onStderrLine: (l) => l.trim() !== '' && note(l.trim().slice(0, 100)),
  });
  if (r.code !== 0) {
    throw new BuildError(
      `build on ${host.name} failed (exit ${r.code}): ${lastLine(r.stderr)}`,
      `look at the full output: ssh ${host.name} and run the build in ~/${BUILD_DIR}/src (npm ci && node dist/cli.js pack)`,
    );
  }
  const remoteArchive = lastLine(r.stdout);
  mkdirSync(options.out, { recursive: true });
  note(`fetching ${path.basename(remoteArchive)}`);
  const got = await rsync(
    [
      '-e',
      session.rsyncShell(),
      '--times',
      '--partial',
      '--',
      session.remotePath(remoteArchive),
      session.remotePath(`${remoteArchive}.sha256`),
      `${path.resolve(options.out)}/`,
    ],
    options.signal,
  );
  if (got.cancelled) throw new CancelledError(`fetching from ${host.name}`);
  if (got.code !== 0)
    throw classifySshFailure(host, got.stderr) ?? new TransferError(`fetching ${remoteArchive} from ${host.name} failed: ${lastLine(got.stderr)}`, 'try again');
  const archive = await readReleaseArchive(path.join(options.out, path.basename(remoteArchive)));
  note(`built ${path.basename(archive.file)}`);
  return archive;
}
