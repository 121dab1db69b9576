import { type ChildProcess, spawn } from 'node:child_process';
import type { Lifecycle } from '../core/lifecycle.js';
import { type Logger, LogThrottle } from '../core/log.js';
import { loadSdNotify, type SdNotifyFunction } from './libsystemd.js';

/** Options of `SdNotifier`; all but `log` exist for tests and unusual installs. */
export interface SdNotifierOptions {
  readonly log: Logger;
  /** Environment to read `NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID` from and to pass on. Default `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
  /** The `systemd-notify` binary. Default `systemd-notify` (on PATH; /usr/bin on Raspberry Pi OS). */
  readonly command?: string;
  /**
   * Longest a single `systemd-notify` may run before it is killed and the
   * message counted as failed, in ms. Default 6000: its barrier waits up to
   * 5 s for systemd's reply.
   */
  readonly sendTimeoutMs?: number;
  /** Our process id, sent as `--pid=` and checked against `WATCHDOG_PID`. Default `process.pid`. */
  readonly pid?: number;
  /**
   * How messages are sent: `libsystemd` (sd_notify() through FFI, from this
   * process), `systemd-notify` (the helper binary), or `auto` (default):
   * libsystemd when it loads and `env` is the process environment (which is
   * what libsystemd reads), else the binary.
   */
  readonly transport?: 'auto' | 'libsystemd' | 'systemd-notify';
}

/** Counters of an `SdNotifier`. */
export interface SdNotifierStats {
  /** `systemd-notify` runs that exited 0. */
  readonly sent: number;
  /** Runs that failed, timed out or could not be spawned. */
  readonly failed: number;
  /** Messages merged into a pending one (repeated WATCHDOG=1 / STATUS=). */
  readonly coalesced: number;
}

type Field = [key: string, value: string];

/** Most messages waiting to be sent; with coalescing only READY/STOPPING bursts can reach it. */
const MAX_QUEUE = 8;

/**
 * The sd_notify protocol (systemd.service `Type=notify`, sd_notify(3)).
 *
 * Preferred transport: sd_notify() of `libsystemd.so.0` called through FFI
 * (koffi) — one sendmsg(2) from this process, synchronous and cheap, with
 * our own pid in the credentials, so the unit can use `NotifyAccess=main`
 * and no process is spawned per message.
 *
 * Fallback (no libsystemd, or `transport: 'systemd-notify'`): the
 * `systemd-notify` binary, because Node.js has no Unix datagram sockets.
 * Each message is one run of
 * `systemd-notify --pid=<our pid> KEY=VALUE…` with an argument array (no
 * shell).
 *
 * Blocking mode, not `--no-block`: systemd attributes a notification to a
 * unit by the sender's pid and cgroup. `systemd-notify` claims our pid in
 * its credentials (`--pid`), which the kernel only allows to root; for any
 * other user the datagram carries the pid of `systemd-notify` itself, so the
 * unit needs `NotifyAccess=all`, and systemd must read the message while
 * that short-lived process still exists. Without `--no-block`,
 * `systemd-notify` follows the message with `BARRIER=1` and waits until
 * systemd has processed it (closed the passed fd), which removes that race.
 * The price: outside a real systemd a run waits up to 5 s and fails, so runs
 * are bounded by `sendTimeoutMs`. `--pid` also sends `MAINPID=<our pid>`,
 * which keeps systemd tracking this process if it was started through a
 * wrapper.
 *
 * Messages are sent one at a time, in order, from a small bounded queue:
 * a WATCHDOG=1 or STATUS= that is already waiting absorbs a new one (the
 * latest status text wins) instead of growing the queue. A failed send is
 * logged as a warning once (then at debug) and never throws.
 *
 * Silent no-op when `NOTIFY_SOCKET` is unset (not under systemd, or a unit
 * that is not `Type=notify`): nothing is spawned.
 *
 * Lifecycle (the one `Lifecycle`, owned by the supervisor for the whole
 * process): the constructor does no I/O; `start()` logs whether messages are
 * sent; `stop()` clears the watchdog timer and waits (at most
 * `sendTimeoutMs`) for queued messages, so a `STOPPING=1` is delivered
 * before exit. Idempotent.
 */
export class SdNotifier implements Lifecycle {
  readonly name = 'systemd notifier';
  private readonly log: Logger;
  private readonly env: NodeJS.ProcessEnv;
  private readonly command: string;
  private readonly sendTimeoutMs: number;
  private readonly pid: number;
  private readonly queue: Field[][] = [];
  private running: ChildProcess | undefined;
  private drained: Array<() => void> = [];
  private watchdogTimer: NodeJS.Timeout | undefined;
  private readonly failures = new LogThrottle();
  private closed = false;
  private readonly ffi: SdNotifyFunction | undefined;
  /** `libsystemd` or `systemd-notify`: the transport in use. */
  readonly transport: 'libsystemd' | 'systemd-notify';
  private counters = { sent: 0, failed: 0, coalesced: 0 };

  constructor(options: SdNotifierOptions) {
    this.log = options.log;
    this.env = options.env ?? process.env;
    this.command = options.command ?? 'systemd-notify';
    this.sendTimeoutMs = options.sendTimeoutMs ?? 6000;
    this.pid = options.pid ?? process.pid;
    const want = options.transport ?? 'auto';
    // libsystemd reads NOTIFY_SOCKET with getenv(): only usable when our env is the real one.
    if (want === 'libsystemd' || (want === 'auto' && this.env === process.env)) {
      const loaded = loadSdNotify();
      this.ffi = loaded.fn;
      if (!loaded.fn && this.enabled)
        this.log.warn(`sd_notify through libsystemd is not available (${loaded.error}): using ${this.command}, which needs NotifyAccess=all in the unit`);
    }
    this.transport = this.ffi ? 'libsystemd' : 'systemd-notify';
  }

  /** True when `NOTIFY_SOCKET` is set, i.e. messages are sent at all. */
  get enabled(): boolean {
    const socket = this.env.NOTIFY_SOCKET;
    return socket !== undefined && socket !== '';
  }

  /**
   * Half of the watchdog timeout systemd asks for (`WATCHDOG_USEC`, in µs,
   * set from the unit's `WatchdogSec=`), in ms — sd_watchdog_enabled(3)
   * recommends pinging at half the timeout. `undefined` when no watchdog is
   * requested, `NOTIFY_SOCKET` is unset, `WATCHDOG_USEC` is not a positive
   * integer, or `WATCHDOG_PID` is set to another process's pid.
   */
  watchdogIntervalMs(): number | undefined {
    if (!this.enabled) return undefined;
    const usecText = this.env.WATCHDOG_USEC;
    if (usecText === undefined || !/^\d+$/.test(usecText)) return undefined;
    const usec = Number(usecText);
    if (usec <= 0) return undefined;
    const pidText = this.env.WATCHDOG_PID;
    if (pidText !== undefined && pidText !== '' && Number(pidText) !== this.pid) return undefined;
    return Math.max(1, Math.floor(usec / 2000));
  }

  /** Nothing to acquire (each message is one short process): logs whether messages will be sent. */
  async start(): Promise<void> {
    if (this.enabled) this.log.debug({ notify_socket: this.env.NOTIFY_SOCKET, transport: this.transport }, 'sd_notify enabled');
  }

  /** `READY=1` (and `STATUS=<status>` in the same message): start-up is complete. */
  ready(status?: string): void {
    const fields: Field[] = [['READY', '1']];
    if (status !== undefined) fields.push(['STATUS', oneLine(status)]);
    this.enqueue(fields);
  }

  /** `STATUS=<text>`: free-form status shown by `systemctl status` (newlines become spaces). */
  status(text: string): void {
    this.enqueue([['STATUS', oneLine(text)]]);
  }

  /** `WATCHDOG=1`: keep-alive ping for `WatchdogSec=`. */
  watchdog(): void {
    this.enqueue([['WATCHDOG', '1']]);
  }

  /**
   * `RELOADING=1` with `MONOTONIC_USEC=` (CLOCK_MONOTONIC in µs, which
   * systemd compares): a SIGHUP reload has begun; the next `ready()` ends it.
   */
  reloading(): void {
    this.enqueue([
      ['RELOADING', '1'],
      ['MONOTONIC_USEC', String(process.hrtime.bigint() / 1000n)],
    ]);
  }

  /** `STOPPING=1`: the service is shutting down. */
  stopping(): void {
    this.enqueue([['STOPPING', '1']]);
  }

  /**
   * Pings `WATCHDOG=1` every `watchdogIntervalMs()` while `isHealthy()`
   * returns true (e.g. "a frame was classified recently"); an unhealthy
   * process stops pinging and systemd restarts it after `WatchdogSec=`.
   * Returns the interval in ms, or `undefined` (and does nothing) when no
   * watchdog is requested. The timer does not keep the process alive and is
   * cleared by `stop()`; a second call replaces the first.
   */
  startWatchdog(isHealthy: () => boolean): number | undefined {
    const interval = this.watchdogIntervalMs();
    if (interval === undefined || this.closed) return undefined;
    clearInterval(this.watchdogTimer);
    this.watchdogTimer = setInterval(() => {
      if (isHealthy()) this.watchdog();
      else this.log.debug('watchdog: not healthy, no WATCHDOG=1');
    }, interval);
    this.watchdogTimer.unref();
    this.log.info({ interval_ms: interval }, 'systemd watchdog enabled');
    return interval;
  }

  /** Stops pinging `WATCHDOG=1` (a daemon being replaced by a reload); `startWatchdog` may start it again. */
  stopWatchdog(): void {
    clearInterval(this.watchdogTimer);
    this.watchdogTimer = undefined;
  }

  /** Counters since construction. */
  stats(): SdNotifierStats {
    return { ...this.counters };
  }

  /** Resolves when every queued message has been sent (or failed). */
  flush(): Promise<void> {
    if (this.running === undefined && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.drained.push(resolve));
  }

  /**
   * Clears the watchdog timer, refuses further messages and waits up to
   * `sendTimeoutMs` for queued ones (then kills a `systemd-notify` still
   * running). Idempotent.
   */
  async stop(): Promise<void> {
    clearInterval(this.watchdogTimer);
    this.watchdogTimer = undefined;
    if (this.closed) return this.flush();
    this.closed = true;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.flush().then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), this.sendTimeoutMs))),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      this.queue.length = 0;
      this.running?.kill('SIGKILL');
    }
  }

  private enqueue(fields: Field[]): void {
    if (!this.enabled || this.closed) return;
    if (this.ffi) {
      this.sendNow(fields, this.ffi);
      return;
    }
    if (fields.length === 1) {
      const key = fields[0]![0];
      const pending = key === 'WATCHDOG' || key === 'STATUS' ? this.queue.findIndex((m) => m.length === 1 && m[0]![0] === key) : -1;
      if (pending >= 0) {
        this.counters.coalesced++;
        // A waiting ping covers this one; a newer status replaces the waiting one and goes last, so it wins.
        if (key === 'WATCHDOG') return;
        this.queue.splice(pending, 1);
      }
    }
    if (this.queue.length >= MAX_QUEUE) {
      this.counters.failed++;
      this.log.warn({ message: fields.map((f) => f.join('=')).join(' ') }, 'sd_notify queue full: message dropped');
      return;
    }
    this.queue.push(fields);
    this.next();
  }

  private next(): void {
    if (this.running !== undefined) return;
    const fields = this.queue.shift();
    if (fields === undefined) {
      const waiters = this.drained;
      this.drained = [];
      for (const w of waiters) w();
      return;
    }
    const args = [`--pid=${this.pid}`, ...fields.map(([k, v]) => `${k}=${v}`)];
    let stderr = '';
    let done = false;
    const finish = (error: string | undefined): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.running = undefined;
      if (error === undefined) this.counters.sent++;
      else this.fail(args, error);
      this.next();
    };
    let child: ChildProcess;
    try {
      child = spawn(this.command, args, { env: this.env, stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (err) {
      this.running = undefined;
      this.fail(args, (err as Error).message);
      this.next();
      return;
    }
    this.running = child;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish(`no reply within ${this.sendTimeoutMs} ms`);
    }, this.sendTimeoutMs);
    child.stderr!.on('data', (d: Buffer) => {
      if (stderr.length < 1000) stderr += d.toString();
    });
    child.once('error', (err) => finish(err.message));
    child.once('close', (code, signal) => {
      if (code === 0) finish(undefined);
      else finish(`exit ${code ?? signal}${stderr.trim() === '' ? '' : `: ${stderr.trim()}`}`);
    });
  }

  /** One message through sd_notify(): synchronous, from this process. */
  private sendNow(fields: Field[], send: SdNotifyFunction): void {
    const text = fields.map(([k, v]) => `${k}=${v}`).join('\n');
    let rc: number;
    try {
      rc = send(text);
    } catch (err) {
      this.fail([text], (err as Error).message);
      return;
    }
    if (rc > 0) this.counters.sent++;
    else this.fail([text], rc === 0 ? 'libsystemd does not see NOTIFY_SOCKET' : `sd_notify() returned ${rc} (errno ${-rc})`);
  }

  private fail(args: string[], error: string): void {
    this.counters.failed++;
    const via = this.ffi ? 'libsystemd' : this.command;
    const detail = { transport: via, args, notify_socket: this.env.NOTIFY_SOCKET, err: error };
    if (!this.failures.allow()) {
      this.log.debug(detail, 'sd_notify failed');
      return;
    }
    this.log.warn(detail, `sd_notify through ${via} failed (${error}): systemd may not see READY/WATCHDOG; further failures are logged at debug`);
  }
}

function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ');
}

/**
 * The systemd watchdog as a part of the daemon: between `start()` and
 * `stop()` the notifier pings `WATCHDOG=1` at half of `WatchdogSec=` while
 * `isHealthy()` (see `SdNotifier.startWatchdog`); nothing when no watchdog is
 * requested.
 */
export class SdWatchdog implements Lifecycle {
  readonly name = 'watchdog';

  constructor(
    private readonly notifier: SdNotifier,
    private readonly isHealthy: () => boolean,
  ) {}

  async start(): Promise<void> {
    this.notifier.startWatchdog(this.isHealthy);
  }

  async stop(): Promise<void> {
    this.notifier.stopWatchdog();
  }
}
