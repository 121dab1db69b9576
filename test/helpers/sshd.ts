/**
 * Real OpenSSH servers on loopback, one per fleet target, for tests:
 *
 *   const lab = await startSshLab(t, ['t1', 't2', 't3']);
 *   const file = await lab.writeInventory();          // a fleet inventory for them
 *   await lab.target('t2').rotateHostKey();           // the device "was reinstalled"
 *   await lab.target('t3').stop();                    // the device is off
 *
 * Each target is Debian's `sshd` (path from `SSHD_BIN`, default
 * `/usr/sbin/sshd`) in the foreground on a free port of 127.0.0.1, with its
 * own host key, config and folders: `root` (the device's file system root
 * for the device-side commands, given to every session as
 * `EDGE_CLASSIFIER_ROOT`), `home` (the login's HOME) and `bin` (first on
 * the session's PATH, for stand-in programs such as `systemctl`). Logins are
 * the current user with one key pair shared by the lab; the lab's
 * known_hosts holds every target's host key, so tests run with strict host
 * key checking as a fleet does. `env` adds variables to every session.
 *
 * `root/usr/local/bin` comes next on PATH (where bootstrap writes the
 * `edge-classifier` command).
 *
 * sshd run by root needs its privilege separation folder (/run/sshd, which
 * Debian's service creates at boot); it is created when missing. Each sshd
 * gets SIGTERM when the test process dies (prctl PR_SET_PDEATHSIG, through
 * python3), so a crashed or timed-out test leaves no server behind.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './mosquitto.js';

const SSHD_BIN = process.env.SSHD_BIN ?? '/usr/sbin/sshd';
const run = promisify(execFile);
/** Execs argv[1:] with SIGTERM as its parent-death signal (kept across execve). */
const DIE_WITH_PARENT = 'import ctypes, os, signal, sys; ctypes.CDLL(None).prctl(1, signal.SIGTERM); os.execv(sys.argv[1], sys.argv[1:])';

interface TeardownTarget {
  teardown(fn: () => unknown): void;
}

export interface SshdTarget {
  readonly name: string;
  readonly port: number;
  /** The target's own folder (config, host key, log and the folders below). */
  readonly dir: string;
  /** EDGE_CLASSIFIER_ROOT of every session: the device's file system root. */
  readonly root: string;
  /** HOME of every session. */
  readonly home: string;
  /** First folder on every session's PATH. */
  readonly bin: string;
  /** sshd's log (stderr, -e) so far. */
  readonly log: string;
  /** The listening sshd's process id (its children serve the open connections), or undefined when stopped. */
  readonly pid: number | undefined;
  readonly running: boolean;
  /** Starts sshd again on the same port; resolves when it listens. */
  start(): Promise<void>;
  /** Stops sshd (open sessions end too); resolves when it exited. Idempotent. */
  stop(): Promise<void>;
  /** A new host key (not in the lab's known_hosts) and a restart: a reinstalled device. */
  rotateHostKey(): Promise<void>;
}

export interface SshLab {
  readonly dir: string;
  readonly user: string;
  /** Private key every target accepts. */
  readonly identityFile: string;
  /** known_hosts with every target's key as it was at start. */
  readonly knownHostsFile: string;
  readonly targets: readonly SshdTarget[];
  target(name: string): SshdTarget;
  /**
   * The fleet inventory (YAML) for the targets: user, key, known_hosts, no
   * ssh_config, `sudo: false`; `hosts` adds keys per host (groups, builder…)
   * or whole extra hosts (e.g. one pointing at a closed port).
   */
  inventoryYaml(hosts?: Record<string, Record<string, unknown>>, defaults?: Record<string, unknown>): string;
  /** Runs `fn` at teardown, before the servers stop and the folders go. */
  onTeardown(fn: () => Promise<unknown>): void;
  /** Writes `inventoryYaml(...)` to a file in the lab folder and returns its path. */
  writeInventory(hosts?: Record<string, Record<string, unknown>>, defaults?: Record<string, unknown>, name?: string): Promise<string>;
}

async function keygen(file: string): Promise<string> {
  await rm(file, { force: true });
  await rm(`${file}.pub`, { force: true });
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', path.basename(file), '-f', file]);
  return (await readFile(`${file}.pub`, 'utf8')).trim();
}

/** Starts one sshd per name and registers teardown with `t`. */
export async function startSshLab(t: TeardownTarget, names: readonly string[], options: { env?: Readonly<Record<string, string>> } = {}): Promise<SshLab> {
  if (process.getuid?.() === 0 && !existsSync('/run/sshd')) await mkdir('/run/sshd', { mode: 0o755, recursive: true });
  const dir = await mkdtemp(path.join(tmpdir(), 'edge-fleet-'));
  const cleanups: (() => Promise<unknown>)[] = [];
  const user = userInfo().username;
  const identityFile = path.join(dir, 'id_ed25519');
  const userKey = await keygen(identityFile);
  const authorizedKeys = path.join(dir, 'authorized_keys');
  await writeFile(authorizedKeys, `${userKey}\n`, { mode: 0o600 });
  const knownHostsFile = path.join(dir, 'known_hosts');

  const targets: SshdTarget[] = [];
  const knownLines: string[] = [];
  for (const name of names) {
    const tdir = path.join(dir, name);
    const root = path.join(tdir, 'root');
    const home = path.join(tdir, 'home');
    const bin = path.join(tdir, 'bin');
    for (const d of [root, home, bin]) await mkdir(d, { recursive: true });
    const port = await freePort();
    const hostKey = path.join(tdir, 'ssh_host_ed25519_key');
    const pub = await keygen(hostKey);
    knownLines.push(`[127.0.0.1]:${port} ${pub.split(' ').slice(0, 2).join(' ')}`);
    const env: Record<string, string> = {
      HOME: home,
      PATH: [bin, path.join(root, 'usr', 'local', 'bin'), path.dirname(process.execPath), '/usr/local/bin', '/usr/bin', '/bin', '/usr/sbin', '/sbin'].join(':'),
      EDGE_CLASSIFIER_ROOT: root,
      ...options.env,
    };
    const config = path.join(tdir, 'sshd_config');
    await writeFile(
      config,
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${hostKey}`,
        'PidFile none',
        `AuthorizedKeysFile ${authorizedKeys}`,
        // The lab lives under /tmp, which StrictModes would refuse as a key location.
        'StrictModes no',
        'UsePAM no',
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'PermitRootLogin prohibit-password',
        `AllowUsers ${user}`,
        'Subsystem sftp internal-sftp',
        'MaxStartups 50:30:100',
        'MaxSessions 50',
        'LogLevel VERBOSE',
        `SetEnv ${Object.entries(env)
          .map(([k, v]) => `"${k}=${v}"`)
          .join(' ')}`,
        '',
      ].join('\n'),
    );
    let child: ChildProcess | undefined;
    let log = '';
    const start = async (): Promise<void> => {
      if (child) return;
      const c = spawn('python3', ['-c', DIE_WITH_PARENT, SSHD_BIN, '-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
      child = c;
      const ready = new Promise<void>((resolve, reject) => {
        c.stderr!.on('data', (d: Buffer) => {
          log += d.toString();
          if (log.includes(`Server listening on 127.0.0.1 port ${port}`)) resolve();
        });
        c.once('exit', (code) => {
          if (child === c) child = undefined;
          reject(new Error(`sshd for ${name} exited with ${String(code)} before listening on port ${port}:\n${log}`));
        });
        c.once('error', (e) => reject(new Error(`cannot run ${SSHD_BIN}: ${e.message} (install openssh-server)`)));
      });
      const timeout = setTimeout(() => c.kill('SIGKILL'), 5000);
      try {
        await ready;
      } finally {
        clearTimeout(timeout);
      }
    };
    const stop = async (): Promise<void> => {
      const c = child;
      if (!c) return;
      child = undefined;
      if (c.exitCode !== null || c.signalCode !== null) return;
      const exited = once(c, 'exit');
      c.kill('SIGTERM');
      await exited;
    };
    const target: SshdTarget = {
      name,
      port,
      dir: tdir,
      root,
      home,
      bin,
      get log() {
        return log;
      },
      get running() {
        return child !== undefined;
      },
      get pid() {
        return child?.pid;
      },
      start,
      stop,
      rotateHostKey: async () => {
        await stop();
        await keygen(hostKey);
        await start();
      },
    };
    targets.push(target);
  }
  await writeFile(knownHostsFile, `${knownLines.join('\n')}\n`, { mode: 0o600 });
  // In this order: what the test added (e.g. stopping services on the
  // targets), the servers, then the folders.
  t.teardown(async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
    for (const x of targets) await x.stop();
    await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  });
  await Promise.all(targets.map((x) => x.start()));

  const inventoryYaml = (hosts: Record<string, Record<string, unknown>> = {}, defaults: Record<string, unknown> = {}): string => {
    const all: Record<string, Record<string, unknown>> = {};
    for (const x of targets) all[x.name] = { address: '127.0.0.1', port: x.port, ...hosts[x.name] };
    for (const [n, h] of Object.entries(hosts)) if (!(n in all)) all[n] = h;
    const d = { user, identity_file: identityFile, known_hosts_file: knownHostsFile, ssh_config_file: '/dev/null', sudo: false, ...defaults };
    return `${JSON.stringify({ defaults: d, hosts: all }, null, 2)}\n`;
  };
  return {
    dir,
    user,
    onTeardown: (fn) => cleanups.push(fn),
    identityFile,
    knownHostsFile,
    targets,
    target: (n) => {
      const x = targets.find((y) => y.name === n);
      if (!x) throw new Error(`no target ${n}`);
      return x;
    },
    inventoryYaml,
    writeInventory: async (hosts, defaults, name = 'fleet.yaml') => {
      const file = path.join(dir, name);
      await writeFile(file, inventoryYaml(hosts, defaults));
      return file;
    },
  };
}
