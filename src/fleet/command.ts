/**
 * `edge-classifier fleet …`: the operator's commands, over SSH, for the
 * hosts of an inventory. Progress goes to stderr, the summary table (or
 * with --json one JSON object per host, then one summary object) to
 * stdout.
 *
 * Exit status: 0 every host ended as asked; 1 a host failed, was rolled
 * back, was skipped or is unhealthy; 2 a usage error; 78 (EX_CONFIG) an
 * inventory that cannot be used; 130 interrupted by Ctrl-C.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { stringify } from 'yaml';
import { bootstrapHost, type BootstrapOutcome } from './bootstrap.js';
import { BuildError, buildOnBuilder } from './build.js';
import { InventoryError, loadInventory, selectHosts, type FleetHost, type Inventory } from './inventory.js';
import { modelStep, onHost, PushInputError, readModelUpload, readReleaseArchive, releaseStep, rollbackStep, type HostOutcome, type PushContext } from './push.js';
import { outcomeTable, ProgressDisplay, formatTable } from './report.js';
import { parseFailBudget, runRollout, type FailBudget, type RolloutReport } from './rollout.js';
import { SshError } from './ssh.js';
import { doctorTable, mapLimit, readDoctor, readStatus, statusTable } from './status.js';
import { TransferError } from './transfer.js';

const EX_CONFIG = 78;
const EX_INTERRUPTED = 130;

/** The default inventory file when neither --inventory nor EDGE_CLASSIFIER_INVENTORY is given. */
export const DEFAULT_INVENTORY = 'fleet.yaml';

const whole = (name: string, min: number) => (v: string): number => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} expects a whole number ≥ ${min}, got '${v}'`);
  return n;
};
const budget = (v: string): FailBudget => {
  try {
    return parseFailBudget(v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
};

interface GlobalFlags {
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

/** Ctrl-C handling: the first stops starting work, the second ends every ssh now. */
class Interrupts {
  readonly stop = new AbortController();
  readonly kill = new AbortController();
  private count = 0;
  private readonly handler = (): void => {
    this.count++;
    if (this.count === 1) {
      this.io.stderr.write('\nstopping: no new hosts; transfers stop (the next push resumes them); devices finish or roll back what they started. Ctrl-C again to disconnect now.\n');
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
  return [...lines, { summary: { action, hosts: lines.length, ok, failed: lines.length - ok, stopped: report.stoppedBecause ?? null } }].map((l) => JSON.stringify(l)).join('\n');
}

function rolloutText(report: RolloutReport<HostOutcome>): string {
  const table = outcomeTable(report.runs.map((r) => (r.started ? { host: r.host, outcome: r.result } : { host: r.host, skipped: r.reason })));
  const ok = report.runs.filter((r) => r.started && r.result.ok).length;
  const tail = `${ok} of ${report.runs.length} host${report.runs.length === 1 ? '' : 's'} ok${report.stoppedBecause !== undefined ? `; stopped: ${report.stoppedBecause}` : ''}`;
  return `${table}\n\n${tail}`;
}

/**
 * Adds `fleet` and its subcommands to the program. `setExit` receives each
 * action's exit-status promise.
 */
export function addFleetCommands(cli: Command, setExit: (p: Promise<number>) => void): void {
  const io: FleetIo = { stdout: process.stdout, stderr: process.stderr };
  const fleet = cli
    .command('fleet')
    // The inventory, --limit and the other fleet options may come before or after the subcommand.
    .enablePositionalOptions(false)
    .description('update and watch a fleet of devices over SSH (an inventory of hosts)')
    .addOption(new Option('-i, --inventory <file>', 'the inventory (YAML)').env('EDGE_CLASSIFIER_INVENTORY').default(DEFAULT_INVENTORY))
    .option('-l, --limit <pattern>', 'only these hosts/groups, comma-separated; !NAME excludes (e.g. house,!barn)')
    .option('--accept-new-host-keys', 'record the key of a host not yet in known_hosts (a changed key is still refused)')
    .option('--parallel <n>', 'hosts worked on at once', whole('--parallel', 1), 4)
    .option('--json', 'one JSON object per host, then a summary object, on stdout');

  /** Runs an action with uniform error handling and exit status. */
  const act = <A extends unknown[]>(fn: (flags: GlobalFlags, ...args: A) => Promise<number>) =>
    (...args: A): void => {
      const cmd = args[args.length - 1] as Command;
      const flags = cmd.optsWithGlobals<GlobalFlags>();
      setExit(
        fn(flags, ...args).catch((err: unknown) => {
          if (err instanceof InventoryError) {
            io.stderr.write(`edge-classifier fleet: ${err.message}\n`);
            return EX_CONFIG;
          }
          if (err instanceof PushInputError || err instanceof BuildError || err instanceof SshError || err instanceof TransferError) {
            io.stderr.write(`edge-classifier fleet: ${err.message}\n`);
            if ('hint' in err) io.stderr.write(`  ${(err as { hint: string }).hint}\n`);
            return 1;
          }
          throw err;
        }),
      );
    };

  const rollout = async (
    flags: GlobalFlags,
    hosts: FleetHost[],
    options: { canary: number; batch: number; maxFail: FailBudget; action: string },
    ctxExtra: Partial<PushContext>,
    stepFor: (ctx: PushContext) => Parameters<typeof onHost>[2],
  ): Promise<number> => {
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
  };

  fleet
    .command('push')
    .description('send a release archive (or a model) to the hosts: canary first, then batches; each device checks, activates and rolls back by itself')
    .argument('[archive]', 'release archive from edge-classifier pack (ARCHIVE.sha256 beside it)')
    .option('--model <file>', 'push this model instead of a release (hot reload, no restart)')
    .option('--labels <file>', 'labels file for --model')
    .option('--canary <n>', 'hosts updated first; all must succeed', whole('--canary', 0), 1)
    .option('--batch <n>', 'hosts per batch after the canary', whole('--batch', 1), 5)
    .addOption(new Option('--max-fail <n|p%>', 'failed hosts tolerated before the rollout stops (a count or a % of the hosts)').argParser(budget).default({ count: 0 }, '0'))
    .option('--health-timeout <s>', "the device's health gate timeout (default: the device's, 60 s)", whole('--health-timeout', 1))
    .option('--bwlimit <KiB/s>', 'limit each transfer, in KiB/s', whole('--bwlimit', 1))
    .option('--keep <n>', 'after a successful release, keep this many releases on the device (release prune)', whole('--keep', 2))
    .action(
      act(async (flags, archive: string | undefined, opts: { model?: string; labels?: string; canary: number; batch: number; maxFail: FailBudget; healthTimeout?: number; bwlimit?: number; keep?: number }) => {
        if ((archive === undefined) === (opts.model === undefined)) throw new PushInputError('fleet push: give a release ARCHIVE or --model FILE (one of them)');
        if (opts.labels !== undefined && opts.model === undefined) throw new PushInputError('fleet push: --labels goes with --model');
        const { hosts } = hostsOf(flags);
        const extra = { healthTimeoutS: opts.healthTimeout, bwlimitKiBps: opts.bwlimit, keep: opts.keep };
        if (archive !== undefined) {
          const a = await readReleaseArchive(archive);
          io.stderr.write(`push: release ${a.version} (linux-${a.arch}, ${(a.bytes / 1e6).toFixed(1)} MB) to ${hosts.length} host${hosts.length === 1 ? '' : 's'}\n`);
          return rollout(flags, hosts, { ...opts, action: 'push' }, extra, (ctx) => releaseStep(a, ctx));
        }
        const m = readModelUpload(opts.model!, opts.labels);
        io.stderr.write(`push: model ${path.basename(m.model)} to ${hosts.length} host${hosts.length === 1 ? '' : 's'}\n`);
        return rollout(flags, hosts, { ...opts, action: 'push model' }, extra, (ctx) => modelStep(m, ctx));
      }),
    );

  fleet
    .command('rollback')
    .description('switch the hosts back to their previous release (or model), each through its health gate')
    .option('--model', 'roll back the model instead of the release')
    .option('--canary <n>', 'hosts rolled back first; all must succeed', whole('--canary', 0), 0)
    .option('--batch <n>', 'hosts per batch', whole('--batch', 1), 1000)
    .addOption(new Option('--max-fail <n|p%>', 'failed hosts tolerated before stopping').argParser(budget).default({ percent: 100 }, '100%'))
    .option('--health-timeout <s>', "the device's health gate timeout", whole('--health-timeout', 1))
    .action(
      act(async (flags, opts: { model?: boolean; canary: number; batch: number; maxFail: FailBudget; healthTimeout?: number }) => {
        const { hosts } = hostsOf(flags);
        const what = opts.model === true ? 'model' : 'release';
        return rollout(flags, hosts, { ...opts, action: `rollback ${what}` }, { healthTimeoutS: opts.healthTimeout }, (ctx) => rollbackStep(what, ctx));
      }),
    );

  fleet
    .command('status')
    .description('per host: health, release, model, since, fps, problems, last health check (health --json over SSH)')
    .action(
      act(async (flags) => {
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
      }),
    );

  fleet
    .command('doctor')
    .description("run each host's preflight checks (doctor --json over SSH)")
    .action(
      act(async (flags) => {
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
      }),
    );

  fleet
    .command('bootstrap')
    .description('set up fresh devices: service user, folders, unit, config, first release, sudoers rule, then doctor')
    .argument('<hosts...>', 'host or group names of the inventory')
    .requiredOption('--archive <file>', 'the first release (from edge-classifier pack)')
    .option('--config <file>', 'configuration to install (default: the template; an existing one is kept)')
    .option('--service-user <name>', 'the service user to create', 'edge-classifier')
    .option('--health-timeout <s>', "the device's health gate timeout", whole('--health-timeout', 1))
    .action(
      act(async (flags, names: string[], opts: { archive: string; config?: string; serviceUser: string; healthTimeout?: number }) => {
        const { hosts } = hostsOf(flags, names.join(','));
        const archive = await readReleaseArchive(opts.archive);
        if (opts.config !== undefined) readModelUpload(opts.config);
        const display = new ProgressDisplay(io.stderr);
        const interrupts = new Interrupts(io);
        try {
          const outcomes = await withControlDir((controlDir) => {
            const ctx: PushContext = { controlDir, acceptNewHostKeys: flags.acceptNewHostKeys === true, progress: display, stop: interrupts.stop.signal, kill: interrupts.kill.signal, healthTimeoutS: opts.healthTimeout };
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
            const doctor = withDoctor.length > 0 ? `\n\n${doctorTable(withDoctor.map((o) => ({ host: o.host, report: o.doctor, state: o.doctor!.ok ? 'ok' : 'fail', detail: '' })))}` : '';
            const logs = outcomes.filter((o) => o.log !== undefined && o.log.length > 0).map((o) => `\n\n${o.host} said:\n${o.log!.map((l) => `  ${l}`).join('\n')}`);
            io.stdout.write(`${outcomeTable(outcomes.map((o) => ({ host: o.host, outcome: o })))}${doctor}${logs.join('')}\n`);
          }
          if (interrupts.interrupted) return EX_INTERRUPTED;
          return outcomes.every((o) => o.ok) ? 0 : 1;
        } finally {
          interrupts.dispose();
        }
      }),
    );

  fleet
    .command('build')
    .description('build a release archive on a builder host of the given arch (for native parts that must be compiled there)')
    .requiredOption('--arch <arch>', 'Node.js arch of the release: arm64, x64, arm')
    .option('--builder <host>', 'the builder host (default: the first builder of that arch)')
    .option('--out <dir>', 'where the archive goes', '.')
    .option('--version <v>', 'release version (default: the package version)')
    .action(
      act(async (flags, opts: { arch: string; builder?: string; out: string; version?: string }) => {
        const { inventory } = hostsOf(flags);
        const display = new ProgressDisplay(io.stderr);
        const interrupts = new Interrupts(io);
        try {
          const { archive, builder } = await withControlDir((controlDir) =>
            buildOnBuilder(inventory.hosts, { ...opts, controlDir, acceptNewHostKeys: flags.acceptNewHostKeys === true, progress: display, signal: interrupts.kill.signal }),
          );
          display.end();
          io.stdout.write(flags.json === true ? `${JSON.stringify({ archive: archive.file, version: archive.version, arch: archive.arch, sha256: archive.sha256, builder })}\n` : `${archive.file}\n`);
          return 0;
        } finally {
          interrupts.dispose();
        }
      }),
    );

  fleet
    .command('inventory')
    .description('list the hosts (after --limit), or print them as an Ansible inventory')
    .option('--ansible', 'print an Ansible YAML inventory for deploy/ansible/')
    .action(
      act(async (flags, opts: { ansible?: boolean }) => {
        const { hosts } = hostsOf(flags);
        if (opts.ansible === true) io.stdout.write(toAnsibleInventory(hosts));
        else if (flags.json === true) io.stdout.write(`${hosts.map((h) => JSON.stringify(h)).join('\n')}\n`);
        else io.stdout.write(`${formatTable(['HOST', 'ADDRESS', 'PORT', 'USER', 'GROUPS', 'BUILDER'], hosts.map((h) => [h.name, h.address, String(h.port), h.user ?? '-', h.groups.join(',') || '-', h.builder ? 'yes' : '-']))}\n`);
        return 0;
      }),
    );

}

/**
 * The hosts as an Ansible YAML inventory: connection variables
 * (`ansible_host`, `ansible_port`, `ansible_user`, the key, known_hosts and
 * ssh options), the role's variables (`edge_classifier_command`,
 * `edge_classifier_sudo`, `edge_classifier_staging_dir`), the inventory's
 * groups as Ansible groups and `edge_classifier_builders`.
 */
export function toAnsibleInventory(hosts: readonly FleetHost[]): string {
  const vars = (h: FleetHost): Record<string, unknown> => {
    const common = [
      ...(h.sshConfigFile !== undefined ? ['-F', h.sshConfigFile] : []),
      ...(h.knownHostsFile !== undefined ? ['-o', `UserKnownHostsFile=${h.knownHostsFile}`] : []),
      '-o', 'StrictHostKeyChecking=yes',
      '-o', 'BatchMode=yes',
      ...h.sshOptions.flatMap((o) => ['-o', o]),
    ];
    return {
      ansible_host: h.address,
      ansible_port: h.port,
      ...(h.user !== undefined ? { ansible_user: h.user } : {}),
      ...(h.identityFile !== undefined ? { ansible_ssh_private_key_file: h.identityFile } : {}),
      ansible_ssh_common_args: common.map((w) => (/^[A-Za-z0-9_\/.:=@%+,-]+$/.test(w) ? w : `'${w}'`)).join(' '),
      edge_classifier_command: h.command,
      edge_classifier_sudo: h.sudo,
      edge_classifier_staging_dir: h.stagingDir,
    };
  };
  const groups: Record<string, { hosts: Record<string, null> }> = {};
  for (const h of hosts) {
    for (const g of [...h.groups, ...(h.builder ? ['edge_classifier_builders'] : [])]) (groups[g] ??= { hosts: {} }).hosts[h.name] = null;
  }
  const doc = { all: { hosts: Object.fromEntries(hosts.map((h) => [h.name, vars(h)])), ...(Object.keys(groups).length > 0 ? { children: groups } : {}) } };
  return stringify(doc, { lineWidth: 0 });
}
