import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, readlink, rename, rm, stat, statfs } from 'node:fs/promises';
import path from 'node:path';
import { acquireLock, fsyncDir, OperationError, sha256File, switchSymlink } from './atomic.js';
import type { DoctorCheck } from './doctor.js';
import { execCapture, lastLines } from './exec.js';
import { type Progress, restartAndWaitReady, waitForHealthy } from './gate.js';
import { type HealthReport, healthJson } from './health.js';
import { currentSequence, History, type HistoryEvent } from './history.js';
import type { Layout } from './layout.js';
import { checkVersion } from './layout.js';
import { MANIFEST_FILE, parseManifest, type ReleaseManifest, readManifest } from './manifest.js';
import { selfTestRelease } from './self-test.js';
import type { ServiceManager } from './service-manager.js';
import { type NodeIdentity, nodeIdentity, serviceNode } from './unit-file.js';

/** Space kept free beyond the unpacked size, bytes: the daemon and journald still need room. */
const FREE_MARGIN_BYTES = 32 * 1024 * 1024;
/** Per-file allowance for file system blocks and inodes, bytes (many small files in node_modules). */
const PER_FILE_OVERHEAD = 2048;

/** What the release and model commands share. */
export interface DeviceContext {
  readonly layout: Layout;
  readonly manager: ServiceManager;
  readonly progress: Progress;
  /** `--node`: the Node.js the unit runs, instead of reading the unit's ExecStart. */
  readonly node?: string;
  readonly env?: NodeJS.ProcessEnv;
}

/** Outcome of an activation, rollback or model switch: what the CLI prints and `fleet` reads. */
export interface SwitchResult {
  readonly ok: boolean;
  readonly action: 'activate' | 'rollback' | 'model-install' | 'model-rollback';
  /** The release (or model sha256) switched to. */
  readonly target: string;
  /** What was current before. */
  readonly previous: string | null;
  /** The gate failed and the previous one was put back. */
  readonly rolled_back: boolean;
  /** After a rollback: whether the previous one passed the health gate again. */
  readonly rollback_healthy?: boolean;
  /** The device ends healthy: on the target, or back on the previous one after a rollback. */
  readonly healthy_at_end: boolean;
  /** The check that failed and why. */
  readonly check?: string;
  readonly reason?: string;
  readonly fix?: string;
  /** The daemon's health at the end. */
  readonly health?: Omit<HealthReport, 'record'>;
  /** After a failed gate: the `doctor` checks that did not pass, for the report. */
  readonly doctor?: readonly DoctorCheck[];
}

/** The doctor's warn and fail lines, for the report of a failed gate (each also as a progress line). */
export async function doctorFindings(ctx: DeviceContext): Promise<DoctorCheck[]> {
  try {
    const { doctor } = await import('./doctor.js');
    const found = (await doctor({ layout: ctx.layout, node: ctx.node, env: ctx.env })).checks.filter((c) => c.status !== 'ok');
    for (const c of found) ctx.progress(`doctor: ${c.status} ${c.name}: ${c.detail}${c.fix ? ` — fix: ${c.fix}` : ''}`);
    return found;
  } catch (err) {
    ctx.progress(`doctor could not run: ${(err as Error).message}`);
    return [];
  }
}

/** The version `current` points at, or null when there is no `current`. */
async function currentVersion(layout: Layout): Promise<string | null> {
  try {
    return path.basename(await readlink(layout.current));
  } catch {
    return null;
  }
}

/** Installed (complete) releases: folders under `releases/` holding a readable manifest; hidden `.install-*` folders never count. */
async function installedReleases(layout: Layout): Promise<Map<string, ReleaseManifest>> {
  const out = new Map<string, ReleaseManifest>();
  for (const name of await readdir(layout.releases).catch(() => [] as string[])) {
    if (name.startsWith('.')) continue;
    try {
      const m = await readManifest(layout.release(name));
      if (m.version === name) out.set(name, m);
    } catch {
      // not a release folder
    }
  }
  return out;
}

/** The previous release: the last one that was current before the current one and is still installed. */
async function previousVersion(layout: Layout, events: readonly HistoryEvent[], current: string | null): Promise<string | null> {
  const installed = await installedReleases(layout);
  const seq = currentSequence(events).filter((v) => v !== current && installed.has(v));
  return seq[seq.length - 1] ?? null;
}

/**
 * Refuses a release whose native parts do not fit the Node.js that will run
 * it: another arch, or another NODE_MODULE_VERSION (native addons built
 * against one ABI fail to load under another).
 * @throws OperationError (`arch` or `node-abi`).
 */
function checkCompatible(m: ReleaseManifest, node: NodeIdentity, nodeSource: string): void {
  if (m.platform !== 'linux' || m.arch !== node.arch) {
    throw new OperationError(
      'arch',
      `release ${m.version} is built for ${m.platform}-${m.arch}, but the service's Node.js (${node.path}, from ${nodeSource}) runs on linux-${node.arch}`,
      `use the edge-classifier-${m.version}-linux-${node.arch}.tar.gz archive, packed on a linux-${node.arch} machine`,
    );
  }
  if (m.node_abi !== node.abi) {
    throw new OperationError(
      'node-abi',
      `release ${m.version} was built with Node.js ${m.node_version} (ABI ${m.node_abi}), but the service runs ${node.path} ${node.version} (ABI ${node.abi}, from ${nodeSource}): its native modules would not load`,
      `pack the release with Node.js ${m.node_version.split('.')[0]} → use ${node.version.split('.')[0]}, or point the unit's ExecStart at a Node.js with ABI ${m.node_abi}`,
    );
  }
}

async function serviceNodeIdentity(ctx: DeviceContext): Promise<{ id: NodeIdentity; source: string }> {
  const node = serviceNode(ctx.layout, ctx.node);
  try {
    return {
      id: await nodeIdentity(node.path),
      source: node.source === 'unit' ? `ExecStart of ${ctx.layout.unitFile}` : node.source === 'flag' ? '--node' : 'this process (no unit installed)',
    };
  } catch (err) {
    throw new OperationError('node', (err as Error).message, node.source === 'unit' ? `fix ExecStart= in ${ctx.layout.unitFile}` : undefined);
  }
}

/** Reads the expected sha256 from `<archive>.sha256` (`sha256sum` format, or the bare hex). */
async function expectedSha256(archive: string): Promise<string> {
  const file = `${archive}.sha256`;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new OperationError('checksum', `no checksum file ${file} beside the archive`, 'copy the .sha256 file made by edge-classifier pack with the archive');
  }
  const hex = text.trim().split(/\s+/)[0]?.toLowerCase() ?? '';
  if (!/^[0-9a-f]{64}$/.test(hex))
    throw new OperationError('checksum', `${file} does not hold a sha256 (64 hex digits), got ${JSON.stringify(text.slice(0, 80))}`);
  return hex;
}

/** The manifest inside an archive, read without unpacking the rest. */
async function archiveManifest(archive: string): Promise<ReleaseManifest> {
  let last = '';
  for (const member of [`./${MANIFEST_FILE}`, MANIFEST_FILE]) {
    const r = await execCapture('tar', ['-xzOf', archive, member], { timeoutMs: 300_000, maxOutput: 1 << 20 });
    if (r.code === 0) {
      try {
        return parseManifest(JSON.parse(r.stdout), `${path.basename(archive)}:${MANIFEST_FILE}`);
      } catch (err) {
        throw new OperationError('manifest', (err as Error).message);
      }
    }
    last = lastLines(r.stderr);
    // A damaged stream: no point trying the other member name.
    if (/unexpected|corrupt|invalid|not in gzip|EOF|Error is not recoverable/i.test(last) && !/Not found in archive/i.test(last)) break;
  }
  if (/Not found in archive/i.test(last))
    throw new OperationError('manifest', `${archive} holds no ${MANIFEST_FILE}: not a release archive made by edge-classifier pack`);
  throw new OperationError('archive', `${archive} cannot be read: ${last} (truncated or not a .tar.gz)`, 'copy the archive again');
}

/** What {@link installRelease} did. */
export interface InstallResult {
  readonly version: string;
  readonly dir: string;
  readonly manifest: ReleaseManifest;
  /** True when the same build was installed already (nothing changed). */
  readonly already: boolean;
}

/**
 * `release install ARCHIVE`: checks the archive's sha256 against
 * `ARCHIVE.sha256`, its manifest against the Node.js the unit runs (arch and
 * ABI) and the free space, unpacks it into a hidden folder beside the
 * releases, runs the release's self-test there with the live configuration,
 * model and sample frames, and only then renames the folder into
 * `releases/<version>/` — the one step that makes it activatable, so a
 * failure or a kill at any earlier moment leaves nothing that `activate`
 * accepts (the hidden folder is removed by the next install).
 * @throws OperationError naming the failed check; recorded in the history.
 */
export async function installRelease(ctx: DeviceContext, archive: string): Promise<InstallResult> {
  const { layout, progress } = ctx;
  const history = new History(layout.historyFile);
  await mkdir(layout.releases, { recursive: true });
  await mkdir(layout.stateDir, { recursive: true });
  const unlock = await acquireLock(layout.lockFile, `release install ${path.basename(archive)}`);
  let version: string | undefined;
  try {
    if (!existsSync(archive)) throw new OperationError('archive', `${archive}: no such file`);
    const expected = await expectedSha256(archive);
    const actual = await sha256File(archive);
    if (actual !== expected) {
      throw new OperationError(
        'checksum',
        `${path.basename(archive)} has sha256 ${actual}, but ${path.basename(archive)}.sha256 says ${expected}: the archive is damaged or incomplete`,
        'copy the archive again (and its .sha256)',
      );
    }
    progress(`checksum ok (sha256 ${actual.slice(0, 12)}…)`);
    const manifest = await archiveManifest(archive);
    version = manifest.version;
    const node = await serviceNodeIdentity(ctx);
    checkCompatible(manifest, node.id, node.source);
    progress(`release ${version}: linux-${manifest.arch}, Node.js ABI ${manifest.node_abi} matches ${node.id.path} ${node.id.version}`);

    const dir = layout.release(version);
    if (existsSync(dir)) {
      const have = await readManifest(dir).catch(() => undefined);
      if (have && have.commit === manifest.commit && have.built_at === manifest.built_at) {
        progress(`release ${version} is already installed`);
        return { version, dir, manifest, already: true };
      }
      throw new OperationError(
        'version',
        `release ${version} is already installed from another build (commit ${have?.commit.slice(0, 12) ?? '?'}, built ${have?.built_at ?? '?'})`,
        `pack it with another version, or remove the installed one first with release prune (it must not be current or previous)`,
      );
    }

    await removeLeftovers(layout, progress);

    const need = manifest.unpacked_bytes + manifest.files * PER_FILE_OVERHEAD + FREE_MARGIN_BYTES;
    const fs = await statfs(layout.releases);
    const free = fs.bavail * fs.bsize;
    if (free < need) {
      throw new OperationError(
        'disk',
        `not enough free space in ${layout.releases}: release ${version} needs ${mib(need)} MiB (unpacked ${mib(manifest.unpacked_bytes)} MiB + margin), ${mib(free)} MiB free`,
        'remove old releases with edge-classifier release prune --keep 2, or free space',
      );
    }

    const tmp = path.join(layout.releases, `.install-${version}-${process.pid}`);
    await mkdir(tmp);
    try {
      progress(`unpacking into ${path.basename(tmp)}`);
      const tar = await execCapture('tar', ['-xzf', archive, '-C', tmp, '--no-same-owner', '--no-overwrite-dir'], { timeoutMs: 900_000 });
      if (tar.code !== 0) {
        const text = lastLines(tar.stderr);
        if (/No space left/i.test(text))
          throw new OperationError(
            'disk',
            `the disk filled up while unpacking release ${version}: ${text}`,
            'remove old releases with edge-classifier release prune --keep 2, or free space',
          );
        throw new OperationError('archive', `unpacking ${path.basename(archive)} failed: ${text}`, 'copy the archive again');
      }
      const unpacked = await readManifest(tmp).catch((err: Error) => {
        throw new OperationError('archive', `the unpacked release has no usable manifest: ${err.message}`);
      });
      if (unpacked.version !== version || unpacked.built_at !== manifest.built_at)
        throw new OperationError('archive', 'the unpacked manifest differs from the one read before unpacking');

      await selfTestRelease({
        dir: tmp,
        node: node.id.path,
        config: existsSync(layout.configFile) ? layout.configFile : undefined,
        samples: [layout.samplesDir, path.join(tmp, 'samples')],
        progress,
        env: ctx.env,
      });

      // Data on disk before the name that makes it activatable (power cuts on SD cards).
      await execCapture('sync', ['-f', tmp], { timeoutMs: 300_000 });
      await rename(tmp, dir);
      await fsyncDir(layout.releases);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
    await history.append({ event: 'installed', version, detail: { sha256: actual, commit: manifest.commit, built_at: manifest.built_at } });
    progress(`installed release ${version} in ${dir}`);
    return { version, dir, manifest, already: false };
  } catch (err) {
    if (err instanceof OperationError && err.check !== 'lock') {
      await history
        .append({ event: 'install-failed', version, check: err.check, reason: err.message, detail: { archive: path.basename(archive) } })
        .catch(() => undefined);
    }
    throw err;
  } finally {
    await unlock();
  }
}

/**
 * Removes what an install or prune that was killed left: hidden
 * `.install-*` and `.trash-*` folders (nothing else runs while we hold the
 * lock). Each is renamed to a `.trash-*` name first; a `tar` orphaned by a
 * killed install may still be writing into it, so a folder that cannot be
 * removed yet is left for the next time — it is hidden and never
 * activatable.
 */
async function removeLeftovers(layout: Layout, progress: Progress): Promise<void> {
  for (const name of await readdir(layout.releases)) {
    if (!name.startsWith('.install-') && !name.startsWith('.trash-')) continue;
    progress(`removing ${name} left by an interrupted command`);
    let dir = path.join(layout.releases, name);
    if (name.startsWith('.install-')) {
      const trash = path.join(layout.releases, `.trash-${name.slice('.install-'.length)}`);
      await rename(dir, trash).catch(() => undefined);
      if (existsSync(trash)) dir = trash;
    }
    await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 }).catch((err: Error) =>
      progress(`could not remove ${path.basename(dir)} yet (${err.message}); it is left for the next install`),
    );
  }
}

const mib = (b: number) => Math.ceil(b / (1024 * 1024));

/** Options of {@link activateRelease}. */
export interface ActivateOptions {
  readonly healthTimeoutMs: number;
  /** Set by `release rollback`, for the history and the output. */
  readonly rollback?: boolean;
}

/**
 * `release activate VERSION`: points `current` at the release with one
 * rename(2), restarts the service and holds it to the health gate: READY
 * within the unit's start timeout, then the daemon's own health file
 * showing the new process ready, classifying and with no error problem
 * within `healthTimeoutMs`. On failure it points `current` back at the
 * previous release, restarts, checks that one the same way, and records why
 * in the history.
 * @throws OperationError only when it cannot even start (not installed,
 * incompatible, locked); a failed gate is a result with `ok: false`.
 */
export async function activateRelease(ctx: DeviceContext, version: string, o: ActivateOptions): Promise<SwitchResult> {
  const { layout, progress, manager } = ctx;
  const action = o.rollback ? 'rollback' : 'activate';
  const history = new History(layout.historyFile);
  checkVersion(version);
  const unlock = await acquireLock(layout.lockFile, `release ${action} ${version}`);
  try {
    const installed = await installedReleases(layout);
    const manifest = installed.get(version);
    if (!manifest) {
      throw new OperationError(
        'not-installed',
        `release ${version} is not installed (installed: ${[...installed.keys()].join(', ') || 'none'})`,
        'install it first with edge-classifier release install ARCHIVE',
      );
    }
    const node = await serviceNodeIdentity(ctx);
    checkCompatible(manifest, node.id, node.source);
    const previous = await currentVersion(layout);
    const gate = { manager, healthFile: layout.healthFile, healthTimeoutMs: o.healthTimeoutMs, progress };
    if (previous === version) {
      const st = await manager.show();
      const running = st.activeState === 'active' && st.mainPid > 0;
      progress(`release ${version} is already current: ${running ? 'checking its health' : 'starting it'}`);
      try {
        const pid = running ? st.mainPid : await restartAndWaitReady(gate);
        const health = await waitForHealthy(gate, { pid });
        return { ok: true, action, target: version, previous, rolled_back: false, healthy_at_end: true, health: healthJson(health) };
      } catch (err) {
        if (!(err instanceof OperationError)) throw err;
        return { ok: false, action, target: version, previous, rolled_back: false, healthy_at_end: false, check: err.check, reason: err.message, fix: err.fix };
      }
    }

    progress(`switching current: ${previous ?? '(none)'} → ${version}`);
    // Recorded first: if this process dies before the gate's verdict, the list shows it unconfirmed.
    await history.append({ event: 'activating', version, previous });
    await switchSymlink(layout.current, path.join('releases', version));
    try {
      const pid = await restartAndWaitReady(gate);
      const health = await waitForHealthy(gate, { pid });
      await history.append({
        event: 'activated',
        version,
        previous,
        detail: { rollback: o.rollback === true, fps: health.fps, classified: health.classified },
      });
      progress(`release ${version} is current and healthy`);
      return { ok: true, action, target: version, previous, rolled_back: false, healthy_at_end: true, health: healthJson(health) };
    } catch (err) {
      if (!(err instanceof OperationError)) throw err;
      progress(`health gate failed: ${err.message}`);
      if (previous === null) {
        await rm(layout.current, { force: true });
        await manager.stop().catch(() => undefined);
        await history.append({ event: 'activation-failed', version, previous, check: err.check, reason: err.message });
        return {
          ok: false,
          action,
          target: version,
          previous,
          rolled_back: false,
          healthy_at_end: false,
          check: err.check,
          reason: `${err.message}; there is no previous release to go back to: the service is stopped and current removed`,
          fix: err.fix,
        };
      }
      progress(`rolling back: current → ${previous}`);
      await switchSymlink(layout.current, path.join('releases', previous));
      let rollbackHealthy = true;
      let health: HealthReport | undefined;
      let rollbackReason: string | undefined;
      try {
        const pid = await restartAndWaitReady(gate);
        health = await waitForHealthy(gate, { pid });
      } catch (e2) {
        rollbackHealthy = false;
        rollbackReason = (e2 as Error).message;
        progress(`the previous release ${previous} is not healthy either: ${rollbackReason}`);
      }
      await history.append({
        event: 'rolled-back',
        version,
        to: previous,
        check: err.check,
        reason: err.message,
        detail: { rollback_healthy: rollbackHealthy, ...(rollbackReason ? { rollback_reason: rollbackReason } : {}) },
      });
      const findings = await doctorFindings(ctx);
      return {
        ok: false,
        action,
        target: version,
        previous,
        rolled_back: true,
        rollback_healthy: rollbackHealthy,
        healthy_at_end: rollbackHealthy,
        check: err.check,
        reason: err.message,
        fix: err.fix,
        health: health ? healthJson(health) : undefined,
        doctor: findings,
      };
    }
  } finally {
    await unlock();
  }
}

/**
 * `release rollback`: activates the previous release (the last one that was
 * current before this one and is still installed), with the same gate.
 * @throws OperationError (`no-previous`) when there is none.
 */
export async function rollbackRelease(ctx: DeviceContext, o: Omit<ActivateOptions, 'rollback'>): Promise<SwitchResult> {
  const events = await new History(ctx.layout.historyFile).read();
  const current = await currentVersion(ctx.layout);
  const previous = await previousVersion(ctx.layout, events, current);
  if (previous === null)
    throw new OperationError(
      'no-previous',
      `there is no previous release to roll back to (current: ${current ?? 'none'})`,
      'install and activate another release',
    );
  return activateRelease(ctx, previous, { ...o, rollback: true });
}

/** One installed release as `release list` shows it. */
interface ReleaseEntry {
  readonly version: string;
  readonly commit: string;
  readonly arch: string;
  readonly node_abi: string;
  readonly built_at: string;
  readonly installed_at: string | null;
  /** `current`, `previous`, `failed` (its last activation was rolled back), or `installed`. */
  readonly status: 'current' | 'previous' | 'failed' | 'installed';
  /** The last activation result for it, if any. */
  readonly last_result: string | null;
}

/** What `release list` prints. */
export interface ReleaseListing {
  readonly current: string | null;
  readonly previous: string | null;
  readonly releases: ReleaseEntry[];
  readonly history: HistoryEvent[];
}

/** `release list`: installed releases (newest install first), which is current and previous, and the history. */
export async function listReleases(layout: Layout, historyLimit = 20): Promise<ReleaseListing> {
  const events = await new History(layout.historyFile).read();
  const current = await currentVersion(layout);
  const previous = await previousVersion(layout, events, current);
  const installed = await installedReleases(layout);
  const entries: ReleaseEntry[] = [];
  for (const [version, m] of installed) {
    const mine = events.filter((e) => e.version === version);
    const installedAt = [...mine].reverse().find((e) => e.event === 'installed')?.at ?? (await stat(layout.release(version))).mtime.toISOString();
    const lastSwitch = [...mine].reverse().find((e) => ['activating', 'activated', 'rolled-back', 'activation-failed'].includes(e.event));
    const result =
      lastSwitch === undefined
        ? null
        : lastSwitch.event === 'activated'
          ? `activated ${lastSwitch.at}`
          : lastSwitch.event === 'activating'
            ? `unconfirmed: the activation begun ${lastSwitch.at} did not finish`
            : `failed ${lastSwitch.at}: ${lastSwitch.reason}`;
    const status =
      version === current
        ? 'current'
        : version === previous
          ? 'previous'
          : lastSwitch && lastSwitch.event !== 'activated' && lastSwitch.event !== 'activating'
            ? 'failed'
            : 'installed';
    entries.push({
      version,
      commit: m.commit,
      arch: m.arch,
      node_abi: m.node_abi,
      built_at: m.built_at,
      installed_at: installedAt,
      status,
      last_result: result,
    });
  }
  entries.sort((a, b) => (b.installed_at ?? '').localeCompare(a.installed_at ?? ''));
  return { current, previous, releases: entries, history: events.slice(-historyLimit) };
}

/**
 * `release prune --keep N`: removes installed releases beyond the `keep`
 * most recently installed, never the current or the previous one. Each is
 * first renamed to a hidden `.trash-*` name (so a kill mid-removal leaves
 * nothing that looks installed), then deleted.
 * @returns the versions removed.
 */
export async function pruneReleases(ctx: DeviceContext, keep: number): Promise<string[]> {
  if (!Number.isInteger(keep) || keep < 0) throw new OperationError('usage', `--keep expects a whole number ≥ 0, got ${keep}`);
  const unlock = await acquireLock(ctx.layout.lockFile, `release prune --keep ${keep}`);
  try {
    const listing = await listReleases(ctx.layout, 0);
    const history = new History(ctx.layout.historyFile);
    const removed: string[] = [];
    for (const [i, r] of listing.releases.entries()) {
      if (i < keep || r.status === 'current' || r.status === 'previous') continue;
      const trash = path.join(ctx.layout.releases, `.trash-${r.version}-${process.pid}`);
      await rename(ctx.layout.release(r.version), trash);
      await rm(trash, { recursive: true, force: true });
      await history.append({ event: 'pruned', version: r.version });
      ctx.progress(`removed release ${r.version}`);
      removed.push(r.version);
    }
    return removed;
  } finally {
    await unlock();
  }
}
