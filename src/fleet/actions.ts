/**
 * The `fleet` commands' work, loaded when one runs (`command.ts` only
 * declares them). Each returns the exit status; progress goes to stderr,
 * the summary (or JSON lines) to stdout.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type BootstrapOutcome, bootstrapHost } from './bootstrap.js';
import { buildOnBuilder } from './build.js';
import { type FleetHost, type Inventory, loadInventory, selectHosts, toAnsibleInventory } from './inventory.js';
import {
  type HostOutcome,
  modelStep,
  onHost,
  type PushContext,
  PushInputError,
  readModelUpload,
  readReleaseArchive,
  releaseStep,
  rollbackStep,
} from './push.js';
import { formatTable, outcomeTable, ProgressDisplay } from './report.js';
import { type FailBudget, type RolloutReport, runRollout } from './rollout.js';
import { doctorTable, mapLimit, readDoctor, readStatus, statusTable } from './status.js';

const EX_INTERRUPTED = 130;

/** The options of `fleet` itself, which every subcommand sees. */
export interface GlobalFlags {
  inventory: string;
  limit?: string;
  acceptNewHostKeys?: boolean;
  parallel: number;
  json?: boolean;
}

/** Where output goes. */
interface FleetIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
}
const io: FleetIo = { stdout: process.stdout, stderr: process.stderr };

/** Ctrl-C handling: the first stops starting work, the second ends every ssh now. */
class Interrupts {
  readonly stop = new AbortController();
  readonly kill = new AbortController();
  private count = 0;
  private readonly handler = (): void => {
    this.count++;
    if (this.count === 1) {
      this.io.stderr.write(
        '\nstopping: no new hosts; transfers stop (the next push resumes them); devices finish or roll back what they started. Ctrl-C again to disconnect now.\n',
      );
      this.stop.abort();
    } else {
      this.kill.abort();
    }
  };

  constructor(private readonly io: FleetIo) {
    process.on('SIGINT', this.handler);
    process.on('SIGTERM', this.handler);
  }

  get interrupted(): boolean {
    return this.count > 0;
  }

  dispose(): void {
    process.off('SIGINT', this.handler);
    process.off('SIGTERM', this.handler);
  }
}

/** Runs `fn` with a private folder for the SSH master sockets, removed afterwards. */
async function withControlDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  // Short: a Unix socket path must fit in ~104 bytes.
  const dir = mkdtempSync(path.join(tmpdir(), 'ecf-'));
  try {
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function hostsOf(flags: GlobalFlags, limit?: string): { inventory: Inventory; hosts: FleetHost[] } {
  const inventory = loadInventory(flags.inventory);
  return { inventory, hosts: selectHosts(inventory, limit ?? flags.limit) };
}

/** The JSON lines of a rollout: one object per host, then the summary. */
function rolloutJson(report: RolloutReport<HostOutcome>, action: string): string {
  const lines = report.runs.map((r) =>
    r.started ? { phase: r.phase, ...r.result } : { host: r.host, phase: r.phase, ok: false, status: 'skipped', detail: r.reason },
  );
  const ok = lines.filter((l) => l.ok).length;
  return [...lines, { summary: { action, hosts: lines.length, ok, failed: lines.length - ok, stopped: report.stoppedBecause ?? null } }]
    .map((l) => JSON.stringify(l))
    .join('\n');
}

function rolloutText(report: RolloutReport<HostOutcome>): string {
  const table = outcomeTable(report.runs.map((r) => (r.started ? { host: r.host, outcome: r.result } : { host: r.host, skipped: r.reason })));
  const ok = report.runs.filter((r) => r.started && r.result.ok).length;
  const tail = `${ok} of ${report.runs.length} host${report.runs.length === 1 ? '' : 's'} ok${report.stoppedBecause !== undefined ? `; stopped: ${report.stoppedBecause}` : ''}`;
  return `${table}\n\n${tail}`;
}

/** Runs `stepFor(ctx)` on the hosts through the rollout scheduler and prints the summary. */
async function rollout(
  flags: GlobalFlags,
  hosts: FleetHost[],
  options: { canary: number; batch: number; maxFail: FailBudget; action: string },
  ctxExtra: Partial<PushContext>,
  stepFor: (ctx: PushContext) => Parameters<typeof onHost>[2],
): Promise<number> {
  const display = new ProgressDisplay(io.stderr);
  const interrupts = new Interrupts(io);
  try {
    const report = await withControlDir(async (controlDir) => {
      const ctx: PushContext = {
        controlDir,
        acceptNewHostKeys: flags.acceptNewHostKeys === true,
        progress: display,
        stop: interrupts.stop.signal,
        kill: interrupts.kill.signal,
        ...ctxExtra,
      };
      const step = stepFor(ctx);
      return runRollout<FleetHost, HostOutcome>(
        hosts,
        (h) => h.name,
        { canary: options.canary, batch: options.batch, parallel: flags.parallel, maxFail: options.maxFail },
        async (h) => {
          const o = await onHost(h, ctx, step);
          display.finish(o);
          return o;
        },
        (h, err): HostOutcome => ({ host: h.name, ok: false, status: 'failed', before: undefined, now: undefined, detail: (err as Error).message, ms: 0 }),
        {
          onPhase: (p, i, n) => display.note(`${options.action}: ${p.name} (${i + 1}/${n}): ${p.hosts.map((h) => h.name).join(', ')}`),
          onStop: (why) => display.note(`${options.action}: stopping — ${why}; hosts not started stay as they are`),
        },
        interrupts.stop.signal,
      );
    });
    display.end();
    io.stdout.write(`${flags.json === true ? rolloutJson(report, options.action) : rolloutText(report)}\n`);
    if (interrupts.interrupted) return EX_INTERRUPTED;
    return report.runs.every((r) => r.started && r.result.ok) ? 0 : 1;
  } finally {
    interrupts.dispose();
  }
}

/** Options of `fleet push`. */
export interface PushFlags {
  model?: string;
  labels?: string;
  canary: number;
  batch: number;
  maxFail: FailBudget;
  healthTimeout?: number;
  bwlimit?: number;
  keep?: number;
}

/** `fleet push ARCHIVE | --model FILE [--labels FILE]`. */
export async function push(flags: GlobalFlags, archive: string | undefined, opts: PushFlags): Promise<number> {
  if ((archive === undefined) === (opts.model === undefined)) throw new PushInputError('fleet push: give a release ARCHIVE or --model FILE (one of them)');
  if (opts.labels !== undefined && opts.model === undefined) throw new PushInputError('fleet push: --labels goes with --model');
  const { hosts } = hostsOf(flags);
  const extra = { healthTimeoutS: opts.healthTimeout, bwlimitKiBps: opts.bwlimit, keep: opts.keep };
  const plural = hosts.length === 1 ? '' : 's';
  if (archive !== undefined) {
    const a = await readReleaseArchive(archive);
    io.stderr.write(`push: release ${a.version} (linux-${a.arch}, ${(a.bytes / 1e6).toFixed(1)} MB) to ${hosts.length} host${plural}\n`);
    return rollout(flags, hosts, { ...opts, action: 'push' }, extra, (ctx) => releaseStep(a, ctx));
  }
  const m = readModelUpload(opts.model!, opts.labels);
  io.stderr.write(`push: model ${path.basename(m.model)} to ${hosts.length} host${plural}\n`);
  return rollout(flags, hosts, { ...opts, action: 'push model' }, extra, (ctx) => modelStep(m, ctx));
}

/** `fleet rollback [--model]`. */
export async function rollback(
  flags: GlobalFlags,
  opts: { model?: boolean; canary: number; batch: number; maxFail: FailBudget; healthTimeout?: number },
): Promise<number> {
  const { hosts } = hostsOf(flags);
  const what = opts.model === true ? 'model' : 'release';
  return rollout(flags, hosts, { ...opts, action: `rollback ${what}` }, { healthTimeoutS: opts.healthTimeout }, (ctx) => rollbackStep(what, ctx));
}

/** `fleet status`: exit 0 when every host is healthy. */
export async function status(flags: GlobalFlags): Promise<number> {
  const { hosts } = hostsOf(flags);
  const interrupts = new Interrupts(io);
  try {
    const rows = await withControlDir((controlDir) =>
      readStatus(hosts, { controlDir, acceptNewHostKeys: flags.acceptNewHostKeys === true, parallel: flags.parallel, signal: interrupts.kill.signal }),
    );
    io.stdout.write(`${flags.json === true ? rows.map((r) => JSON.stringify(r)).join('\n') : statusTable(rows)}\n`);
    return rows.every((r) => r.state === 'healthy') ? 0 : 1;
  } finally {
    interrupts.dispose();
  }
}

/** `fleet doctor`: exit 0 when no host has a failing check. */
export async function doctor(flags: GlobalFlags): Promise<number> {
  const { hosts } = hostsOf(flags);
  const interrupts = new Interrupts(io);
  try {
    const rows = await withControlDir((controlDir) =>
      readDoctor(hosts, { controlDir, acceptNewHostKeys: flags.acceptNewHostKeys === true, parallel: flags.parallel, signal: interrupts.kill.signal }),
    );
    io.stdout.write(`${flags.json === true ? rows.map((r) => JSON.stringify(r)).join('\n') : doctorTable(rows)}\n`);
    return rows.every((r) => r.state === 'ok') ? 0 : 1;
  } finally {
    interrupts.dispose();
  }
}

/** `fleet bootstrap HOST… --archive FILE [--config FILE]`. */
export async function bootstrap(
  flags: GlobalFlags,
  names: string[],
  opts: { archive: string; config?: string; serviceUser: string; healthTimeout?: number },
): Promise<number> {
  const { hosts } = hostsOf(flags, names.join(','));
  const archive = await readReleaseArchive(opts.archive);
  if (opts.config !== undefined) readModelUpload(opts.config);
  const display = new ProgressDisplay(io.stderr);
  const interrupts = new Interrupts(io);
  try {
    const outcomes = await withControlDir((controlDir) => {
      const ctx: PushContext = {
        controlDir,
        acceptNewHostKeys: flags.acceptNewHostKeys === true,
        progress: display,
        stop: interrupts.stop.signal,
        kill: interrupts.kill.signal,
        healthTimeoutS: opts.healthTimeout,
      };
      return mapLimit(hosts, flags.parallel, async (h): Promise<BootstrapOutcome> => {
        const o = await bootstrapHost(h, archive, { config: opts.config, serviceUser: opts.serviceUser }, ctx);
        display.finish(o);
        return o;
      });
    });
    display.end();
    if (flags.json === true) {
      io.stdout.write(`${outcomes.map((o) => JSON.stringify(o)).join('\n')}\n`);
    } else {
      const withDoctor = outcomes.filter((o) => o.doctor !== undefined);
      const doctorText =
        withDoctor.length > 0
          ? `\n\n${doctorTable(withDoctor.map((o) => ({ host: o.host, report: o.doctor, state: o.doctor!.ok ? 'ok' : 'fail', detail: '' })))}`
          : '';
      const logs = outcomes.filter((o) => o.log !== undefined && o.log.length > 0).map((o) => `\n\n${o.host} said:\n${o.log!.map((l) => `  ${l}`).join('\n')}`);
      io.stdout.write(`${outcomeTable(outcomes.map((o) => ({ host: o.host, outcome: o })))}${doctorText}${logs.join('')}\n`);
    }
    if (interrupts.interrupted) return EX_INTERRUPTED;
    return outcomes.every((o) => o.ok) ? 0 : 1;
  } finally {
    interrupts.dispose();
  }
}

/** `fleet build --arch ARCH [--builder HOST] [--out DIR] [--version V]`: prints the archive's path. */
export async function build(flags: GlobalFlags, opts: { arch: string; builder?: string; out: string; version?: string }): Promise<number> {
  const { inventory } = hostsOf(flags);
  const display = new ProgressDisplay(io.stderr);
  const interrupts = new Interrupts(io);
  try {
    const { archive, builder } = await withControlDir((controlDir) =>
      buildOnBuilder(inventory.hosts, {
        ...opts,
        controlDir,
        acceptNewHostKeys: flags.acceptNewHostKeys === true,
        progress: display,
        signal: interrupts.kill.signal,
      }),
    );
    display.end();
    io.stdout.write(
      flags.json === true
        ? `${JSON.stringify({ archive: archive.file, version: archive.version, arch: archive.arch, sha256: archive.sha256, builder })}\n`
        : `${archive.file}\n`,
    );
    return 0;
  } finally {
    interrupts.dispose();
  }
}

/** `fleet inventory [--ansible]`. */
export async function inventory(flags: GlobalFlags, opts: { ansible?: boolean }): Promise<number> {
  const { hosts } = hostsOf(flags);
  if (opts.ansible === true) io.stdout.write(toAnsibleInventory(hosts));
  else if (flags.json === true) io.stdout.write(`${hosts.map((h) => JSON.stringify(h)).join('\n')}\n`);
  else {
    const rows = hosts.map((h) => [h.name, h.address, String(h.port), h.user ?? '-', h.groups.join(',') || '-', h.builder ? 'yes' : '-']);
    io.stdout.write(`${formatTable(['HOST', 'ADDRESS', 'PORT', 'USER', 'GROUPS', 'BUILDER'], rows)}\n`);
  }
  return 0;
}
