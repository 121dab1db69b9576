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
 * Mosquitto runs without a config file, so it keeps retained messages in
 * memory only: a restart forgets them (as a broker without persistence does).
 * Its output is kept in `output` for failure messages.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createConnection, createServer, type AddressInfo } from 'node:net';

export const MOSQUITTO_BIN = process.env.MOSQUITTO_BIN ?? '/usr/sbin/mosquitto';

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
export async function waitForPort(port: number, timeoutMs = 5000): Promise<void> {
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
  /** Starts the broker again on the same port (after `stop()`); waits until it accepts connections. */
  start(): Promise<void>;
  /** Stops the broker (SIGTERM, then SIGKILL after 2 s) and waits for it to exit. Idempotent. */
  stop(): Promise<void>;
}

interface TeardownTarget {
  teardown(fn: () => unknown): void;
}

/**
 * Starts Mosquitto on a free port (or `port`) and, when `t` is given,
 * stops it in `t.teardown`. Rejects with the broker's output when it does
 * not come up within 5 s.
 */
export async function startMosquitto(t?: TeardownTarget, port?: number): Promise<Mosquitto> {
  const p = port ?? (await freePort());
  let child: ChildProcess | undefined;
  let output = '';

  const start = async (): Promise<void> => {
    if (child !== undefined) return;
    const c = spawn(MOSQUITTO_BIN, ['-p', String(p)], { stdio: ['ignore', 'pipe', 'pipe'] });
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
  };
  t?.teardown(stop);
  return handle;
}
