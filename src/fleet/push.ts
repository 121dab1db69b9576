/**
 * One host's part of a rollout: reach it, send the file, let the device
 * install and activate it (its own health gate rolls it back), and say
 * where the host ended.
 *
 * A release: `release install STAGED` (checks sha256, arch, Node.js ABI,
 * self-test; a refused archive changes nothing), then `release activate
 * VERSION` (switch, restart, health gate, rollback by itself). A model:
 * `model install STAGED` (checks, switch, reload without restart, gate,
 * rollback). Transfers are resumable and land under their name only when
 * complete, so an interrupted push leaves the device on what it ran.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import {
  archOfMachine,
  type DeviceActionResult,
  DeviceCommandError,
  type DeviceFacts,
  type DeviceHealth,
  lastLine,
  type ReleaseList,
  RemoteDevice,
} from './device.js';
import type { FleetHost } from './inventory.js';
import type { TaskResult } from './rollout.js';
import { CancelledError, SshError, SshSession } from './ssh.js';
import { removeStaged, TransferError, type TransferResult, upload } from './transfer.js';

/** Where a host ended, as the summary table says it. */
type HostStatus =
  | 'updated'
  | 'unchanged'
  | 'rolled back'
  | 'rollback unhealthy'
  | 'refused'
  | 'unreachable'
  | 'host key changed'
  | 'host key unknown'
  | 'login refused'
  | 'ssh failed'
  | 'not set up'
  | 'interrupted'
  | 'transfer failed'
  | 'link lost'
  | 'failed';

/** Statuses that count as success for the rollout. */
const OK: ReadonlySet<HostStatus> = new Set(['updated', 'unchanged']);

/** The outcome of one host. */
export interface HostOutcome extends TaskResult {
  readonly host: string;
  readonly status: HostStatus;
  /** Release (or model) the host ran before; undefined when it could not be read. */
  readonly before: string | undefined;
  /** Release (or model) the host runs now; undefined when unknown. */
  readonly now: string | undefined;
  /** One line: why, or what happened. */
  readonly detail: string;
  /** What to do about it, when something failed. */
  readonly hint?: string;
  /** Time spent on this host, in ms. */
  readonly ms: number;
  readonly transfer?: TransferResult;
}

/** Receives per-host progress (a terminal display or log lines). */
export interface ProgressSink {
  update(host: string, text: string): void;
}

export interface PushContext {
  /** Folder for the SSH master sockets (short path, mode 0700). */
  readonly controlDir: string;
  readonly acceptNewHostKeys: boolean;
  /** Passed to the device's health gate, in s; undefined: the device's default (60 s). */
  readonly healthTimeoutS?: number;
  /** rsync --bwlimit in KiB/s. */
  readonly bwlimitKiBps?: number;
  /** After a successful release push, `release prune --keep N`. */
  readonly keep?: number;
  readonly progress: ProgressSink;
  /** Aborted on the first Ctrl-C: transfers stop (resumable), devices finish what they started. */
  readonly stop: AbortSignal;
  /** Aborted on the second Ctrl-C: every ssh ends now (the devices still finish or roll back by themselves). */
  readonly kill: AbortSignal;
}

/** A release archive on the operator's machine, checked against its .sha256. */
export interface ReleaseArchive {
  readonly file: string;
  readonly sha256File: string;
  readonly version: string;
  /** Node.js arch from the name: x64, arm64 … */
  readonly arch: string;
  readonly sha256: string;
  readonly bytes: number;
}

/** A local file or its companion that cannot be pushed. */
export class PushInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PushInputError';
  }
}

const ARCHIVE_NAME = /^edge-classifier-(.+)-linux-([a-z0-9_]+)\.tar\.gz$/;

async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Reads a release archive made by `edge-classifier pack`: the name gives the
 * version and arch, `ARCHIVE.sha256` must sit beside it and match (checked
 * here, before any host is touched). Throws PushInputError naming the file.
 */
export async function readReleaseArchive(file: string): Promise<ReleaseArchive> {
  const abs = path.resolve(file);
  if (!existsSync(abs)) throw new PushInputError(`release archive ${file}: no such file (make one with: edge-classifier pack)`);
  const m = ARCHIVE_NAME.exec(path.basename(abs));
  if (!m) throw new PushInputError(`release archive ${file}: expected a name edge-classifier-VERSION-linux-ARCH.tar.gz as edge-classifier pack writes it`);
  const sha256File = `${abs}.sha256`;
  if (!existsSync(sha256File))
    throw new PushInputError(`release archive ${file}: ${path.basename(sha256File)} is missing beside it (edge-classifier pack writes both)`);
  const expected = /^([0-9a-f]{64})\b/i.exec(readFileSync(sha256File, 'utf8').trim())?.[1]?.toLowerCase();
  if (expected === undefined) throw new PushInputError(`${sha256File}: expected "<64 hex digits>  <file name>" (sha256sum format)`);
  const actual = await sha256Of(abs);
  if (actual !== expected) {
    throw new PushInputError(
      `release archive ${file}: sha256 ${actual} does not match ${expected} in ${path.basename(sha256File)}; the file is damaged or incomplete — pack it again`,
    );
  }
  return { file: abs, sha256File, version: m[1]!, arch: m[2]!, sha256: actual, bytes: statSync(abs).size };
}

/** A model (and optional labels) to push. */
export interface ModelUpload {
  readonly model: string;
  readonly labels?: string;
}

/** Checks the local model and labels files exist; throws PushInputError naming the file. */
export function readModelUpload(model: string, labels?: string): ModelUpload {
  for (const f of [model, labels]) {
    if (f === undefined) continue;
    if (!existsSync(f) || !statSync(f).isFile()) throw new PushInputError(`${f}: no such file`);
  }
  return { model: path.resolve(model), labels: labels !== undefined ? path.resolve(labels) : undefined };
}

const shortSha = (sha: string | undefined): string | undefined => (sha !== undefined ? sha.slice(0, 12) : undefined);

/** How a model is shown in tables: its name and the start of its sha256. */
export function modelLabel(model: DeviceHealth['model'] | undefined): string | undefined {
  if (model == null) return undefined;
  const name = model.name ?? (model.path !== undefined ? path.basename(model.path) : undefined);
  const sha = shortSha(model.sha256);
  return name !== undefined && sha !== undefined ? `${name} ${sha}` : (name ?? sha);
}

type Step = (device: RemoteDevice, facts: DeviceFacts, note: (text: string) => void) => Promise<Omit<HostOutcome, 'host' | 'ms' | 'ok'>>;

/** Outcome for a host whose SSH failed; `before` is what we knew so far. */
function sshOutcome(err: SshError, before: string | undefined, touched: boolean): Omit<HostOutcome, 'host' | 'ms' | 'ok'> {
  const status: HostStatus =
    err.kind === 'host-key-changed'
      ? 'host key changed'
      : err.kind === 'host-key-unknown'
        ? 'host key unknown'
        : err.kind === 'auth'
          ? 'login refused'
          : err.kind === 'unreachable'
            ? 'unreachable'
            : 'ssh failed';
  return { status: touched ? 'link lost' : status, before, now: touched ? undefined : before, detail: err.message, hint: err.hint };
}

/**
 * Runs `step` on one host with a fresh SSH session and turns every failure
 * into an outcome (never throws).
 */
export async function onHost(host: FleetHost, ctx: PushContext, step: Step): Promise<HostOutcome> {
  const started = Date.now();
  const session = new SshSession(host, { controlDir: ctx.controlDir, acceptNewHostKeys: ctx.acceptNewHostKeys });
  const note = (text: string): void => ctx.progress.update(host.name, text);
  const done = (o: Omit<HostOutcome, 'host' | 'ms' | 'ok'>): HostOutcome => ({ host: host.name, ok: OK.has(o.status), ms: Date.now() - started, ...o });
  try {
    note('connecting');
    await session.connect(ctx.kill);
    const device = new RemoteDevice(session);
    const facts = await device.facts(ctx.kill);
    if (!facts.installed) {
      return done({
        status: 'not set up',
        before: undefined,
        now: undefined,
        detail: `${host.command} is not installed on ${host.name}`,
        hint: `set the device up first: edge-classifier fleet bootstrap ${host.name} ARCHIVE`,
      });
    }
    return done(await step(device, facts, note));
  } catch (err) {
    if (err instanceof SshError) return done(sshOutcome(err, undefined, false));
    if (err instanceof CancelledError)
      return done({ status: 'interrupted', before: undefined, now: undefined, detail: 'cancelled before the device was changed' });
    if (err instanceof DeviceCommandError) return done({ status: 'failed', before: undefined, now: undefined, detail: err.message, hint: err.hint });
    return done({ status: 'failed', before: undefined, now: undefined, detail: (err as Error).message ?? String(err) });
  } finally {
    await session.close();
  }
}

/** Reads the device's releases; undefined when the command gives no JSON. */
async function releaseList(device: RemoteDevice, signal: AbortSignal): Promise<ReleaseList | undefined> {
  try {
    return (await device.json<ReleaseList>(['release', 'list'], { signal })).value;
  } catch (err) {
    if (err instanceof DeviceCommandError) return undefined;
    throw err;
  }
}

/** Reads `health --json` (exit 1 still prints it); undefined when it cannot. */
export async function readHealth(device: RemoteDevice, signal: AbortSignal): Promise<DeviceHealth | undefined> {
  try {
    return (await device.json<DeviceHealth>(['health'], { signal })).value;
  } catch (err) {
    if (err instanceof DeviceCommandError) return undefined;
    throw err;
  }
}

const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;

/** Sends files to the staging folder with progress; returns the transfer figures. */
async function send(device: RemoteDevice, facts: DeviceFacts, files: readonly string[], ctx: PushContext, note: (t: string) => void): Promise<TransferResult> {
  note('sending');
  const r = await upload(device.session, files, facts.stagingDir, {
    scp: !facts.rsync,
    bwlimitKiBps: ctx.bwlimitKiBps,
    signal: ctx.stop,
    onProgress: (p) => note(`sending ${p.percent}% ${p.rate}`),
  });
  note(`sent ${mb(r.literalBytes)}${r.matchedBytes > 0 ? ` (${mb(r.matchedBytes)} already there)` : ''}`);
  return r;
}

/** The device said why in its JSON: "CHECK: reason". */
function reasonOf(v: DeviceActionResult, fallback: string): string {
  const reason = v.reason ?? fallback;
  return v.check !== undefined && !reason.toLowerCase().startsWith(v.check.replace(/_/g, ' ')) ? `${v.check}: ${reason}` : reason;
}

/** The device's fix, when it gave one. */
const fixOf = (v: DeviceActionResult): { hint?: string } => (v.fix != null && v.fix !== '' ? { hint: v.fix } : {});

/** History events after which a switch (activate, rollback, model install) has nothing left to do. */
const SETTLED: ReadonlySet<string> = new Set([
  'activated',
  'rolled-back',
  'activation-failed',
  'install-failed',
  'model-activated',
  'model-rolled-back',
  'model-failed',
]);
/** History events that end a `release install`. */
const INSTALL_SETTLED: ReadonlySet<string> = new Set(['installed', 'install-failed']);

/** What ends the device command that ran when the link dropped (see {@link deviceSettled}). */
export interface SettleRule {
  /** Final history events of that command. */
  readonly events: ReadonlySet<string>;
  /** The JSON of the last history event before the command: that event does not count. */
  readonly since?: string;
  /** An install of this version: also settled once it is listed as installed (an install of a release already there writes no event). */
  readonly installs?: string;
}

/**
 * Has the device finished the command that was running when the link
 * dropped, going by `release list --json`? Its last history event is one
 * of `rule.events` and newer than `rule.since`, or (an install) the
 * version is installed.
 */
export function deviceSettled(list: ReleaseList | undefined, rule: SettleRule): boolean {
  if (list === undefined) return false;
  if (rule.installs !== undefined && list.releases.some((r) => r.version === rule.installs)) return true;
  const last = list.history?.slice(-1)[0];
  return last !== undefined && rule.events.has(String(last.event)) && (rule.since === undefined || JSON.stringify(last) !== rule.since);
}

/** The JSON of the last event of a history, the `since` of a {@link SettleRule}. */
const lastEventKey = (list: ReleaseList | undefined): string => {
  const last = list?.history?.slice(-1)[0];
  return last !== undefined ? JSON.stringify(last) : '';
};

/**
 * What ends a `release install VERSION` whose link dropped: its own
 * `installed` or `install-failed` event (newer than the last event of
 * `before`, the list read before the command), or VERSION listed as
 * installed (an install of a release already there writes no event).
 * The events of a switch would never come, and fleet would wait out its
 * whole deadline before reporting.
 */
export function installSettleRule(before: ReleaseList | undefined, version: string): SettleRule {
  return { events: INSTALL_SETTLED, since: lastEventKey(before), installs: version };
}

/**
 * Where a host ended when `release activate` did not end healthy on the
 * new release, from its exit status and JSON: exit 3 → `rollback
 * unhealthy`; switched and switched back → `rolled back`; refused before
 * any switch (the lock held, the release not installed, another Node.js
 * ABI: a refusal's JSON has no `action`) → `refused`; a failed gate with
 * no release to go back to → `failed`.
 */
export function activationStatus(code: number, v: DeviceActionResult): HostOutcome['status'] {
  if (code === 3) return 'rollback unhealthy';
  if (v.rolled_back === true) return 'rolled back';
  return v.action === undefined ? 'refused' : 'failed';
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });

/** One history event in a few words: "rolled-back 1.1.0 → 1.0.0: health: …". */
function describeEvent(e: Record<string, unknown>): string {
  const str = (k: string): string => (typeof e[k] === 'string' ? (e[k] as string) : '');
  return `${str('event')} ${str('version')}${str('to') !== '' ? ` → ${str('to')}` : ''}${str('reason') !== '' ? `: ${str('reason')}` : ''}`.trim();
}

/**
 * After the link dropped during a device command: the device finishes or
 * rolls back by itself. Reconnects (after 2, 5 and 10 s), waits until the
 * device has settled (`settle`, default: the last history event is a final
 * one of a switch; it must stay so for one more read), and reports where
 * the device ended.
 */
async function afterLinkLoss(
  device: RemoteDevice,
  what: 'release' | 'model',
  err: SshError,
  before: string | undefined,
  ctx: PushContext,
  settle: SettleRule = { events: SETTLED },
): Promise<Omit<HostOutcome, 'host' | 'ms' | 'ok'>> {
  const lost = (): Omit<HostOutcome, 'host' | 'ms' | 'ok'> => ({
    ...sshOutcome(err, before, true),
    detail: `${err.message}; the device finishes or rolls back by itself — check later with edge-classifier fleet status`,
  });
  let connected = false;
  for (const wait of [2000, 5000, 10_000]) {
    await sleep(wait, ctx.kill);
    if (ctx.kill.aborted) return lost();
    try {
      await device.session.close();
      await device.session.connect(ctx.kill);
      connected = true;
      break;
    } catch (e) {
      if (!(e instanceof SshError)) throw e;
    }
  }
  if (!connected) return lost();
  try {
    ctx.progress.update(device.host.name, 'link lost; reconnected, waiting for the device to finish');
    const deadline = Date.now() + ((ctx.healthTimeoutS ?? 60) * 2 + 60) * 1000;
    let list: ReleaseList | undefined;
    let previousLast = '';
    for (;;) {
      list = await releaseList(device, ctx.kill);
      const key = lastEventKey(list);
      if ((deviceSettled(list, settle) && key === previousLast) || Date.now() > deadline || ctx.kill.aborted) break;
      previousLast = key;
      await sleep(2000, ctx.kill);
    }
    const last = list?.history?.slice(-1)[0];
    const now = what === 'release' ? (list?.current ?? undefined) : modelLabel((await readHealth(device, ctx.kill))?.model);
    return {
      status: 'link lost',
      before,
      now,
      detail: `${err.message}; reconnected: the device runs ${now ?? `an unknown ${what}`}${last !== undefined ? ` (its last event: ${describeEvent(last)})` : ''}`,
      hint: `check with edge-classifier fleet status; push again if the ${what} is not the one you sent`,
    };
  } catch (e) {
    if (e instanceof SshError) return lost();
    throw e;
  }
}

/** The step that pushes a release archive to one device. */
export function releaseStep(archive: ReleaseArchive, ctx: PushContext): Step {
  return async (device, facts, note) => {
    const list = await releaseList(device, ctx.kill);
    // null: the device has no release yet; undefined: it could not be read.
    const before = list === undefined ? undefined : (list.current ?? 'none');
    const deviceArch = archOfMachine(facts.machine);
    if (deviceArch !== archive.arch) {
      return {
        status: 'refused',
        before,
        now: before,
        detail: `arch: the archive is for linux-${archive.arch}, ${device.host.name} is linux-${deviceArch} (uname -m: ${facts.machine}); nothing was sent`,
        hint: `pack for ${deviceArch} (edge-classifier pack --arch ${deviceArch}, or edge-classifier fleet build --arch ${deviceArch} on a builder host)`,
      };
    }
    if (before === archive.version) return { status: 'unchanged', before, now: before, detail: `already runs ${archive.version}` };

    const names = [path.basename(archive.file), path.basename(archive.sha256File)];
    const staged = `${facts.stagingDir}/${names[0]}`;
    let transfer: TransferResult;
    try {
      transfer = await send(device, facts, [archive.file, archive.sha256File], ctx, note);
    } catch (err) {
      if (err instanceof CancelledError)
        return {
          status: 'interrupted',
          before,
          now: before,
          detail: 'transfer interrupted; the part sent is kept on the device and the next push resumes it',
          hint: 'push again',
        };
      if (err instanceof TransferError) return { status: 'transfer failed', before, now: before, detail: err.message, hint: err.hint };
      if (err instanceof SshError) return sshOutcome(err, before, false);
      throw err;
    }

    // From here on the device works by itself; only a second Ctrl-C cuts the session.
    let installed: { code: number; value: DeviceActionResult };
    try {
      note('installing');
      installed = await device.json<DeviceActionResult>(['release', 'install', staged], { signal: ctx.kill, onProgress: (l) => note(`install: ${l}`) });
    } catch (err) {
      if (err instanceof SshError) return afterLinkLoss(device, 'release', err, before, ctx, installSettleRule(list, archive.version));
      await removeStaged(device.session, facts.stagingDir, names);
      throw err;
    }
    await removeStaged(device.session, facts.stagingDir, names);
    if (installed.code !== 0 || !installed.value.ok) {
      return {
        status: 'refused',
        before,
        now: before,
        detail: reasonOf(installed.value, 'release install refused the archive'),
        ...fixOf(installed.value),
        transfer,
      };
    }
    const version = installed.value.version ?? archive.version;

    let activated: { code: number; value: DeviceActionResult };
    try {
      note(`activating ${version}`);
      const args = ['release', 'activate', version, ...(ctx.healthTimeoutS !== undefined ? ['--health-timeout', String(ctx.healthTimeoutS)] : [])];
      activated = await device.json<DeviceActionResult>(args, { signal: ctx.kill, onProgress: (l) => note(`activate: ${l}`) });
    } catch (err) {
      if (err instanceof SshError) return afterLinkLoss(device, 'release', err, before, ctx);
      throw err;
    }
    const v = activated.value;
    if (activated.code === 0 && v.ok) {
      if (ctx.keep !== undefined) {
        note(`pruning to ${ctx.keep}`);
        await device.command(['release', 'prune', '--keep', String(ctx.keep)], { signal: ctx.kill });
      }
      return {
        status: 'updated',
        before,
        now: version,
        detail: `healthy on ${version}${v.health?.fps != null ? ` (${v.health.fps.toFixed(1)} fps)` : ''}`,
        transfer,
      };
    }
    const now = (await releaseList(device, ctx.kill))?.current ?? (v.rolled_back === true ? (v.previous ?? before) : undefined);
    const status = activationStatus(activated.code, v);
    if (status === 'rollback unhealthy') {
      return {
        status,
        before,
        now,
        detail: reasonOf(v, 'health gate failed and the release rolled back to is not healthy either'),
        hint: v.fix ?? `look at the device: ssh ${device.host.name} journalctl -u edge-classifier`,
        transfer,
      };
    }
    return { status, before, now, detail: reasonOf(v, status === 'refused' ? 'release activate refused' : 'health gate failed'), ...fixOf(v), transfer };
  };
}

/** The step that pushes a model (and labels) to one device. */
export function modelStep(upload: ModelUpload, ctx: PushContext): Step {
  return async (device, facts, note) => {
    const beforeHealth = await readHealth(device, ctx.kill);
    const before = modelLabel(beforeHealth?.model);
    const files = [upload.model, ...(upload.labels !== undefined ? [upload.labels] : [])];
    const names = files.map((f) => path.basename(f));
    let transfer: TransferResult;
    try {
      transfer = await send(device, facts, files, ctx, note);
    } catch (err) {
      if (err instanceof CancelledError)
        return { status: 'interrupted', before, now: before, detail: 'transfer interrupted; the next push resumes it', hint: 'push again' };
      if (err instanceof TransferError) return { status: 'transfer failed', before, now: before, detail: err.message, hint: err.hint };
      if (err instanceof SshError) return sshOutcome(err, before, false);
      throw err;
    }
    const args = [
      'model',
      'install',
      `${facts.stagingDir}/${names[0]}`,
      ...(upload.labels !== undefined ? ['--labels', `${facts.stagingDir}/${names[1]}`] : []),
      ...(ctx.healthTimeoutS !== undefined ? ['--health-timeout', String(ctx.healthTimeoutS)] : []),
    ];
    let result: { code: number; value: DeviceActionResult };
    try {
      note('installing model');
      result = await device.json<DeviceActionResult>(args, { signal: ctx.kill, onProgress: (l) => note(`model: ${l}`) });
    } catch (err) {
      if (err instanceof SshError) return afterLinkLoss(device, 'model', err, before, ctx);
      throw err;
    } finally {
      await removeStaged(device.session, facts.stagingDir, names).catch(() => undefined);
    }
    const v = result.value;
    const nowHealth = v.health ?? (await readHealth(device, ctx.kill));
    const now = modelLabel(nowHealth?.model);
    if (result.code === 0 && v.ok)
      return {
        status: now !== undefined && now === before ? 'unchanged' : 'updated',
        before,
        now,
        detail: `healthy on ${now ?? 'the new model'}, no restart`,
        transfer,
      };
    if (result.code === 3)
      return {
        status: 'rollback unhealthy',
        before,
        now,
        detail: reasonOf(v, 'health gate failed and the previous model is not healthy either'),
        ...fixOf(v),
        transfer,
      };
    return { status: v.rolled_back === true ? 'rolled back' : 'refused', before, now, detail: reasonOf(v, 'model install refused'), ...fixOf(v), transfer };
  };
}

/** The step that rolls a device back to its previous release (or model). */
export function rollbackStep(what: 'release' | 'model', ctx: PushContext): Step {
  return async (device, _facts, note) => {
    const read = async (): Promise<string | undefined> =>
      what === 'release' ? ((await releaseList(device, ctx.kill))?.current ?? undefined) : modelLabel((await readHealth(device, ctx.kill))?.model);
    const before = await read();
    note(`rolling back the ${what}`);
    let r: { code: number; value: DeviceActionResult; stderr: string };
    try {
      const args = [what, 'rollback', ...(ctx.healthTimeoutS !== undefined ? ['--health-timeout', String(ctx.healthTimeoutS)] : [])];
      r = await device.json<DeviceActionResult>(args, { signal: ctx.kill, onProgress: (l) => note(l) });
    } catch (err) {
      if (err instanceof SshError) return afterLinkLoss(device, what, err, before, ctx);
      throw err;
    }
    const now = await read();
    if (r.code === 0 && r.value.ok) return { status: 'updated', before, now, detail: `rolled back to ${now ?? '?'}` };
    return {
      status: r.code === 3 ? 'rollback unhealthy' : 'failed',
      before,
      now,
      detail: reasonOf(r.value, lastLine(r.stderr) || `${what} rollback failed`),
      ...fixOf(r.value),
    };
  };
}
