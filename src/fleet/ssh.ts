/**
 * SSH to one device with OpenSSH's own `ssh`: one shared master connection
 * per host (ControlMaster), commands and file transfers multiplexed over it.
 *
 * Always set: `BatchMode=yes` (keys or an agent, never a password prompt),
 * `StrictHostKeyChecking=yes` (or `accept-new` when the operator asks: an
 * unknown key is recorded, a changed one is still refused), a connect
 * timeout and keepalives that notice a dead link within ~30 s. The options
 * fleet sets come first on the command line, so they win over ssh_config
 * and the inventory's `ssh_options` (ssh takes the first value it sees).
 *
 * ssh's own failures (exit 255 with its messages on stderr) become an
 * SshError whose `kind` says what happened and `hint` what to do.
 */
import { type ChildProcess, type StdioOptions, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { FleetHost } from './inventory.js';

/** Why ssh itself failed. */
export type SshFailure = 'host-key-changed' | 'host-key-unknown' | 'unreachable' | 'auth' | 'ssh';

/** ssh could not run the command on the device (exit 255 with an ssh message). */
export class SshError extends Error {
  constructor(
    readonly kind: SshFailure,
    message: string,
    readonly hint: string,
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'SshError';
  }
}

/** The operation was cancelled (Ctrl-C) before the remote command finished. */
export class CancelledError extends Error {
  constructor(what: string) {
    super(`${what}: cancelled`);
    this.name = 'CancelledError';
  }
}

/** Seconds ssh waits for the TCP connection and the SSH handshake. */
const CONNECT_TIMEOUT_S = 10;
/** Keepalive every 10 s, 3 unanswered: a dead link ends the command after ~30 s. */
const SERVER_ALIVE = ['ServerAliveInterval=10', 'ServerAliveCountMax=3'];
/** A master connection left behind (fleet killed) closes itself after this idle time, in s. */
const CONTROL_PERSIST_S = 120;

/**
 * Spawns ssh with SIGINT ignored: a Ctrl-C on the terminal reaches every
 * process of the foreground group, and fleet decides itself which ssh to end
 * (the first Ctrl-C lets device commands finish). OpenSSH keeps an inherited
 * "ignore" for SIGINT instead of installing its own handler.
 */
function spawnIgnoringInt(bin: string, args: readonly string[], stdio: StdioOptions): ChildProcess {
  return spawn('/bin/sh', ['-c', 'trap "" INT; exec "$0" "$@"', bin, ...args], { stdio });
}

/**
 * Quotes a word for a POSIX shell: plain words stay as they are, anything
 * else goes in single quotes (a `'` inside becomes `'\''`). The remote end
 * of ssh always runs the command through the login shell.
 */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_/.:=@%+,-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Quotes every word and joins them with spaces: a command line for a POSIX shell. */
export const shellCommand = (argv: readonly string[]): string => argv.map(shellQuote).join(' ');

/** The `[user@]host` ssh and rsync address a host by (IPv6 literals in brackets for rsync). */
function hostPart(host: FleetHost, forRsync: boolean): string {
  const addr = forRsync && host.address.includes(':') ? `[${host.address}]` : host.address;
  return host.user !== undefined ? `${host.user}@${addr}` : addr;
}

/** How `[address]:port` appears in known_hosts and ssh's messages. */
function knownHostsName(host: FleetHost): string {
  return host.port === 22 ? host.address : `[${host.address}]:${host.port}`;
}

/**
 * Turns ssh's stderr (after exit 255) into an SshError with a hint, or
 * undefined when it does not look like an ssh failure (a remote command may
 * itself exit 255).
 */
export function classifySshFailure(host: FleetHost, stderr: string): SshError | undefined {
  const known = host.knownHostsFile ?? '~/.ssh/known_hosts';
  const name = knownHostsName(host);
  const last =
    stderr
      .trim()
      .split('\n')
      .filter((l) => l.trim() !== '' && !/^@+$/.test(l.trim()))
      .slice(-1)[0] ?? '';
  if (/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for .* has changed/.test(stderr)) {
    const fp = /(SHA256:[A-Za-z0-9+/=]+)/.exec(stderr)?.[1];
    return new SshError(
      'host-key-changed',
      `host key changed: ${name} now presents ${fp !== undefined ? `key ${fp}` : 'another key'}, not the one recorded in ${known}`,
      `if the device was reinstalled, check that fingerprint on its console (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then remove the old key with: ssh-keygen -f ${shellQuote(known)} -R ${shellQuote(name)}; otherwise someone may be intercepting the connection`,
      stderr,
    );
  }
  if (/Host key verification failed|No \S+ host key is known|host key is not known/.test(stderr)) {
    return new SshError(
      'host-key-unknown',
      `unknown host key: ${name} is not in ${known}`,
      `check the device's key fingerprint and add it (ssh-keyscan -p ${host.port} ${host.address} >> ${known}), or run once with --accept-new-host-keys`,
      stderr,
    );
  }
  if (/Permission denied \(|Too many authentication failures|no mutual signature/.test(stderr)) {
    return new SshError(
      'auth',
      `login refused: ${host.user ?? 'the default user'}@${host.address} does not accept ${host.identityFile !== undefined ? `the key ${host.identityFile}` : 'the keys offered (agent, ~/.ssh/id_*)'}`,
      `install the public key on the device (ssh-copy-id -p ${host.port} ${hostPart(host, false)}) or set identity_file in the inventory; passwords are never asked (BatchMode)`,
      stderr,
    );
  }
  if (
    /Connection refused|Connection timed out|timed out during banner|No route to host|Could not resolve hostname|Network is unreachable|Connection reset|Connection closed by|closed by remote host|Broken pipe|kex_exchange_identification|Name or service not known|Temporary failure in name resolution/.test(
      stderr,
    )
  ) {
    return new SshError(
      'unreachable',
      `unreachable: ${last.replace(/^ssh: /, '')}`,
      `check that the device is on and on the network, that sshd runs on port ${host.port}, and the address '${host.address}'`,
      stderr,
    );
  }
  if (/^ssh: |^ssh_|Control socket|mux_client|Bad configuration option|command-line line/m.test(stderr)) {
    return new SshError('ssh', `ssh failed: ${last}`, 'run the same connection by hand with ssh -v to see why', stderr);
  }
  return undefined;
}

/** What a remote command gave back. */
export interface RemoteResult {
  /** Exit status of the remote command. */
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /** Prefix the command with `sudo -n --` (no password prompt: fails instead). */
  readonly sudo?: boolean;
  /** Bytes for the remote command's stdin; default none (/dev/null). */
  readonly stdin?: string | Buffer;
  /** Each complete line of stdout / stderr as it arrives (progress). */
  readonly onStdoutLine?: (line: string) => void;
  readonly onStderrLine?: (line: string) => void;
  /** Aborting kills the local ssh (the remote command sees its session end). */
  readonly signal?: AbortSignal;
}

export interface SshSessionOptions {
  /** Folder (mode 0700, short path) for the ControlMaster sockets. */
  readonly controlDir: string;
  /** StrictHostKeyChecking=accept-new instead of yes. */
  readonly acceptNewHostKeys?: boolean;
  /** The ssh program; default `ssh` from PATH. */
  readonly sshBin?: string;
}

/**
 * An SSH session to one host. `connect()` opens the master connection (and
 * reports SSH failures once, cleanly); `run()` and `rsyncShell()` reuse it;
 * `close()` ends it. Without a master (it died with the link), commands
 * connect directly.
 */
export class SshSession {
  private readonly bin: string;

  constructor(
    readonly host: FleetHost,
    private readonly options: SshSessionOptions,
  ) {
    this.bin = options.sshBin ?? 'ssh';
  }

  /** Every ssh option, without the destination: the same for ssh and for rsync's `-e`. */
  baseArgs(): string[] {
    const h = this.host;
    const args: string[] = [];
    if (h.sshConfigFile !== undefined) args.push('-F', h.sshConfigFile);
    args.push('-p', String(h.port));
    if (h.identityFile !== undefined) args.push('-i', h.identityFile, '-o', 'IdentitiesOnly=yes');
    if (h.knownHostsFile !== undefined) args.push('-o', `UserKnownHostsFile=${h.knownHostsFile}`);
    args.push(
      '-o',
      'BatchMode=yes',
      '-o',
      `StrictHostKeyChecking=${this.options.acceptNewHostKeys === true ? 'accept-new' : 'yes'}`,
      '-o',
      `ConnectTimeout=${CONNECT_TIMEOUT_S}`,
      ...SERVER_ALIVE.flatMap((o) => ['-o', o]),
      '-o',
      `ControlPath=${path.join(this.options.controlDir, '%C')}`,
      '-o',
      'LogLevel=ERROR',
    );
    for (const o of h.sshOptions) args.push('-o', o);
    return args;
  }

  /** The destination argument for ssh (`[user@]address`). */
  get destination(): string {
    return hostPart(this.host, false);
  }

  /** `[user@]address:PATH` for rsync/scp. */
  remotePath(p: string): string {
    return `${hostPart(this.host, true)}:${p}`;
  }

  /** The `-e` value for rsync: this ssh with the shared connection, words quoted for rsync's own splitting. */
  rsyncShell(): string {
    return [this.bin, ...this.baseArgs(), '-o', 'ControlMaster=no'].map(shellQuote).join(' ');
  }

  /**
   * Opens the master connection in the background. Resolves when the host
   * accepted the login; rejects with an SshError otherwise. Safe to call
   * again (a live master is reused).
   */
  async connect(signal?: AbortSignal): Promise<void> {
    if (await this.hasMaster()) return;
    // The master outlives this call; its stderr goes to a file, not to a pipe
    // that would stay open (and keep Node waiting) as long as the master runs.
    const errFile = path.join(this.options.controlDir, `${this.host.name}.master.err`);
    const fd = openSync(errFile, 'w', 0o600);
    let code: number | null;
    try {
      code = await new Promise<number | null>((resolve, reject) => {
        const child = spawnIgnoringInt(
          this.bin,
          [...this.baseArgs(), '-o', 'ControlMaster=yes', '-o', `ControlPersist=${CONTROL_PERSIST_S}`, '-N', this.destination],
          ['ignore', 'ignore', fd],
        );
        const abort = (): void => {
          child.kill('SIGTERM');
        };
        signal?.addEventListener('abort', abort, { once: true });
        child.once('error', (err) => reject(new SshError('ssh', `cannot run ${this.bin}: ${err.message}`, 'install OpenSSH (the openssh-client package)', '')));
        child.once('exit', (c) => {
          signal?.removeEventListener('abort', abort);
          resolve(c);
        });
      });
    } finally {
      closeSync(fd);
    }
    if (signal?.aborted) throw new CancelledError(`connecting to ${this.host.name}`);
    if (code === 0) return;
    const stderr = readFileSync(errFile, 'utf8');
    throw (
      classifySshFailure(this.host, stderr) ??
      new SshError(
        'ssh',
        `ssh failed (exit ${String(code)}): ${stderr.trim().split('\n').slice(-1)[0] ?? ''}`,
        'run the same connection by hand with ssh -v to see why',
        stderr,
      )
    );
  }

  /** True when a master connection for this host is up. */
  async hasMaster(): Promise<boolean> {
    const r = await this.spawnSsh([...this.baseArgs(), '-O', 'check', this.destination]);
    return r.code === 0;
  }

  /** Ends the master connection (if any). Never throws. */
  async close(): Promise<void> {
    await this.spawnSsh([...this.baseArgs(), '-O', 'exit', this.destination]).catch(() => undefined);
  }

  /**
   * Runs `argv` on the device (each word quoted for the remote shell).
   * Resolves with the remote exit status and output, whatever the status;
   * rejects with an SshError when ssh itself failed, CancelledError on abort.
   */
  async run(argv: readonly string[], options: RunOptions = {}): Promise<RemoteResult> {
    const words = options.sudo === true ? ['sudo', '-n', '--', ...argv] : [...argv];
    return this.runShell(shellCommand(words), options);
  }

  /** Runs a shell command line (already quoted) on the device; see `run`. */
  async runShell(commandLine: string, options: Omit<RunOptions, 'sudo'> = {}): Promise<RemoteResult> {
    const r = await this.spawnSsh([...this.baseArgs(), '-o', 'ControlMaster=no', this.destination, commandLine], options);
    if (r.cancelled) throw new CancelledError(`${this.host.name}: ${commandLine.slice(0, 60)}`);
    if (r.code === 255 || r.code === null) {
      const err = classifySshFailure(this.host, r.stderr);
      if (err) throw err;
      // ssh said nothing (LogLevel=ERROR) but the shared connection is gone:
      // the link dropped under the command. A command exiting 255 by itself
      // leaves the connection up.
      if (!(await this.hasMaster()) || r.code === null) {
        throw new SshError(
          'unreachable',
          `the connection to ${this.host.name} was lost during the command`,
          `check that the device is on and on the network; it finishes or rolls back what it was doing by itself`,
          r.stderr,
        );
      }
    }
    return { code: r.code ?? 1, stdout: r.stdout, stderr: r.stderr };
  }

  private spawnSsh(
    args: string[],
    options: Omit<RunOptions, 'sudo'> = {},
  ): Promise<{ code: number | null; stdout: string; stderr: string; cancelled: boolean }> {
    return new Promise((resolve, reject) => {
      const child = spawnIgnoringInt(this.bin, args, [options.stdin !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe']);
      let stdout = '';
      let stderr = '';
      let cancelled = false;
      const lines = (onLine: ((l: string) => void) | undefined) => {
        let pending = '';
        return (chunk: Buffer): string => {
          const text = chunk.toString();
          if (onLine) {
            pending += text;
            const parts = pending.split(/\r?\n|\r/);
            pending = parts.pop() ?? '';
            for (const p of parts) onLine(p);
          }
          return text;
        };
      };
      const out = lines(options.onStdoutLine);
      const err = lines(options.onStderrLine);
      child.stdout!.on('data', (d: Buffer) => (stdout += out(d)));
      child.stderr!.on('data', (d: Buffer) => (stderr += err(d)));
      if (options.stdin !== undefined) {
        child.stdin!.on('error', () => undefined);
        child.stdin!.end(options.stdin);
      }
      const abort = (): void => {
        cancelled = true;
        child.kill('SIGTERM');
      };
      if (options.signal?.aborted) abort();
      options.signal?.addEventListener('abort', abort, { once: true });
      child.once('error', (e) => reject(new SshError('ssh', `cannot run ${this.bin}: ${e.message}`, 'install OpenSSH (the openssh-client package)', '')));
      child.once('close', (code) => {
        options.signal?.removeEventListener('abort', abort);
        if (code === 127 && /exec: .*not found/.test(stderr)) {
          reject(new SshError('ssh', `cannot run ${this.bin}: not found`, 'install OpenSSH (the openssh-client package)', stderr));
          return;
        }
        resolve({ code, stdout, stderr, cancelled });
      });
    });
  }
}
