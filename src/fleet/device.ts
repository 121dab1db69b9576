/**
 * The device-side commands (`edge-classifier release|model|health|doctor`),
 * run over SSH and read back as the JSON each prints. Everything that must be
 * safe when the link drops happens on the device, inside those commands:
 * fleet only starts them and reports what they say.
 */
import type { FleetHost } from './inventory.js';
import { shellQuote as quote, type RemoteResult, type SshSession } from './ssh.js';

/**
 * What `release install|activate|rollback` and `model install|rollback`
 * print (one JSON object). Install: `version`, `already`; a switch:
 * `target`, `previous`, `rolled_back`, `healthy_at_end`; a refusal or a
 * failed gate: `check` (the check that failed), `reason`, `fix`.
 */
export interface DeviceActionResult {
  readonly ok: boolean;
  readonly action?: string;
  readonly version?: string;
  readonly already?: boolean;
  readonly target?: string;
  readonly previous?: string | null;
  readonly rolled_back?: boolean;
  readonly rollback_healthy?: boolean;
  readonly healthy_at_end?: boolean;
  readonly check?: string;
  readonly reason?: string;
  readonly fix?: string | null;
  readonly health?: DeviceHealth;
}

/** What `health --json` prints. */
export interface DeviceHealth {
  readonly healthy: boolean;
  readonly reasons?: readonly string[];
  readonly pid?: number | null;
  readonly release?: string | null;
  readonly model?: { readonly path?: string; readonly sha256?: string; readonly name?: string } | null;
  readonly ready?: boolean;
  readonly since?: string | null;
  readonly fps?: number | null;
  readonly classified?: number;
  readonly problems?: readonly { readonly id?: string; readonly message?: string; readonly severity?: string }[];
  readonly updated_at?: string | null;
}

/** What `release list --json` prints. */
export interface ReleaseList {
  readonly current: string | null;
  readonly previous: string | null;
  readonly releases: readonly { readonly version: string; readonly status?: string; readonly installed_at?: string }[];
  readonly history?: readonly Record<string, unknown>[];
}

/** What `doctor --json` prints. */
export interface DoctorReport {
  readonly ok: boolean;
  readonly checks: readonly { readonly name: string; readonly status: 'ok' | 'warn' | 'fail'; readonly detail?: string; readonly fix?: string }[];
}

/** Facts fleet needs before sending anything: where uploads go and what the device is. */
export interface DeviceFacts {
  /** The login's home folder (absolute). */
  readonly home: string;
  /** `uname -m`, e.g. aarch64, x86_64. */
  readonly machine: string;
  /** rsync is installed (else uploads use scp). */
  readonly rsync: boolean;
  /** The device-side program is there (else the device needs `fleet bootstrap`). */
  readonly installed: boolean;
  /** Absolute staging folder for uploads. */
  readonly stagingDir: string;
}

/** A device command that did not give the JSON it should have. */
export class DeviceCommandError extends Error {
  constructor(
    message: string,
    readonly hint: string,
    readonly result?: RemoteResult,
  ) {
    super(message);
    this.name = 'DeviceCommandError';
  }
}

/** Node.js `process.arch` names (used in archive names) for `uname -m` values. */
const MACHINE_ARCH: Record<string, string> = { x86_64: 'x64', amd64: 'x64', aarch64: 'arm64', arm64: 'arm64', armv7l: 'arm', armv6l: 'arm' };

/** The Node.js arch (`x64`, `arm64`, `arm`) of a `uname -m` value, or the value itself when unknown. */
export const archOfMachine = (machine: string): string => MACHINE_ARCH[machine] ?? machine;

/** The last non-empty line of a text, trimmed ('' when none). */
export const lastLine = (text: string): string =>
  text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .slice(-1)[0] ?? '';

/** The first JSON object printed on stdout (the device commands print exactly one). */
function parseJson<T>(r: RemoteResult): T | undefined {
  const text = r.stdout.trim();
  const start = text.indexOf('{');
  if (start < 0) return undefined;
  try {
    return JSON.parse(text.slice(start)) as T;
  } catch {
    return undefined;
  }
}

export interface CommandOptions {
  /** Each line the device command prints on stderr (its progress). */
  readonly onProgress?: (line: string) => void;
  readonly signal?: AbortSignal;
}

/** One device reached over an SSH session. */
export class RemoteDevice {
  constructor(readonly session: SshSession) {}

  get host(): FleetHost {
    return this.session.host;
  }

  /** Reads the facts in one round trip. Rejects with SshError when the host cannot be reached. */
  async facts(signal?: AbortSignal): Promise<DeviceFacts> {
    const h = this.host;
    const cmd = h.command.includes('/') ? `[ -x ${quote(h.command)} ]` : `command -v ${quote(h.command)} >/dev/null 2>&1`;
    const r = await this.session.runShell(
      `printf 'home=%s\\n' "$HOME"; printf 'machine=%s\\n' "$(uname -m)"; ` +
        `if command -v rsync >/dev/null 2>&1; then echo rsync=yes; else echo rsync=no; fi; ` +
        `if ${cmd}; then echo installed=yes; else echo installed=no; fi`,
      { signal },
    );
    const kv = Object.fromEntries(
      r.stdout
        .split('\n')
        .filter((l) => l.includes('='))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    const home = kv.home ?? '';
    if (r.code !== 0 || home === '' || kv.machine === undefined) {
      throw new DeviceCommandError(
        `${h.name}: cannot read the device's facts (exit ${r.code}): ${lastLine(r.stderr) || 'no output'}`,
        'check that the login has a POSIX shell',
        r,
      );
    }
    const stagingDir = h.stagingDir.startsWith('/') ? h.stagingDir : `${home.replace(/\/+$/, '')}/${h.stagingDir}`;
    return { home, machine: kv.machine, rsync: kv.rsync === 'yes', installed: kv.installed === 'yes', stagingDir };
  }

  /** Runs `edge-classifier ARGS` (through sudo when the inventory says so). */
  async command(args: readonly string[], options: CommandOptions = {}): Promise<RemoteResult> {
    return this.session.run([this.host.command, ...args], {
      sudo: this.host.sudo,
      signal: options.signal,
      // The device prefixes its progress lines with the program's name.
      onStderrLine: options.onProgress ? (l) => l.trim() !== '' && options.onProgress!(l.trim().replace(/^edge-classifier: /, '')) : undefined,
    });
  }

  /**
   * Runs a device command that prints one JSON object (`--json` is added)
   * and returns it with the exit status. Rejects with DeviceCommandError
   * when there is no JSON (the command is missing, sudo refused, a crash).
   */
  async json<T>(args: readonly string[], options: CommandOptions = {}): Promise<{ code: number; value: T; stderr: string }> {
    const r = await this.command([...args, '--json'], options);
    const value = parseJson<T>(r);
    if (value === undefined) throw this.explain(args, r);
    return { code: r.code, value, stderr: r.stderr };
  }

  /** Turns a command's failure without JSON into an error that says what to do. */
  explain(args: readonly string[], r: RemoteResult): DeviceCommandError {
    const what = `${this.host.name}: ${this.host.command} ${args.join(' ')}`;
    const err = lastLine(r.stderr) || lastLine(r.stdout) || 'no output';
    if (r.code === 127 || /command not found|: not found|No such file or directory/.test(r.stderr)) {
      return new DeviceCommandError(
        `${what}: the program is not installed (${err})`,
        `set up the device first: edge-classifier fleet bootstrap ${this.host.name} ARCHIVE`,
        r,
      );
    }
    if (/sudo: a (terminal|password) is required|sudo: .*not allowed|is not in the sudoers file|may not run sudo/.test(r.stderr)) {
      return new DeviceCommandError(
        `${what}: sudo refused (${err})`,
        `the login needs the sudoers rule fleet bootstrap installs (/etc/sudoers.d/edge-classifier), or set sudo: false for a root login`,
        r,
      );
    }
    if (/sudo: (command )?not found/.test(r.stderr)) {
      return new DeviceCommandError(`${what}: sudo is not installed`, 'install sudo on the device, or log in as root and set sudo: false', r);
    }
    return new DeviceCommandError(`${what} failed (exit ${r.code}): ${err}`, 'see the device log: journalctl -u edge-classifier', r);
  }
}
