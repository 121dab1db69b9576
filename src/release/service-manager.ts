import { execCapture, lastLines } from './exec.js';
import { UNIT_NAME } from './layout.js';

/** What `systemctl show` says about the unit, the fields the health gate needs. */
export interface UnitStatus {
  /** `active`, `activating`, `deactivating`, `reloading`, `inactive`, `failed`. */
  readonly activeState: string;
  /** e.g. `running`, `start`, `auto-restart`, `dead`, `failed`. */
  readonly subState: string;
  /** The main process id, 0 when none. */
  readonly mainPid: number;
  /** `success`, `exit-code`, `signal`, `timeout`, `watchdog`, `start-limit-hit`, ... */
  readonly result: string;
  /** Exit status of the last main process (meaningful once it has exited). */
  readonly execMainStatus: number;
  /** Automatic restarts since the unit was started by hand. */
  readonly nRestarts: number;
  /** `TimeoutStartSec=` in ms; `Infinity` for `infinity`. */
  readonly timeoutStartMs: number;
  /** `LoadState`: `loaded`, `not-found`, ... */
  readonly loadState: string;
}

const SHOW_PROPERTIES = ['LoadState', 'ActiveState', 'SubState', 'MainPID', 'Result', 'ExecMainStatus', 'NRestarts', 'TimeoutStartUSec'];

/**
 * Parses a systemd time span as `systemctl show` prints it (`2min`,
 * `1min 30s`, `500ms`, `infinity`; systemd.time(7)) into ms.
 * @throws Error naming the text when it is not one.
 */
export function parseTimespan(text: string): number {
  const t = text.trim();
  if (t === 'infinity') return Infinity;
  const units: Record<string, number> = {
    us: 0.001,
    usec: 0.001,
    ms: 1,
    msec: 1,
    s: 1000,
    sec: 1000,
    m: 60_000,
    min: 60_000,
    h: 3_600_000,
    hr: 3_600_000,
    d: 86_400_000,
  };
  let total = 0;
  let matched = '';
  for (const m of t.matchAll(/(\d+(?:\.\d+)?)\s*([a-z]*)/g)) {
    const unit = m[2] === '' ? 's' : m[2]!;
    const factor = units[unit];
    if (factor === undefined) throw new Error(`cannot read the time span ${JSON.stringify(text)}: unknown unit ${unit}`);
    total += Number(m[1]) * factor;
    matched += m[0];
  }
  if (matched.replace(/\s/g, '') !== t.replace(/\s/g, '') || t === '') throw new Error(`cannot read the time span ${JSON.stringify(text)}`);
  return total;
}

/**
 * The service manager, through `systemctl` (the real one on a device; a
 * stand-in on PATH in tests). Commands run with an argument array and a
 * bound on their time; failures throw an Error with systemctl's own words.
 */
export class ServiceManager {
  readonly unit: string;
  private readonly systemctl: string;
  private readonly env: NodeJS.ProcessEnv;

  constructor(options: { systemctl?: string; unit?: string; env?: NodeJS.ProcessEnv } = {}) {
    this.systemctl = options.systemctl ?? 'systemctl';
    this.unit = options.unit ?? UNIT_NAME;
    this.env = options.env ?? process.env;
  }

  private async run(args: string[], timeoutMs = 30_000): Promise<string> {
    const r = await execCapture(this.systemctl, args, { env: this.env, timeoutMs });
    if (r.spawnError) throw new Error(`cannot run ${this.systemctl} (${r.spawnError.code ?? r.spawnError.message}): is this a systemd machine?`);
    if (r.code !== 0)
      throw new Error(
        `${this.systemctl} ${args.join(' ')} failed (${r.timedOut ? 'timed out' : `exit ${r.code ?? r.signal}`}): ${lastLines(r.stderr || r.stdout) || 'no message'}`,
      );
    return r.stdout;
  }

  /** The unit's state from `systemctl show`. */
  async show(): Promise<UnitStatus> {
    const out = await this.run(['show', '-p', SHOW_PROPERTIES.join(','), this.unit]);
    const p = new Map<string, string>();
    for (const line of out.split('\n')) {
      const eq = line.indexOf('=');
      if (eq > 0) p.set(line.slice(0, eq), line.slice(eq + 1));
    }
    const num = (k: string) => {
      const n = Number(p.get(k) ?? '0');
      return Number.isFinite(n) ? n : 0;
    };
    let timeoutStartMs = 90_000;
    try {
      timeoutStartMs = parseTimespan(p.get('TimeoutStartUSec') ?? '1min 30s');
    } catch {
      // keep systemd's default
    }
    return {
      loadState: p.get('LoadState') ?? '',
      activeState: p.get('ActiveState') ?? '',
      subState: p.get('SubState') ?? '',
      mainPid: num('MainPID'),
      result: p.get('Result') ?? '',
      execMainStatus: num('ExecMainStatus'),
      nRestarts: num('NRestarts'),
      timeoutStartMs,
    };
  }

  /**
   * Restarts the unit and waits for the job, as `systemctl restart` does: for
   * `Type=notify` until READY=1, failing when the process exits first or
   * `TimeoutStartSec=` passes. `timeoutMs` bounds the wait on our side.
   */
  async restart(timeoutMs: number): Promise<void> {
    await this.run(['restart', this.unit], timeoutMs);
  }

  /**
   * `systemctl reset-failed`: clears a failed state and the unit's start
   * rate limit (`StartLimitBurst=` starts within `StartLimitIntervalSec=`),
   * so a start asked for on purpose is not refused with start-limit-hit
   * because earlier failed starts used up the burst.
   */
  async resetFailed(): Promise<void> {
    await this.run(['reset-failed', this.unit]);
  }

  /** Stops the unit and waits for it. */
  async stop(): Promise<void> {
    await this.run(['stop', this.unit], 60_000);
  }

  /** Runs the unit's `ExecReload=` (SIGHUP to the daemon) and waits for it. */
  async reload(): Promise<void> {
    await this.run(['reload', this.unit]);
  }
}
