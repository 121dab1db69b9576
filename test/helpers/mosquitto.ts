/**
 * A real Mosquitto broker for tests: `startMosquitto()` picks a free port on
 * 127.0.0.1, starts `mosquitto -p PORT` (Debian's package; path from
 * `MOSQUITTO_BIN`, default `/usr/sbin/mosquitto`), waits until it accepts TCP
 * connections and returns a handle. Pass the tap test to register teardown:
 *
 *   const broker = await startMosquitto(t);
 *   // broker.url === 'mqtt://127.0.0.1:PORT'
 *   await broker.stop();   // e.g. to test reconnects
 *   await broker.start();  // same port again
 *
 * By default Mosquitto runs without a config file, so it keeps retained
 * messages in memory only: a restart forgets them (as a broker without
 * persistence does). With `config` lines it runs on a config file instead,
 * e.g. to require passwords:
 *
 *   const dir = await tempDir(t);
 *   const passwords = path.join(dir, 'passwd');
 *   await writePasswordFile(passwords, { edge: 'secret' });
 *   const broker = await startMosquitto(t, { config: ['allow_anonymous false', `password_file ${passwords}`] });
 *   await writePasswordFile(passwords, { edge: 'other' });
 *   await broker.reload();  // SIGHUP: mosquitto reloads its password file
 *
 * Its output is kept in `output` for failure messages (with a config file,
 * the log lines too, e.g. "Client <unknown> disconnected, not authorised.").
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { type AddressInfo, createConnection, createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const MOSQUITTO_BIN = process.env.MOSQUITTO_BIN ?? '/usr/sbin/mosquitto';
const MOSQUITTO_PASSWD_BIN = process.env.MOSQUITTO_PASSWD_BIN ?? '/usr/bin/mosquitto_passwd';

/** A new empty temporary folder, removed in `t.teardown` when `t` is given. */
export async function tempDir(t?: TeardownTarget): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'edge-mosquitto-'));
  t?.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Writes a Mosquitto password file holding exactly `users` (name → password),
 * replacing the file, with `mosquitto_passwd -b` (path from
 * `MOSQUITTO_PASSWD_BIN`, default `/usr/bin/mosquitto_passwd`). Rejects with
 * its output when it fails.
 */
export async function writePasswordFile(file: string, users: Readonly<Record<string, string>>): Promise<void> {
  await writeFile(file, '', { mode: 0o600 });
  for (const [name, password] of Object.entries(users)) {
    try {
      await promisify(execFile)(MOSQUITTO_PASSWD_BIN, ['-b', file, name, password]);
    } catch (err) {
      throw new Error(`${MOSQUITTO_PASSWD_BIN} failed for user '${name}': ${(err as Error).message}`);
    }
  }
}

/** A free TCP port on 127.0.0.1 (bound and released; tiny race with other processes). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port; rejects after timeoutMs. */
async function waitForPort(port: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ port, host: '127.0.0.1' });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing accepted connections on 127.0.0.1:${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface Mosquitto {
  readonly port: number;
  /** `mqtt://127.0.0.1:PORT` */
  readonly url: string;
  /** stdout + stderr of every run so far. */
  readonly output: string;
  /** True while the broker process runs. */
  readonly running: boolean;
  /** Sends `signal` to the broker process (e.g. SIGSTOP / SIGCONT to make it hang without closing connections). */
  signal(signal: NodeJS.Signals): void;
  /** Starts the broker again on the same port (after `stop()`); waits until it accepts connections. */
  start(): Promise<void>;
  /** Stops the broker (SIGTERM, then SIGKILL after 2 s) and waits for it to exit. Idempotent. */
  stop(): Promise<void>;
  /**
   * Sends SIGHUP, which makes Mosquitto reload its config file (password and
   * ACL files included), and resolves once it logged "Reloading config.".
   * Only for a broker started with `config`; rejects otherwise, when it is
   * not running, or after 5 s.
   */
  reload(): Promise<void>;
}

/** Options of `startMosquitto`. */
export interface MosquittoOptions {
  /** Port on 127.0.0.1; default a free one. */
  readonly port?: number;
  /**
   * Extra lines of mosquitto.conf (e.g. `allow_anonymous false`,
   * `password_file FILE`). When given, Mosquitto runs with `-c` on a config
   * file in a temporary folder that also sets `listener PORT 127.0.0.1`,
   * `log_dest stderr` and `user` (the current user, so that it keeps
   * reading files in temporary folders when run as root).
   */
  readonly config?: readonly string[];
}

interface TeardownTarget {
  teardown(fn: () => unknown): void;
}

/**
 * Starts Mosquitto on a free port (or `port`, or `options.port`) and, when
 * `t` is given, stops it in `t.teardown`. Rejects with the broker's output
 * when it does not come up within 5 s.
 */
export async function startMosquitto(t?: TeardownTarget, portOrOptions?: number | MosquittoOptions): Promise<Mosquitto> {
  const options: MosquittoOptions = typeof portOrOptions === 'number' ? { port: portOrOptions } : (portOrOptions ?? {});
  const p = options.port ?? (await freePort());
  let child: ChildProcess | undefined;
  let output = '';
  let args = ['-p', String(p)];
  if (options.config !== undefined) {
    const dir = await tempDir(t);
    const file = path.join(dir, 'mosquitto.conf');
    const lines = [`listener ${p} 127.0.0.1`, 'log_dest stderr', `user ${userInfo().username}`, ...options.config];
    await writeFile(file, `${lines.join('\n')}\n`);
    args = ['-c', file];
  }

  const start = async (): Promise<void> => {
    if (child !== undefined) return;
    const c = spawn(MOSQUITTO_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    c.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    c.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const exited = once(c, 'exit').then(([code]) => {
      throw new Error(`mosquitto exited with ${String(code)} before accepting connections on port ${p}:\n${output}`);
    });
    const spawnError = once(c, 'error').then(([err]) => {
      throw new Error(`cannot run ${MOSQUITTO_BIN}: ${(err as Error).message}`);
    });
    try {
      await Promise.race([waitForPort(p), exited, spawnError]);
    } catch (err) {
      c.kill('SIGKILL');
      child = undefined;
      throw err;
    }
    exited.catch(() => {});
    spawnError.catch(() => {});
    c.once('exit', () => {
      if (child === c) child = undefined;
    });
  };

  const stop = async (): Promise<void> => {
    const c = child;
    if (c === undefined) return;
    child = undefined;
    if (c.exitCode !== null || c.signalCode !== null) return;
    const exited = once(c, 'exit');
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(timer);
  };

  const reload = async (): Promise<void> => {
    const c = child;
    if (options.config === undefined) throw new Error('mosquitto reload: the broker was started without a config file');
    if (c === undefined) throw new Error('mosquitto reload: the broker is not running');
    const count = (): number => output.split('Reloading config.').length - 1;
    const before = count();
    c.kill('SIGHUP');
    const deadline = Date.now() + 5000;
    while (count() === before) {
      if (Date.now() > deadline) throw new Error(`mosquitto did not log "Reloading config." within 5000 ms after SIGHUP:\n${output}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  await start();
  const handle: Mosquitto = {
    port: p,
    url: `mqtt://127.0.0.1:${p}`,
    get output() {
      return output;
    },
    get running() {
      return child !== undefined;
    },
    start,
    stop,
    reload,
    signal(sig) {
      if (child === undefined) throw new Error(`mosquitto ${sig}: the broker is not running`);
      child.kill(sig);
    },
  };
  t?.teardown(stop);
  return handle;
}
