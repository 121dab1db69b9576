import type { Config } from '../config/schema.js';
import { CancelledError } from '../core/lifecycle.js';
import { componentLogger, type Logger } from '../core/log.js';
import type { Problem } from '../core/problems.js';
import { Daemon, type DaemonOptions } from './daemon.js';
import type { HealthFile } from './health-file.js';
import type { SdNotifier } from './sd-notify.js';

/** Longest a shutdown may take before the process exits anyway, in ms (systemd's TimeoutStopSec is longer). */
const SHUTDOWN_DEADLINE_MS = 4_500;

/** Counters of a supervisor, for logs and tests. */
interface SupervisorStats {
  /** SIGHUP reloads that replaced the running configuration. */
  readonly reloads: number;
  /** Reloads whose configuration did not load or preflight (the running one was kept). */
  readonly rejected: number;
  /** Reloads whose configuration validated but failed to start (the previous one was started again). */
  readonly rollbacks: number;
  /** Daemons started (the first one, and one per reload or rollback). */
  readonly starts: number;
}

/** What a reload did: `ok` when the new configuration runs; else why not (the running or previous one runs). */
export interface ReloadOutcome {
  readonly ok: boolean;
  readonly message: string;
}

export interface SupervisorOptions {
  /** The configuration to start with (loaded and preflighted). */
  readonly config: Config;
  /** Loads and preflights the configuration again, for a reload. @throws ConfigError. */
  readonly load: () => Promise<Config>;
  readonly log: Logger;
  /** The systemd notifier of the process: started with the supervisor, stopped last. */
  readonly notifier: SdNotifier;
  /** Builds a daemon for a configuration (default: `new Daemon`); tests hand in seams through it. */
  readonly createDaemon?: (options: DaemonOptions) => Daemon;
  readonly logPredictions?: boolean;
  /** The config file (`--config`): live settings sent over MQTT with `persist` are written into it. */
  readonly configFile?: string;
  /** See {@link SHUTDOWN_DEADLINE_MS}. */
  readonly shutdownDeadlineMs?: number;
  /** The health file the daemon keeps for `edge-classifier health` and the release gates (under systemd). */
  readonly health?: HealthFile;
}

/**
 * Reload and shutdown policy around one running `Daemon` (Zigbee2MQTT's
 * `index.js` restart logic, out of the process shell so it can be tested in
 * process). The process shell hands it signals and takes its exit code.
 *
 * - `start()` starts the notifier and the first daemon.
 * - `reload()` (SIGHUP): a configuration that fails to load or preflight is
 *   logged and the running one kept; one that passes replaces the running
 *   daemon; if it then fails to start (camera busy, port taken) the last
 *   working configuration is started again, and only if that fails too does
 *   the process exit 1. A reload during start-up waits for the start to end;
 *   a second SIGHUP during a reload is ignored.
 * - `shutdown(why, code)` (SIGTERM, a finite source's end, a crash):
 *   STOPPING=1, cancels a start or reload under way and waits for it, stops
 *   the daemon and the notifier; `exited` resolves with `code` (1 when a part
 *   failed to stop), or with 1 after the deadline.
 * - The daemon's `onEnd`/`onFailed` lead to a shutdown: a finite source that
 *   ended exits 0, a looping one that ended or a classifier failing 20 frames
 *   in a row exits 1 (systemd restarts it).
 *
 * The health file (when given) follows: the running configuration's
 * pipeline from each start, `reloading`/`stopping` while one is stopped,
 * one more reload when a new configuration runs, and the reason when a
 * reload did not take (rejected, or rolled back to the previous one).
 *
 * Never calls `process.exit`.
 */
export class Supervisor {
  /** Resolves with the process exit code once the supervisor has shut down (or its deadline passed). */
  readonly exited: Promise<number>;
  private resolveExit!: (code: number) => void;
  private readonly log: Logger;
  private config: Config;
  private daemon: Daemon | undefined;
  /** The start or reload under way; shutdown and reload wait for it. */
  private busy: Promise<void> | undefined;
  private phase: 'idle' | 'starting' | 'running' | 'reloading' = 'idle';
  private reloadPending = false;
  private shuttingDown = false;
  private counters = { reloads: 0, rejected: 0, rollbacks: 0, starts: 0 };

  constructor(private readonly options: SupervisorOptions) {
    this.config = options.config;
    this.log = componentLogger(options.log, 'supervisor');
    this.exited = new Promise((resolve) => (this.resolveExit = resolve));
  }

  /** The configuration running (or last working). */
  get current(): Config {
    return this.config;
  }

  stats(): SupervisorStats {
    return { ...this.counters };
  }

  /**
   * Starts the notifier and the first daemon. Resolves when it runs, or when
   * a shutdown cancelled the start (then `exited` resolves with the shutdown's
   * code). @throws the start-up error (after stopping what had started).
   */
  async start(): Promise<void> {
    this.phase = 'starting';
    await this.options.notifier.start();
    this.options.health?.start();
    const started = this.startDaemon(this.config, false);
    this.busy = started.catch(() => {});
    try {
      await started;
    } catch (err) {
      if (err instanceof CancelledError || this.shuttingDown) return;
      throw err;
    } finally {
      this.busy = undefined;
      this.phase = 'running';
    }
    if (this.reloadPending) {
      this.reloadPending = false;
      await this.reload();
    }
  }

  /**
   * SIGHUP (and `request/reload` over MQTT): see the class description.
   * Resolves when the reload is done (or deferred, or ignored) with what
   * happened: `ok` when the new configuration runs.
   */
  async reload(): Promise<ReloadOutcome> {
    if (this.shuttingDown) return { ok: false, message: 'shutting down' };
    if (this.phase === 'starting') {
      this.reloadPending = true;
      this.log.info('SIGHUP during start-up: reloading once the start is done');
      return { ok: false, message: 'the daemon is starting: it reloads once the start is done' };
    }
    if (this.phase === 'reloading') {
      this.log.warn('SIGHUP: a reload is already under way; ignored');
      return { ok: false, message: 'a reload is already under way' };
    }
    this.phase = 'reloading';
    const run = this.doReload();
    this.busy = run.then(() => {});
    try {
      return await run;
    } finally {
      this.busy = undefined;
      this.phase = 'running';
    }
  }

  private async doReload(): Promise<ReloadOutcome> {
    let next: Config;
    try {
      next = await this.options.load();
    } catch (err) {
      this.counters.rejected++;
      this.log.error(`SIGHUP: ${(err as Error).message}; keeping the running configuration`);
      this.options.health?.reloadFailed((err as Error).message);
      return { ok: false, message: `${(err as Error).message}; the running configuration is kept` };
    }
    if (this.shuttingDown) return { ok: false, message: 'shutting down' };
    this.log.info('SIGHUP: reloading configuration');
    const previous = this.config;
    this.options.notifier.reloading();
    this.options.health?.detach('reloading');
    const stopped = { ok: false, message: 'shutting down' };
    try {
      await this.daemon?.stop();
      if (this.shuttingDown) return stopped;
      try {
        await this.startDaemon(next, true);
        this.config = next;
        this.counters.reloads++;
        this.options.log.level = next.log.level;
        this.log.info({ ...this.counters }, 'SIGHUP: new configuration running');
        return { ok: true, message: 'the new configuration runs' };
      } catch (err) {
        if (this.shuttingDown || err instanceof CancelledError) return stopped;
        this.counters.rollbacks++;
        this.log.error(`SIGHUP: the new configuration failed to start (${(err as Error).message}); starting the previous one again`);
        await this.startDaemon(previous, false);
        this.options.health?.reloadFailed(`the new configuration failed to start: ${(err as Error).message}`);
        return { ok: false, message: `the new configuration failed to start (${(err as Error).message}); the previous one runs again` };
      }
    } catch (err) {
      if (this.shuttingDown || err instanceof CancelledError) return stopped;
      this.log.fatal(errorFields(err), `reload failed: ${(err as Error).message}`);
      setImmediate(() => void this.shutdown('reload failed', 1));
      return { ok: false, message: `reload failed: ${(err as Error).message}` };
    }
  }

  /** The running daemon's current problems (empty before it starts); see `Daemon.problems`. */
  problems(): readonly Problem[] {
    return this.daemon?.problemList() ?? [];
  }

  /** Builds and starts a daemon for `config`; it becomes the running one (`reload`: it replaces another after SIGHUP). */
  private async startDaemon(config: Config, reload: boolean): Promise<void> {
    const o = this.options;
    const daemonOptions: DaemonOptions = {
      config,
      log: o.log,
      notifier: o.notifier,
      ...(o.logPredictions !== undefined ? { logPredictions: o.logPredictions } : {}),
      ...(o.configFile !== undefined ? { configFile: o.configFile } : {}),
      // request/reload over MQTT: answered through the daemon running afterwards (the new one, or the old one again).
      onReloadRequest: (reply, id) =>
        void this.reload().then((outcome) =>
          this.daemon?.respond(reply, {
            command: 'reload',
            ...(id !== undefined ? { id } : {}),
            ok: outcome.ok,
            ...(outcome.ok ? { result: { reloaded: true } } : { error: outcome.message }),
            time: new Date().toISOString(),
          }),
        ),
      onEnd: (reason, failure) => void this.shutdown(`source ended: ${reason}`, failure ? 1 : 0),
      onReady: () => o.health?.changed(),
      onProblemsChanged: () => o.health?.changed(),
      onFailed: (err) => {
        this.log.fatal(`classification keeps failing (${err.message}): stopping so the service manager can restart`);
        void this.shutdown('classifier failing', 1);
      },
    };
    const daemon = o.createDaemon?.(daemonOptions) ?? new Daemon(daemonOptions);
    this.daemon = daemon;
    this.counters.starts++;
    await daemon.start();
    o.health?.attach(() => daemon.health(), reload);
    // A problem raised or cleared shows in the health file at once, not at the next periodic write.
    daemon.problems.onChange(() => o.health?.changed());
  }

  /**
   * Stops everything once (later calls return at once): STOPPING=1, a start
   * or reload under way cancelled and waited for, the daemon stopped, the
   * notifier flushed. `exited` resolves with `code`, 1 when a part failed to
   * stop, or 1 when all this took longer than the deadline.
   */
  async shutdown(why: string, code: number): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    this.log.info({ why }, 'shutting down');
    const notifier = this.options.notifier;
    notifier.stopping();
    this.options.health?.detach('stopping');
    const deadlineMs = this.options.shutdownDeadlineMs ?? SHUTDOWN_DEADLINE_MS;
    const deadline = setTimeout(() => {
      this.log.error(`shutdown took longer than ${deadlineMs} ms: exiting anyway`);
      this.resolveExit(1);
    }, deadlineMs);
    deadline.unref();
    let status = code;
    try {
      // Stopping the daemon cancels its start; the start or reload then unwinds, and is waited for,
      // so that no interpreter worker is still being built when the process exits (that aborts it).
      const stopping = this.daemon?.stop();
      await this.busy;
      await stopping;
      await this.daemon?.stop();
    } catch {
      status = 1;
    }
    await notifier.stop();
    this.options.health?.stop();
    clearTimeout(deadline);
    this.resolveExit(status);
  }
}

/** Log fields for an unexpected error: its stack with EDGE_CLASSIFIER_DEBUG set. */
export function errorFields(err: unknown): Record<string, unknown> {
  return err instanceof Error && err.name !== 'ConfigError' && process.env.EDGE_CLASSIFIER_DEBUG ? { err } : {};
}
