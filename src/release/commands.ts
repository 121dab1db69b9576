import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import { OperationError } from './atomic.js';
import type { Progress } from './gate.js';
import { layoutFor } from './layout.js';
import type { DeviceContext, SwitchResult } from './releases.js';
import { ServiceManager } from './service-manager.js';

/** Default `--health-timeout`, seconds. */
const DEFAULT_HEALTH_TIMEOUT_S = 60;

const seconds = (name: string) => (v: string) => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} expects a number of seconds > 0, got '${v}'`);
  return n;
};
const whole = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} expects a whole number ≥ 0, got '${v}'`);
  return n;
};

interface DeviceFlags {
  root?: string;
  json?: boolean;
  node?: string;
  systemctl?: string;
}

/** Progress lines go to stderr, prefixed, so stdout holds only the result (one JSON object with --json). */
const stderrProgress: Progress = (line) => process.stderr.write(`edge-classifier: ${line}\n`);

/**
 * Under sudo (`SUDO_UID` set) the device commands run as root for a login
 * that the sudoers rule trusts with these commands only. `--root` (a tree
 * the login could own, written as root) and `--node` (a program run as
 * root) would hand that login root itself, so they are refused there: the
 * rule's commands then act on this machine's own paths and the unit's
 * Node.js.
 * @throws OperationError (`usage`) naming the flag.
 */
function refuseUnderSudo(flags: DeviceFlags): void {
  if (process.env.SUDO_UID === undefined) return;
  const given = [flags.root !== undefined ? '--root' : undefined, flags.node !== undefined ? '--node' : undefined].filter((f) => f !== undefined);
  if (given.length === 0) return;
  throw new OperationError(
    'usage',
    `${given.join(' and ')} cannot be used through sudo (SUDO_UID is set): under sudo this command acts on this machine's own paths and the unit's Node.js only`,
    `run it without ${given.join(' and ')}, or as root without sudo`,
  );
}

/** For commands that take no device context: the refusal printed and its exit status under sudo, else undefined. */
function sudoRefusal(flags: DeviceFlags): number | undefined {
  try {
    refuseUnderSudo(flags);
    return undefined;
  } catch (err) {
    return refused(err, flags.json);
  }
}

function context(flags: DeviceFlags): DeviceContext {
  refuseUnderSudo(flags);
  surviveHangup();
  return {
    layout: layoutFor(flags.root),
    manager: new ServiceManager({ systemctl: flags.systemctl }),
    progress: stderrProgress,
    node: flags.node,
  };
}

function addDeviceFlags(cmd: Command, json = true): Command {
  cmd.option('--root <dir>', 'device root folder (default: $EDGE_CLASSIFIER_ROOT or /)');
  if (json) cmd.option('--json', 'print one JSON object');
  return cmd;
}

/**
 * Release and model commands finish what they started even when the SSH
 * session that runs them goes away: SIGHUP is ignored, and output to a
 * closed pipe (EPIPE) is dropped instead of ending the process — an
 * activation killed between its switch and its health gate would leave an
 * unchecked release current with nobody to roll it back.
 */
function surviveHangup(): void {
  process.on('SIGHUP', () => undefined);
  for (const stream of [process.stdout, process.stderr]) {
    stream.removeAllListeners('error');
    stream.on('error', () => undefined);
  }
}

/** Install refusals that come from the device rather than the archive: the report adds doctor's warn and fail lines. */
const DEVICE_CHECKS: ReadonlySet<string> = new Set(['self-test', 'node', 'node-abi', 'disk', 'unit']);

/** Prints a refused operation: its check, message and fix (and `extra` fields); JSON with `--json`. */
function refused(err: unknown, json: boolean | undefined, extra: Record<string, unknown> = {}): number {
  if (!(err instanceof OperationError)) throw err;
  if (json) process.stdout.write(`${JSON.stringify({ ok: false, check: err.check, reason: err.message, fix: err.fix ?? null, ...extra })}\n`);
  process.stderr.write(`edge-classifier: ${err.check} check failed: ${err.message}${err.fix ? `\n  fix: ${err.fix}` : ''}\n`);
  return 1;
}

/** 0 healthy on the target, 1 failed but healthy on the previous one (or refused), 3 not healthy at all. */
function switchExitCode(r: SwitchResult): number {
  if (r.ok) return 0;
  return r.healthy_at_end ? 1 : 3;
}

function printSwitch(r: SwitchResult, json: boolean | undefined): number {
  if (json) process.stdout.write(`${JSON.stringify(r)}\n`);
  else if (r.ok) process.stdout.write(`${r.action}: ${r.target} is current and healthy (was ${r.previous ?? 'none'})\n`);
  else {
    const back = r.rolled_back
      ? r.rollback_healthy
        ? `; rolled back to ${r.previous}, which is healthy`
        : `; rolled back to ${r.previous}, which is NOT healthy either`
      : '';
    process.stdout.write(`${r.action}: ${r.target} FAILED the ${r.check} check: ${r.reason}${back}\n${r.fix ? `  fix: ${r.fix}\n` : ''}`);
  }
  return switchExitCode(r);
}

/**
 * Adds the device-side commands — `pack`, `release …`, `model …`, `health`,
 * `doctor`, `unit` — to the program. `setExit` receives each action's
 * exit-status promise. Each action loads its implementation when it runs,
 * so the other commands start fast.
 */
export function addReleaseCommands(cli: Command, packageRoot: string, setExit: (p: Promise<number>) => void): void {
  cli
    .command('pack')
    .description('build a release archive (edge-classifier-<version>-linux-<arch>.tar.gz + .sha256) of this program')
    .option('--out <dir>', 'folder for the archive', '.')
    .option('--version <version>', 'release version (default: package.json version)')
    .option('--arch <arch>', 'target process.arch: x64, arm64 (default: this machine)')
    .option('--commit <sha>', 'the git commit to record, for a copy of the source without .git (fleet build sends one); default: asked of git')
    .option('--dirty', 'with --commit: the copy had changes not committed')
    .option('--json', 'print one JSON object')
    .action((opts: { out: string; version?: string; arch?: string; commit?: string; dirty?: boolean; json?: boolean }) =>
      setExit(
        (async () => {
          try {
            const { pack } = await import('./pack.js');
            const r = await pack({
              source: packageRoot,
              outDir: path.resolve(opts.out),
              version: opts.version,
              arch: opts.arch,
              progress: stderrProgress,
              commit: opts.commit !== undefined ? { commit: opts.commit, dirty: opts.dirty === true } : undefined,
            });
            process.stdout.write(
              opts.json ? `${JSON.stringify({ ok: true, archive: r.archive, sha256: r.sha256, manifest: r.manifest })}\n` : `${r.archive}\n`,
            );
            return 0;
          } catch (err) {
            return refused(err, opts.json);
          }
        })(),
      ),
    );

  const release = cli.command('release').description('install, activate, roll back and list releases on this device');
  addDeviceFlags(
    release
      .command('install')
      .description('verify an archive, unpack and self-test it; never activatable half-installed')
      .argument('<archive>', 'edge-classifier-<version>-linux-<arch>.tar.gz (its .sha256 beside it)'),
  )
    .option('--node <path>', "the Node.js the service runs (default: the unit's ExecStart)")
    .action((archive: string, opts: DeviceFlags) =>
      setExit(
        (async () => {
          let ctx: DeviceContext | undefined;
          try {
            ctx = context(opts);
            const { installRelease } = await import('./releases.js');
            const r = await installRelease(ctx, path.resolve(archive));
            process.stdout.write(
              opts.json
                ? `${JSON.stringify({ ok: true, version: r.version, dir: r.dir, already: r.already, manifest: r.manifest })}\n`
                : `${r.already ? 'already installed' : 'installed'}: ${r.version}\n`,
            );
            return 0;
          } catch (err) {
            // A refusal this device can cause (its Node.js, its disk, a self-test under its configuration): doctor's findings say what to fix there.
            if (ctx && err instanceof OperationError && DEVICE_CHECKS.has(err.check)) {
              const { doctorFindings } = await import('./releases.js');
              return refused(err, opts.json, { doctor: await doctorFindings(ctx) });
            }
            return refused(err, opts.json);
          }
        })(),
      ),
    );
  addDeviceFlags(release.command('activate').description('switch current to VERSION, restart, health gate; roll back on failure').argument('<version>'))
    .option('--health-timeout <s>', 'seconds for the daemon to report healthy after READY', seconds('--health-timeout'), DEFAULT_HEALTH_TIMEOUT_S)
    .option('--node <path>', "the Node.js the service runs (default: the unit's ExecStart)")
    .action((version: string, opts: DeviceFlags & { healthTimeout: number }) =>
      setExit(
        import('./releases.js')
          .then(({ activateRelease }) => activateRelease(context(opts), version, { healthTimeoutMs: opts.healthTimeout * 1000 }))
          .then(
            (r) => printSwitch(r, opts.json),
            (err) => refused(err, opts.json),
          ),
      ),
    );
  addDeviceFlags(release.command('rollback').description('activate the previous release, with the same health gate'))
    .option('--health-timeout <s>', 'seconds for the daemon to report healthy after READY', seconds('--health-timeout'), DEFAULT_HEALTH_TIMEOUT_S)
    .option('--node <path>', "the Node.js the service runs (default: the unit's ExecStart)")
    .action((opts: DeviceFlags & { healthTimeout: number }) =>
      setExit(
        import('./releases.js')
          .then(({ rollbackRelease }) => rollbackRelease(context(opts), { healthTimeoutMs: opts.healthTimeout * 1000 }))
          .then(
            (r) => printSwitch(r, opts.json),
            (err) => refused(err, opts.json),
          ),
      ),
    );
  addDeviceFlags(release.command('list').description('installed releases: current, previous, history with results')).action((opts: DeviceFlags) =>
    setExit(
      (async () => {
        const underSudo = sudoRefusal(opts);
        if (underSudo !== undefined) return underSudo;
        const { listReleases } = await import('./releases.js');
        const l = await listReleases(layoutFor(opts.root));
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(l)}\n`);
          return 0;
        }
        const lines = [`current: ${l.current ?? 'none'}   previous: ${l.previous ?? 'none'}`];
        for (const r of l.releases)
          lines.push(
            `${r.status.padEnd(9)} ${r.version.padEnd(16)} ${r.commit.slice(0, 12)} linux-${r.arch} abi ${r.node_abi} built ${r.built_at}${r.last_result ? `  ${r.last_result}` : ''}`,
          );
        if (l.history.length > 0) lines.push('history:');
        for (const e of l.history) lines.push(`  ${e.at} ${e.event} ${e.version ?? ''}${e.to ? ` → ${e.to}` : ''}${e.reason ? `: ${e.reason}` : ''}`);
        process.stdout.write(`${lines.join('\n')}\n`);
        return 0;
      })(),
    ),
  );
  addDeviceFlags(release.command('prune').description('remove old releases, never the current or previous one'))
    .requiredOption('--keep <n>', 'releases to keep (newest installs first)', whole('--keep'))
    .action((opts: DeviceFlags & { keep: number }) =>
      setExit(
        import('./releases.js')
          .then(({ pruneReleases }) => pruneReleases(context(opts), opts.keep))
          .then(
            (removed) => {
              process.stdout.write(opts.json ? `${JSON.stringify({ ok: true, removed })}\n` : `removed: ${removed.join(', ') || 'nothing'}\n`);
              return 0;
            },
            (err) => refused(err, opts.json),
          ),
      ),
    );

  const model = cli.command('model').description('install a model without a code release, or roll it back');
  addDeviceFlags(
    model
      .command('install')
      .description('store, check, switch the configured model and reload the daemon without a restart; roll back on failure')
      .argument('<file>', '.tflite model'),
  )
    .option('--labels <file>', "labels file (default: the labels in the model's metadata)")
    .option('--health-timeout <s>', 'seconds for the daemon to report healthy after the reload', seconds('--health-timeout'), DEFAULT_HEALTH_TIMEOUT_S)
    .option('--node <path>', "the Node.js the service runs (default: the unit's ExecStart)")
    .action((file: string, opts: DeviceFlags & { labels?: string; healthTimeout: number }) =>
      setExit(
        import('./model.js')
          .then(({ installModel }) =>
            installModel(context(opts), path.resolve(file), opts.labels === undefined ? undefined : path.resolve(opts.labels), {
              healthTimeoutMs: opts.healthTimeout * 1000,
              programDir: packageRoot,
            }),
          )
          .then(
            (r) => printSwitch(r, opts.json),
            (err) => refused(err, opts.json),
          ),
      ),
    );
  addDeviceFlags(model.command('rollback').description('put back the model that ran before the last model switch'))
    .option('--health-timeout <s>', 'seconds for the daemon to report healthy after the reload', seconds('--health-timeout'), DEFAULT_HEALTH_TIMEOUT_S)
    .option('--node <path>', "the Node.js the service runs (default: the unit's ExecStart)")
    .action((opts: DeviceFlags & { healthTimeout: number }) =>
      setExit(
        import('./model.js')
          .then(({ rollbackModel }) => rollbackModel(context(opts), { healthTimeoutMs: opts.healthTimeout * 1000, programDir: packageRoot }))
          .then(
            (r) => printSwitch(r, opts.json),
            (err) => refused(err, opts.json),
          ),
      ),
    );

  addDeviceFlags(cli.command('health').description("the running daemon's health, from its health file; exit 0 healthy, 1 not")).action((opts: DeviceFlags) =>
    setExit(
      (async () => {
        const underSudo = sudoRefusal(opts);
        if (underSudo !== undefined) return underSudo;
        const { formatHealth, healthJson, judgeHealth, readHealthRecord } = await import('./health.js');
        const layout = layoutFor(opts.root);
        const report = judgeHealth(await readHealthRecord(layout.healthFile), layout.healthFile);
        process.stdout.write(opts.json ? `${JSON.stringify(healthJson(report))}\n` : `${formatHealth(report)}\n`);
        return report.healthy ? 0 : 1;
      })(),
    ),
  );

  addDeviceFlags(cli.command('doctor').description("the device's preflight: each check ok / warn / fail with the fix; exit 0 when none fails"))
    .option('--node <path>', "the Node.js to check (default: the unit's ExecStart)")
    .action((opts: DeviceFlags) =>
      setExit(
        (async () => {
          const underSudo = sudoRefusal(opts);
          if (underSudo !== undefined) return underSudo;
          const { doctor, formatDoctor } = await import('./doctor.js');
          const report = await doctor({ layout: layoutFor(opts.root), node: opts.node });
          process.stdout.write(opts.json ? `${JSON.stringify(report)}\n` : `${formatDoctor(report)}\n`);
          return report.ok ? 0 : 1;
        })(),
      ),
    );

  addDeviceFlags(cli.command('unit').description('print the systemd unit for this root and Node.js (what bootstrap installs)'), false)
    .option('--node <path>', 'the Node.js for ExecStart', '/usr/bin/node')
    .action((opts: DeviceFlags & { node: string }) =>
      setExit(
        (async () => {
          const { renderUnit } = await import('./unit-file.js');
          const template = await readFile(path.join(packageRoot, 'systemd', 'edge-classifier.service'), 'utf8');
          process.stdout.write(renderUnit(template, layoutFor(opts.root), opts.node));
          return 0;
        })(),
      ),
    );
}
