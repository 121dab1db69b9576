/**
 * `fleet bootstrap HOST… ARCHIVE`: set up fresh devices in one step. The
 * archive (and an optional configuration) is sent to the device, then
 * `deploy/bootstrap.sh` runs there as root (through `sudo -n`, which
 * Raspberry Pi OS's first user may use without a password) and does the
 * work: service user, folders, unit, configuration, first release through
 * the release's own install/activate, the `edge-classifier` command, a
 * sudoers rule limited to the device commands, `doctor`. Afterwards fleet
 * reads `doctor --json` through that rule, which proves it works.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { archOfMachine, DeviceCommandError, type DoctorReport, lastLine, RemoteDevice } from './device.js';
import type { FleetHost } from './inventory.js';
import type { HostOutcome, PushContext, ReleaseArchive } from './push.js';
import { CancelledError, SshError, SshSession, shellCommand } from './ssh.js';
import { removeStaged, TransferError, upload } from './transfer.js';

/** The set-up script, shipped in the repository's deploy/ folder. */
const BOOTSTRAP_SCRIPT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'deploy', 'bootstrap.sh');

export interface BootstrapOptions {
  /** A configuration file for the device; default: the template (an existing one is kept either way). */
  readonly config?: string;
  /** The device's service user; default edge-classifier. */
  readonly serviceUser?: string;
}

/** A bootstrap outcome with the device's doctor report when it could be read. */
export interface BootstrapOutcome extends HostOutcome {
  readonly doctor?: DoctorReport;
  /** When it failed: the last lines the device printed (its own commands' messages). */
  readonly log?: readonly string[];
}

/** Sets up one host; never throws (every failure is an outcome). */
export async function bootstrapHost(host: FleetHost, archive: ReleaseArchive, options: BootstrapOptions, ctx: PushContext): Promise<BootstrapOutcome> {
  const started = Date.now();
  const note = (t: string): void => ctx.progress.update(host.name, t);
  const session = new SshSession(host, { controlDir: ctx.controlDir, acceptNewHostKeys: ctx.acceptNewHostKeys });
  const done = (o: Omit<BootstrapOutcome, 'host' | 'ms'>): BootstrapOutcome => ({ host: host.name, ms: Date.now() - started, ...o });
  try {
    note('connecting');
    await session.connect(ctx.kill);
    const device = new RemoteDevice(session);
    const facts = await device.facts(ctx.kill);
    const arch = archOfMachine(facts.machine);
    if (arch !== archive.arch) {
      return done({
        ok: false,
        status: 'refused',
        before: undefined,
        now: undefined,
        detail: `arch: the archive is for linux-${archive.arch}, ${host.name} is linux-${arch} (uname -m: ${facts.machine})`,
      });
    }
    const who = await session.run(['id', '-un']);
    const deployUser = who.stdout.trim();
    const files = [archive.file, archive.sha256File, ...(options.config !== undefined ? [options.config] : [])];
    note('sending');
    await upload(session, files, facts.stagingDir, {
      scp: !facts.rsync,
      bwlimitKiBps: ctx.bwlimitKiBps,
      signal: ctx.stop,
      onProgress: (p) => note(`sending ${p.percent}% ${p.rate}`),
    });
    const staged = (f: string): string => `${facts.stagingDir}/${path.basename(f)}`;
    const args = [
      '--archive',
      staged(archive.file),
      '--version',
      archive.version,
      '--deploy-user',
      deployUser,
      ...(options.config !== undefined ? ['--config', staged(options.config)] : []),
      ...(options.serviceUser !== undefined ? ['--service-user', options.serviceUser] : []),
      ...(ctx.healthTimeoutS !== undefined ? ['--health-timeout', String(ctx.healthTimeoutS)] : []),
    ];
    note('setting up');
    const log: string[] = [];
    const deviceLines: string[] = [];
    const r = await session.runShell(shellCommand([...(host.sudo ? ['sudo', '-n', '--'] : []), 'sh', '-s', '--', ...args]), {
      stdin: readFileSync(BOOTSTRAP_SCRIPT),
      signal: ctx.kill,
      onStderrLine: (l) => {
        log.push(l);
        if (l.startsWith('bootstrap: ')) note(l.slice('bootstrap: '.length));
        else if (l.trim() !== '') deviceLines.push(l);
      },
    });
    await removeStaged(
      session,
      facts.stagingDir,
      files.map((f) => path.basename(f)),
    );
    let doctor: DoctorReport | undefined;
    try {
      doctor = (await device.json<DoctorReport>(['doctor'], { signal: ctx.kill })).value;
    } catch (err) {
      if (!(err instanceof DeviceCommandError)) throw err;
    }
    if (r.code !== 0) {
      const why =
        log
          .filter((l) => l.startsWith('bootstrap: error: '))
          .slice(-1)[0]
          ?.slice('bootstrap: error: '.length) ?? lastLine(r.stderr);
      const sudo = /sudo: a (terminal|password) is required/.test(r.stderr);
      return done({
        ok: false,
        status: 'failed',
        before: undefined,
        now: undefined,
        detail: sudo ? `sudo asks ${deployUser} for a password` : why,
        hint: sudo
          ? 'bootstrap needs passwordless sudo once (Raspberry Pi OS gives it to its first user), or log in as root with sudo: false'
          : 'fix what it says and run bootstrap again (each step is safe to repeat)',
        doctor,
        log: deviceLines.slice(-12),
      });
    }
    return done({
      ok: doctor?.ok !== false,
      status: 'updated',
      before: undefined,
      now: archive.version,
      detail: `set up; runs ${archive.version}${doctor ? `; doctor: ${doctor.ok ? 'ok' : 'problems'}` : ''}`,
      doctor,
    });
  } catch (err) {
    const base = { ok: false, before: undefined, now: undefined } as const;
    if (err instanceof SshError) {
      return done({
        ...base,
        status:
          err.kind === 'host-key-changed'
            ? 'host key changed'
            : err.kind === 'host-key-unknown'
              ? 'host key unknown'
              : err.kind === 'auth'
                ? 'login refused'
                : err.kind === 'unreachable'
                  ? 'unreachable'
                  : 'ssh failed',
        detail: err.message,
        hint: err.hint,
      });
    }
    if (err instanceof TransferError) return done({ ...base, status: 'transfer failed', detail: err.message, hint: err.hint });
    if (err instanceof CancelledError) return done({ ...base, status: 'interrupted', detail: 'cancelled' });
    if (err instanceof DeviceCommandError) return done({ ...base, status: 'failed', detail: err.message, hint: err.hint });
    return done({ ...base, status: 'failed', detail: (err as Error).message });
  } finally {
    await session.close();
  }
}
