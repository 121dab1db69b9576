/**
 * `fleet status` and `fleet doctor`: read every host at once (bounded) and
 * show one row per host. Read-only: nothing on a device changes.
 */
import { DeviceCommandError, type DeviceHealth, type DoctorReport, RemoteDevice } from './device.js';
import type { FleetHost } from './inventory.js';
import { modelLabel, readHealth } from './push.js';
import { formatTable } from './report.js';
import { CancelledError, SshError, SshSession } from './ssh.js';

/** Runs `fn` over `items` with at most `limit` at once; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return results;
}

/** One host's row of `fleet status`. */
export interface HostStatusRow {
  readonly host: string;
  /** healthy, unhealthy, or why the host could not be read (unreachable, host key changed, not set up …). */
  readonly state: string;
  readonly health?: DeviceHealth;
  /** Why: the device's reasons when unhealthy, the SSH error otherwise. */
  readonly detail: string;
  readonly hint?: string;
}

export interface ReadOptions {
  readonly controlDir: string;
  readonly acceptNewHostKeys: boolean;
  readonly parallel: number;
  readonly signal: AbortSignal;
}

const sshState = (err: SshError): string =>
  ({ 'host-key-changed': 'host key changed', 'host-key-unknown': 'host key unknown', auth: 'login refused', unreachable: 'unreachable', ssh: 'ssh failed' })[
    err.kind
  ];

/** Connects, runs `fn`, closes; SSH and device failures become a row with state and hint. */
async function readHost<R>(
  host: FleetHost,
  options: ReadOptions,
  fn: (device: RemoteDevice) => Promise<R>,
  failed: (state: string, detail: string, hint?: string) => R,
): Promise<R> {
  const session = new SshSession(host, { controlDir: options.controlDir, acceptNewHostKeys: options.acceptNewHostKeys });
  try {
    await session.connect(options.signal);
    const device = new RemoteDevice(session);
    const facts = await device.facts(options.signal);
    if (!facts.installed) return failed('not set up', `${host.command} is not installed`, `edge-classifier fleet bootstrap ${host.name} ARCHIVE`);
    return await fn(device);
  } catch (err) {
    if (err instanceof SshError) return failed(sshState(err), err.message, err.hint);
    if (err instanceof DeviceCommandError) return failed('error', err.message, err.hint);
    if (err instanceof CancelledError) return failed('interrupted', 'cancelled');
    return failed('error', (err as Error).message);
  } finally {
    await session.close();
  }
}

/** Reads `health --json` from every host. */
export async function readStatus(hosts: readonly FleetHost[], options: ReadOptions): Promise<HostStatusRow[]> {
  return mapLimit(hosts, options.parallel, (host) =>
    readHost<HostStatusRow>(
      host,
      options,
      async (device) => {
        const health = await readHealth(device, options.signal);
        if (health === undefined)
          return { host: host.name, state: 'error', detail: 'health --json gave no answer', hint: 'run edge-classifier doctor on the device' };
        const reasons = health.reasons ?? [];
        return { host: host.name, state: health.healthy ? 'healthy' : 'unhealthy', health, detail: health.healthy ? '' : reasons.join('; ') || 'unhealthy' };
      },
      (state, detail, hint) => ({ host: host.name, state, detail, hint }),
    ),
  );
}

/** "3s", "4m 05s", "2h 10m", "3d 4h": how long ago an ISO time was, from `now`. */
export function age(iso: string | null | undefined, now: number = Date.now()): string {
  if (iso == null) return '-';
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return '-';
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/** The `fleet status` table: HOST HEALTH RELEASE MODEL SINCE FPS PROBLEMS CHECKED DETAIL. */
export function statusTable(rows: readonly HostStatusRow[], now: number = Date.now()): string {
  const table = formatTable(
    ['HOST', 'HEALTH', 'RELEASE', 'MODEL', 'SINCE', 'FPS', 'PROBLEMS', 'CHECKED', 'DETAIL'],
    rows.map((r) => {
      const h = r.health;
      const problems = h?.problems ?? [];
      return [
        r.host,
        r.state,
        h?.release ?? '-',
        modelLabel(h?.model) ?? '-',
        h?.since != null ? `${age(h.since, now)} ago` : '-',
        h?.fps != null ? h.fps.toFixed(1) : '-',
        problems.length === 0 ? (h ? '0' : '-') : `${problems.length}: ${problems.map((p) => p.id ?? '?').join(', ')}`,
        h?.updated_at != null ? `${age(h.updated_at, now)} ago` : '-',
        r.detail,
      ];
    }),
  );
  const hints = rows.filter((r) => r.hint !== undefined).map((r) => `  ${r.host}: ${r.hint}`);
  return hints.length > 0 ? `${table}\n\nWhat to do:\n${hints.join('\n')}` : table;
}

/** One host's `doctor --json`, or why it could not be read. */
export interface HostDoctorRow {
  readonly host: string;
  readonly report?: DoctorReport;
  readonly state: string;
  readonly detail: string;
  readonly hint?: string;
}

/** Runs `doctor --json` on every host. */
export async function readDoctor(hosts: readonly FleetHost[], options: ReadOptions): Promise<HostDoctorRow[]> {
  return mapLimit(hosts, options.parallel, (host) =>
    readHost<HostDoctorRow>(
      host,
      options,
      async (device) => {
        const { value } = await device.json<DoctorReport>(['doctor'], { signal: options.signal });
        const count = (s: string) => value.checks.filter((c) => c.status === s).length;
        return { host: host.name, report: value, state: value.ok ? 'ok' : 'fail', detail: `${count('ok')} ok, ${count('warn')} warn, ${count('fail')} fail` };
      },
      (state, detail, hint) => ({ host: host.name, state, detail, hint }),
    ),
  );
}

/** The `fleet doctor` report: a table, then every warn/fail line with its fix. */
export function doctorTable(rows: readonly HostDoctorRow[]): string {
  const table = formatTable(
    ['HOST', 'DOCTOR', 'DETAIL'],
    rows.map((r) => [r.host, r.state, r.detail]),
  );
  const lines: string[] = [];
  for (const r of rows) {
    for (const c of r.report?.checks ?? []) {
      if (c.status !== 'ok') lines.push(`  ${r.host}: ${c.status} ${c.name}: ${c.detail ?? ''}${c.fix ? ` — fix: ${c.fix}` : ''}`);
    }
    if (r.hint !== undefined) lines.push(`  ${r.host}: ${r.hint}`);
  }
  return lines.length > 0 ? `${table}\n\n${lines.join('\n')}` : table;
}
