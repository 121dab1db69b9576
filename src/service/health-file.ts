import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../core/log.js';

/** Default time between two writes of the health file, in ms. */
const HEALTH_INTERVAL_MS = 2_000;
/** Window of the frame rate in the health file, ms. */
const FPS_WINDOW_MS = 10_000;

/** A problem as the daemon reports it (the `<base>/problems` payload's entries). */
export interface HealthProblem {
  readonly id: string;
  readonly message: string;
  readonly hint: string;
  readonly severity: 'warning' | 'error';
  /** ISO 8601 UTC. */
  readonly since: string;
}

/** The model file in use, identified by content. */
interface HealthModel {
  readonly path: string;
  /** sha256 of the file, 64 hex digits. */
  readonly sha256: string;
  /** The file name without `.tflite`, as published in predictions. */
  readonly name: string;
}

/** What the running pipeline knows about itself, asked for at each write. */
export interface PipelineHealth {
  /** The first frame has been classified (READY=1 was sent). */
  readonly ready: boolean;
  readonly model_path: string | null;
  readonly labels_path: string | null;
  /** Frames delivered by the source since this configuration was loaded. */
  readonly frames_in: number;
  /** Frames classified since this configuration was loaded. */
  readonly classified: number;
  readonly dropped: number;
  readonly bad_frames: number;
  readonly failed: number;
  /** Frames classified per second over the last status interval. */
  readonly fps: number;
  /** ISO 8601 UTC of the last classified frame, null before the first. */
  readonly last_classified_at: string | null;
  /** No frame classified for the stall time (camera frozen, stream dead). */
  readonly stalled: boolean;
  readonly mqtt_connected: boolean;
  readonly problems: readonly HealthProblem[];
}

/**
 * The health file, `health.json` in the unit's runtime folder
 * (`$RUNTIME_DIRECTORY`, /run/edge-classifier: tmpfs, so frequent writes
 * cost no SD card wear). Read by `edge-classifier health` and the release
 * and model health gates. Field names are snake_case like the MQTT
 * payloads; times are ISO 8601 UTC.
 */
export interface HealthRecord {
  readonly format: 1;
  /** The daemon's process id (the gate compares it with systemd's MainPID). */
  readonly pid: number;
  /** package.json version of the running program. */
  readonly version: string;
  /** Folder the program runs from (a release folder on a device). */
  readonly program_dir: string;
  readonly started_at: string;
  readonly updated_at: string;
  /** Time between writes, ms: a file older than a few intervals is stale. */
  readonly interval_ms: number;
  /** Configurations loaded successfully by SIGHUP since start. */
  readonly reloads: number;
  /** When the running configuration (and model) was loaded. */
  readonly loaded_at: string;
  /** The last SIGHUP reload: when, and whether its configuration runs now (`error` says why not). */
  readonly last_reload: { readonly at: string; readonly ok: boolean; readonly error?: string } | null;
  readonly ready_at: string | null;
  readonly model: HealthModel | null;
  readonly labels: { readonly path: string; readonly sha256: string } | null;
  readonly pipeline: Omit<PipelineHealth, 'model_path' | 'labels_path'> | null;
  /** Set when the pipeline is stopped for a reload or shutdown. */
  readonly state: 'starting' | 'running' | 'reloading' | 'stopping';
}

/** Options of {@link HealthFile}. */
export interface HealthFileOptions {
  /** Where to write, e.g. `$RUNTIME_DIRECTORY/health.json`. */
  readonly file: string;
  readonly version: string;
  readonly programDir: string;
  readonly log: Logger;
  readonly intervalMs?: number;
}

/**
 * Keeps the health file current: rewritten every `intervalMs` and at once on
 * `changed()` (ready, reload, a problem raised or cleared), atomically (a
 * temporary file renamed over it), mode 0644 whatever the umask, so an
 * operator's `edge-classifier health` can read it without root. Removed on
 * `stop()`, so a stopped daemon leaves no file that looks alive; a crashed
 * one leaves a file whose pid is gone and whose `updated_at` ages.
 *
 * Lifecycle: the constructor does no I/O; `start()` writes the first record
 * and starts the timer (unref'd); `stop()` clears it and removes the file.
 * Write errors are logged once as a warning and never thrown: health
 * reporting must not take the daemon down.
 */
export class HealthFile {
  private readonly file: string;
  private readonly version: string;
  private readonly programDir: string;
  private readonly log: Logger;
  private readonly intervalMs: number;
  private timer: NodeJS.Timeout | undefined;
  private pipeline: (() => PipelineHealth) | undefined;
  private state: HealthRecord['state'] = 'starting';
  private readonly startedAt = new Date().toISOString();
  private loadedAt = this.startedAt;
  private readyAt: string | null = null;
  private reloads = 0;
  private lastReload: HealthRecord['last_reload'] = null;
  private warned = false;
  /** (ms, classified) samples of the last {@link FPS_WINDOW_MS}, for the classified frame rate. */
  private samples: { at: number; classified: number }[] = [];
  private readonly digests = new Map<string, { mtimeMs: number; size: number; sha256: string }>();

  constructor(options: HealthFileOptions) {
    this.file = options.file;
    this.version = options.version;
    this.programDir = options.programDir;
    this.log = options.log;
    this.intervalMs = options.intervalMs ?? HEALTH_INTERVAL_MS;
  }

  /** Writes the first record and starts the periodic rewrite. */
  start(): void {
    mkdirSync(path.dirname(this.file), { recursive: true });
    this.write();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.write(), this.intervalMs);
    this.timer.unref();
  }

  /** A pipeline (a configuration's daemon) is running from now on; `reload` true when it replaced another after SIGHUP. */
  attach(pipeline: () => PipelineHealth, reload: boolean): void {
    this.pipeline = pipeline;
    this.loadedAt = new Date().toISOString();
    this.readyAt = null;
    if (reload) {
      this.reloads++;
      this.lastReload = { at: this.loadedAt, ok: true };
    }
    this.state = 'running';
    this.write();
  }

  /**
   * A SIGHUP reload did not take effect (the new configuration did not
   * validate or did not start); `error` says why. The running (or restored)
   * configuration is attached separately.
   */
  reloadFailed(error: string): void {
    this.lastReload = { at: new Date().toISOString(), ok: false, error };
    this.write();
  }

  /** The pipeline is being stopped (reload or shutdown): the record says so until the next `attach`. */
  detach(state: 'reloading' | 'stopping'): void {
    this.pipeline = undefined;
    this.state = state;
    this.write();
  }

  /** Something worth writing at once happened (ready, problems changed). */
  changed(): void {
    if (this.timer !== undefined) this.write();
  }

  /** Stops the timer and removes the file. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    try {
      rmSync(this.file, { force: true });
    } catch {
      // nothing to do
    }
  }

  /** The record as it would be written now. */
  record(): HealthRecord {
    const p = this.pipeline?.();
    if (p?.ready && this.readyAt === null) this.readyAt = new Date().toISOString();
    const digest = (file: string | null) => (file === null ? null : { path: file, sha256: this.sha256(file) });
    const model = digest(p?.model_path ?? null);
    let pipeline: HealthRecord['pipeline'] = null;
    if (p) {
      const { model_path: _m, labels_path: _l, ...rest } = p;
      pipeline = { ...rest, fps: this.fps(p.classified) };
    }
    return {
      format: 1,
      pid: process.pid,
      version: this.version,
      program_dir: this.programDir,
      started_at: this.startedAt,
      updated_at: new Date().toISOString(),
      interval_ms: this.intervalMs,
      reloads: this.reloads,
      loaded_at: this.loadedAt,
      last_reload: this.lastReload,
      ready_at: this.readyAt,
      model: model === null ? null : { ...model, name: path.basename(model.path, '.tflite') },
      labels: digest(p?.labels_path ?? null),
      pipeline,
      state: this.state,
    };
  }

  /** Frames classified per second over the last {@link FPS_WINDOW_MS} (counters restart at each attach). */
  private fps(classified: number): number {
    const now = Date.now();
    if (this.samples.length > 0 && classified < this.samples[this.samples.length - 1]!.classified) this.samples = [];
    this.samples.push({ at: now, classified });
    while (this.samples.length > 2 && now - this.samples[1]!.at >= FPS_WINDOW_MS) this.samples.shift();
    const first = this.samples[0]!;
    const seconds = (now - first.at) / 1000;
    return seconds > 0 ? Math.round(((classified - first.classified) / seconds) * 100) / 100 : 0;
  }

  private sha256(file: string): string {
    try {
      const st = statSync(file);
      const known = this.digests.get(file);
      if (known && known.mtimeMs === st.mtimeMs && known.size === st.size) return known.sha256;
      const sha256 = createHash('sha256').update(readFileSync(file)).digest('hex');
      this.digests.set(file, { mtimeMs: st.mtimeMs, size: st.size, sha256 });
      return sha256;
    } catch {
      return '';
    }
  }

  private write(): void {
    const tmp = `${this.file}.tmp`;
    try {
      writeFileSync(tmp, `${JSON.stringify(this.record())}\n`);
      chmodSync(tmp, 0o644);
      renameSync(tmp, this.file);
    } catch (err) {
      if (this.warned) return;
      this.warned = true;
      this.log.warn(
        { file: this.file, err: (err as Error).message },
        `cannot write the health file ${this.file}: edge-classifier health and release health gates will not see this daemon`,
      );
    }
  }
}
