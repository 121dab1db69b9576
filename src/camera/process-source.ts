import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { type Logger, LogThrottle } from '../core/log.js';
import { PROBLEM, type ProblemReporter } from '../core/problems.js';
import type { Frame, RawPictureFormat } from '../core/types.js';
import { recogniseCameraError } from './camera-errors.js';
import { FpsMeter } from './fps-meter.js';
import type { EndListener, FrameListener, FrameSource, SourceStats } from './frame-source.js';
import { DEFAULT_MAX_FRAME_BYTES, MjpegSplitter } from './mjpeg-splitter.js';
import { describeRawPicture, rawFrameBytes } from './raw-format.js';
import { RawFrameSplitter } from './raw-splitter.js';
import { StallWatchdog } from './stall-watchdog.js';

/** Settings of a `ProcessSource`; only `command`, `args`, `description` and `log` are required. */
export interface ProcessSourceOptions {
  /**
   * Program to run: a name looked up on PATH or a path, or a function
   * returning one, called once by `start()` (so that looking for the program
   * is I/O done at start, not in the constructor). The function may throw an
   * actionable error, which `start()` passes on.
   */
  readonly command: string | (() => string);
  /** Argument array handed to the program as-is (no shell is involved). */
  readonly args: readonly string[];
  /** For logs and the MQTT `source` field; must not contain secrets. */
  readonly description: string;
  readonly log: Logger;
  /**
   * Restart the program when it exits (default true). With false, an exit
   * with status 0 ends the source (`onEnd`), as for a finite video file; a
   * failure still restarts it with backoff.
   */
  readonly restart?: boolean;
  /** What to do when the program is missing, appended to the ENOENT error, e.g. `install it with 'sudo apt install ffmpeg'`. */
  readonly installHint?: string;
  /** Bound on one JPEG frame in bytes (default 8 MiB); larger frames are discarded and counted. */
  readonly maxFrameBytes?: number;
  /** First restart delay in ms (default 1000). */
  readonly initialBackoffMs?: number;
  /** Largest restart delay in ms (default 30000). */
  readonly maxBackoffMs?: number;
  /** A child that delivered frames for at least this many ms resets the backoff to `initialBackoffMs` (default 10000). */
  readonly backoffResetMs?: number;
  /** Grace period in ms between SIGTERM and SIGKILL in `stop()` (default 2000). */
  readonly stopTimeoutMs?: number;
  /** How many of the child's last stderr lines to keep for the exit warning (default 20). */
  readonly stderrLines?: number;
  /** Applied to every argument and stderr line before it is logged or kept, e.g. to hide a password in a URL. */
  readonly redact?: (text: string) => string;
  /** Environment of the child (default: this process's environment). */
  readonly env?: NodeJS.ProcessEnv;
  /** The program writes raw frames of this format (split by size) instead of MJPEG (split on JPEG markers). */
  readonly raw?: RawPictureFormat;
  /**
   * Reads each stderr line of a raw source before its first frame; a format
   * returned replaces `raw` for this run (a camera that adjusted the size it
   * was asked for says so before it writes frames).
   */
  readonly adjustRaw?: (line: string) => RawPictureFormat | undefined;
  /**
   * A child that is running but has delivered no frame for this many ms is
   * stalled: stopped (SIGTERM to its group, SIGKILL after `stopTimeoutMs`) and
   * restarted with the backoff (see `stallTimeoutMs`). Default: no watchdog.
   */
  readonly stallTimeoutMs?: number;
  /** Where stalls and recognised camera errors are reported (`source_stalled`, `camera_error`), cleared when frames flow again. */
  readonly problems?: ProblemReporter;
  /** The camera or device the program opens, for the hints of camera errors (e.g. `/dev/video0`, `the Pi camera`). */
  readonly device?: string;
}

/**
 * Restart delay after `failures` consecutive failed runs, in ms:
 * `min(maxMs, initialMs * 2^failures)`, i.e. 1 s, 2 s, 4 s, ... 30 s with the
 * defaults (the classic doubling backoff, without jitter: each device
 * restarts its own camera, so there is no herd to spread).
 */
export function restartDelayMs(failures: number, initialMs = 1000, maxMs = 30000): number {
  return Math.min(maxMs, initialMs * 2 ** Math.max(0, failures));
}

/** One spawned child and what is known about it. */
interface ChildRun {
  readonly process: ChildProcess;
  readonly initial: boolean;
  spawned: boolean;
  spawnError?: NodeJS.ErrnoException;
  exited: boolean;
  frames: number;
  firstFrameAt: number;
  lastFrameAt: number;
  /** Killed by the stall watchdog, with how long it had been silent (ms). */
  stalledMs?: number;
  readonly stderrTail: string[];
  stderrPartial: string;
  killTimer?: NodeJS.Timeout;
  closeTimer?: NodeJS.Timeout;
  readonly closed: Promise<void>;
  markClosed: () => void;
}

/** Longest stderr line kept, in characters; the rest of a longer line is cut. */
const MAX_STDERR_LINE = 2000;

/**
 * A `FrameSource` fed by a child process that writes frames to its stdout:
 * MJPEG (concatenated JPEG images: `rpicam-vid --codec mjpeg -o -`, `ffmpeg
 * ... -f mjpeg -`), or raw frames of one fixed size (`rpicam-vid --codec
 * yuv420 -o -`, `ffmpeg ... -f rawvideo -pix_fmt rgb24 -`) when `raw` is set.
 *
 * - The program runs with an argument array, never through a shell, in its
 *   own process group (so a Ctrl-C in a terminal reaches the daemon, which
 *   stops the child in order, and not the child directly).
 * - stdout goes through an `MjpegSplitter` or a `RawFrameSplitter`; each
 *   complete frame is delivered as a `Frame` (raw ones with their `raw`
 *   format) with `seq` increasing by 1, continuing across restarts. A raw
 *   frame cut off by an exit is dropped and counted (`discardedFrames`).
 * - With `stallTimeoutMs`, a child that stays alive but delivers nothing for
 *   that long (a hung camera, a dead stream, a wedged V4L2 read) is stopped
 *   and restarted with the backoff, counted in `stalls` and `restarts`,
 *   logged with its last stderr lines and reported as `source_stalled`.
 * - An exit whose stderr names a camera failure (no camera, permission,
 *   busy, broken camera libraries: `recogniseCameraError`) is logged once
 *   per kind with the fix and reported as `camera_error`. Both problems are
 *   cleared by the next frame.
 * - stderr lines are logged at debug level, and the last `stderrLines` are
 *   kept: when the child exits unexpectedly they are logged with its exit
 *   code or signal in a warning, and the last one goes into `lastError`.
 * - An unexpected exit restarts the child after `restartDelayMs(failures)`;
 *   the failure count goes back to 0 once a child has delivered frames for
 *   `backoffResetMs`.
 * - `stop()` sends SIGTERM to the child's process group, SIGKILL after
 *   `stopTimeoutMs`, and resolves once the child has exited. If this process
 *   exits without `stop()`, a process 'exit' hook SIGKILLs the child.
 */
export class ProcessSource implements FrameSource {
  readonly name = 'source';
  readonly description: string;
  private readonly options: ProcessSourceOptions;
  private readonly log: Logger;
  private splitter: MjpegSplitter | RawFrameSplitter;
  private raw: RawPictureFormat | undefined;
  private readonly watchdog: StallWatchdog | undefined;
  private readonly errorLog = new LogThrottle();
  private readonly meter = new FpsMeter();
  private readonly redact: (text: string) => string;

  private command = '';
  private onFrame: FrameListener | undefined;
  private onEnd: EndListener | undefined;
  private running = false;
  private stopping = false;
  private run: ChildRun | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private seq = 0;
  private restartCount = 0;
  private stallCount = 0;
  private lastErrorText: string | undefined;
  private readonly exitHook = (): void => this.killOnExit();

  /** Stores the options; no I/O. @throws RangeError for a bad `maxFrameBytes`. */
  constructor(options: ProcessSourceOptions) {
    this.options = options;
    this.description = options.description;
    this.log = options.log.child({ source: options.description });
    this.raw = options.raw;
    this.splitter = options.raw
      ? new RawFrameSplitter(rawFrameBytes(options.raw))
      : new MjpegSplitter({ maxFrameBytes: options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES });
    this.watchdog = options.stallTimeoutMs === undefined ? undefined : new StallWatchdog(options.stallTimeoutMs, (silentMs) => this.stalled(silentMs));
    this.redact = options.redact ?? ((text) => text);
  }

  listen(onFrame: FrameListener, onEnd?: EndListener): void {
    this.onFrame = onFrame;
    this.onEnd = onEnd;
  }

  /**
   * Spawns the child and resolves once it is running.
   * @throws Error when the program cannot be found or run (names the program
   * and how to install it), when the command resolver throws, or when the
   * source is already started.
   */
  async start(): Promise<void> {
    if (this.running) throw new Error(`${this.description}: start() called while the source is already running`);
    const command = typeof this.options.command === 'function' ? this.options.command() : this.options.command;
    this.command = command;
    this.running = true;
    this.stopping = false;
    this.failures = 0;
    process.on('exit', this.exitHook);
    try {
      const run = this.spawnChild(true);
      await new Promise<void>((resolve, reject) => {
        run.process.once('spawn', () => resolve());
        run.process.once('error', (err) => reject(err));
      });
    } catch (err) {
      this.running = false;
      process.removeListener('exit', this.exitHook);
      throw this.spawnFailure(err as NodeJS.ErrnoException);
    }
    const frames = this.raw ? describeRawPicture(this.raw) : 'MJPEG';
    this.log.info({ program: command, args: this.options.args.map(this.redact), frames }, `started ${path.basename(command)}`);
  }

  /** Stops the child (SIGTERM, then SIGKILL after `stopTimeoutMs`) and resolves once it has exited. Idempotent. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.watchdog?.disarm();
    if (this.restartTimer) {
      clearTimeout(this.restartTimer);
      this.restartTimer = undefined;
    }
    const run = this.run;
    if (run) {
      if (!run.exited && run.process.pid !== undefined) {
        this.signal(run, 'SIGTERM');
        run.killTimer ??= setTimeout(() => {
          this.log.warn(`${this.programName()} did not exit ${this.stopTimeoutMs()} ms after SIGTERM: sending SIGKILL`);
          this.signal(run, 'SIGKILL');
        }, this.stopTimeoutMs());
      }
      await run.closed;
    }
    if (this.running) {
      this.running = false;
      process.removeListener('exit', this.exitHook);
    }
  }

  /** Frames delivered, fps measured over the last 3 s, restarts, stalls, last error, frames the splitter discarded (torn raw frames included). */
  stats(): SourceStats {
    const split = this.splitter.stats();
    const stats = {
      frames: this.seq,
      fps: this.meter.fps(),
      restarts: this.restartCount,
      stalls: this.stallCount,
      discardedFrames: 'tornFrames' in split ? split.tornFrames : split.discardedFrames,
    };
    return this.lastErrorText === undefined ? stats : { ...stats, lastError: this.lastErrorText };
  }

  /** Process id of the running child, or undefined between runs. */
  get pid(): number | undefined {
    return this.run && !this.run.exited ? this.run.process.pid : undefined;
  }

  private stopTimeoutMs(): number {
    return this.options.stopTimeoutMs ?? 2000;
  }

  private programName(): string {
    return path.basename(this.command);
  }

  private spawnChild(initial: boolean): ChildRun {
    let markClosed!: () => void;
    const closed = new Promise<void>((resolve) => {
      markClosed = resolve;
    });
    const child = spawn(this.command, [...this.options.args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      env: this.options.env ?? process.env,
    });
    const run: ChildRun = {
      process: child,
      initial,
      spawned: false,
      exited: false,
      frames: 0,
      firstFrameAt: 0,
      lastFrameAt: 0,
      stderrTail: [],
      stderrPartial: '',
      closed,
      markClosed,
    };
    this.run = run;

    child.on('spawn', () => {
      run.spawned = true;
      if (!this.stopping) this.watchdog?.arm();
    });
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (!run.spawned) run.spawnError = err;
      else this.log.warn({ err }, `${this.programName()}: ${err.message}`);
    });
    child.stdout!.on('data', (chunk: Buffer) => this.onStdout(run, chunk));
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (text: string) => this.onStderr(run, text));
    child.on('exit', () => {
      run.exited = true;
      if (this.run === run) this.watchdog?.disarm();
      // Normally stdout/stderr close right after; if a grandchild still holds them open, stop waiting.
      run.closeTimer = setTimeout(
        () => {
          child.stdout?.destroy();
          child.stderr?.destroy();
        },
        this.stopping ? 0 : 500,
      );
    });
    child.on('close', (code: number | null, signal: NodeJS.Signals | null) => this.onClose(run, code, signal));
    return run;
  }

  private onStdout(run: ChildRun, chunk: Buffer): void {
    if (this.stopping || this.run !== run) return;
    const frames = this.splitter.push(chunk);
    const raw = this.raw;
    for (let j = 0; j < frames.length; j += 1) {
      const now = performance.now();
      this.seq += 1;
      this.meter.mark(now);
      this.watchdog?.frame();
      if (run.frames === 0) this.firstFrame(run, now);
      run.frames += 1;
      run.lastFrameAt = now;
      const frame: Frame = raw ? { seq: this.seq, data: frames[j]!, arrivedAt: now, raw } : { seq: this.seq, data: frames[j]!, arrivedAt: now };
      try {
        this.onFrame?.(frame);
      } catch (err) {
        this.log.error({ err, seq: frame.seq }, 'frame listener threw');
      }
    }
  }

  /** A run delivered its first frame: whatever was wrong is over. */
  private firstFrame(run: ChildRun, now: number): void {
    run.firstFrameAt = now;
    const problems = this.options.problems;
    if (problems) {
      problems.clear(PROBLEM.sourceStalled);
      problems.clear(PROBLEM.cameraError);
    }
    if (this.stallCount > 0 || this.restartCount > 0) this.log.info(`${this.programName()} delivers frames again`);
    this.errorLog.reset();
  }

  /**
   * The watchdog fired: the child is alive but silent. Stop it the way
   * `stop()` does (SIGTERM to the group, SIGKILL after `stopTimeoutMs`); its
   * exit then takes the normal restart path.
   */
  private stalled(silentMs: number): void {
    const run = this.run;
    if (!run || run.exited || this.stopping) return;
    run.stalledMs = silentMs;
    this.stallCount += 1;
    const program = this.programName();
    const seconds = (silentMs / 1000).toFixed(1);
    const message = `${this.description}: ${program} is running but delivered no frame for ${seconds} s`;
    this.lastErrorText = message;
    this.log.warn({ stderr: run.stderrTail, frames: run.frames, stalls: this.stallCount }, `${message}: stopping it and starting it again`);
    this.options.problems?.raise(
      PROBLEM.sourceStalled,
      message,
      'it is being restarted; if this repeats, check the camera cable or stream and the camera program log lines',
      'error',
    );
    this.signal(run, 'SIGTERM');
    run.killTimer ??= setTimeout(() => {
      this.log.warn(`${program} did not exit ${this.stopTimeoutMs()} ms after SIGTERM: sending SIGKILL`);
      this.signal(run, 'SIGKILL');
    }, this.stopTimeoutMs());
  }

  private onStderr(run: ChildRun, text: string): void {
    const parts = (run.stderrPartial + text).split(/\r\n|\n|\r/);
    run.stderrPartial = parts.pop()!.slice(0, MAX_STDERR_LINE);
    for (const part of parts) this.stderrLine(run, part);
  }

  private stderrLine(run: ChildRun, raw: string): void {
    const line = this.redact(raw.trimEnd().slice(0, MAX_STDERR_LINE));
    if (line === '') return;
    this.log.debug(`${this.programName()}: ${line}`);
    const adjusted = this.options.adjustRaw && run.frames === 0 && this.run === run ? this.options.adjustRaw(line) : undefined;
    if (adjusted && this.splitter.pendingBytes === 0 && (adjusted.width !== this.raw?.width || adjusted.height !== this.raw?.height)) {
      this.log.warn(
        { asked: this.raw && describeRawPicture(this.raw), got: describeRawPicture(adjusted) },
        `${this.programName()} adjusted the frame size: splitting ${describeRawPicture(adjusted)} frames`,
      );
      this.raw = adjusted;
      this.splitter = new RawFrameSplitter(rawFrameBytes(adjusted));
    }
    run.stderrTail.push(line);
    if (run.stderrTail.length > (this.options.stderrLines ?? 20)) run.stderrTail.shift();
  }

  private onClose(run: ChildRun, code: number | null, signal: NodeJS.Signals | null): void {
    if (run.killTimer) clearTimeout(run.killTimer);
    if (run.closeTimer) clearTimeout(run.closeTimer);
    if (run.stderrPartial !== '') this.stderrLine(run, run.stderrPartial);
    run.stderrPartial = '';
    if (this.run === run) {
      this.run = undefined;
      this.splitter.reset(); // a frame cut off by the exit is dropped and counted
    }
    run.markClosed();

    if (this.stopping || (run.initial && !run.spawned)) return; // stop() or start() handles these
    if (run.spawnError) {
      const err = this.spawnFailure(run.spawnError);
      this.lastErrorText = err.message;
      this.scheduleRestart(run, err.message, {});
      return;
    }
    const program = this.programName();
    const how = signal ? `was killed by ${signal}` : `exited with code ${String(code)}`;
    if (run.stalledMs !== undefined) {
      this.scheduleRestart(run, `${program} stopped after stalling (${how})`, { stderr: run.stderrTail });
      return;
    }
    if (code === 0 && this.options.restart === false) {
      this.log.info({ frames: run.frames }, `${program} ${how}: end of source`);
      this.running = false;
      process.removeListener('exit', this.exitHook);
      this.onEnd?.(`${program} ${how} after ${run.frames} frames`);
      return;
    }
    const last = run.stderrTail[run.stderrTail.length - 1];
    this.lastErrorText = `${program} ${how}${last ? `: ${last}` : ''}`;
    const cameraError = recogniseCameraError(program, run.stderrTail, { code, signal }, this.options.device ? { device: this.options.device } : {});
    if (cameraError) {
      this.lastErrorText = cameraError.message;
      // Once per kind until frames flow again: a camera that stays unplugged restarts every 30 s.
      if (this.errorLog.allow(cameraError.kind))
        this.log.error({ kind: cameraError.kind, hint: cameraError.hint }, `${cameraError.message}: ${cameraError.hint}`);
      this.options.problems?.raise(PROBLEM.cameraError, cameraError.message, cameraError.hint, 'error');
    }
    this.scheduleRestart(run, `${program} ${how} after ${run.frames} frames`, {
      code,
      signal,
      stderr: run.stderrTail,
    });
  }

  private scheduleRestart(run: ChildRun | undefined, what: string, fields: Record<string, unknown>): void {
    if (run && run.frames > 0 && run.lastFrameAt - run.firstFrameAt >= (this.options.backoffResetMs ?? 10000)) {
      this.failures = 0;
    }
    const delay = restartDelayMs(this.failures, this.options.initialBackoffMs ?? 1000, this.options.maxBackoffMs ?? 30000);
    this.failures += 1;
    this.log.warn({ ...fields, restartInMs: delay }, `${what}; restarting in ${delay} ms`);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.stopping || !this.running) return;
      this.restartCount += 1;
      try {
        this.spawnChild(false);
      } catch (err) {
        const failure = this.spawnFailure(err as NodeJS.ErrnoException);
        this.lastErrorText = failure.message;
        this.scheduleRestart(undefined, failure.message, {});
      }
    }, delay);
  }

  /** Sends `sig` to the child's process group (it leads one: spawned detached), or to the child alone. */
  private signal(run: ChildRun, sig: NodeJS.Signals): void {
    const pid = run.process.pid;
    if (pid === undefined || run.exited) return;
    try {
      process.kill(-pid, sig);
    } catch {
      run.process.kill(sig);
    }
  }

  private killOnExit(): void {
    const run = this.run;
    if (run && !run.exited && run.process.pid !== undefined) {
      try {
        process.kill(-run.process.pid, 'SIGKILL');
      } catch {
        run.process.kill('SIGKILL');
      }
    }
  }

  /** Turns a spawn error into one that names the program and what to do. */
  private spawnFailure(err: NodeJS.ErrnoException): Error {
    const program = this.command;
    const onPath = !program.includes('/');
    const hint = this.options.installHint ? `: ${this.options.installHint}` : '';
    if (err.code === 'ENOENT') {
      const where = onPath ? `'${program}' was not found on PATH` : `'${program}' does not exist`;
      return new Error(`${this.description}: cannot start the source: ${where} (spawn ENOENT)${hint}`, { cause: err });
    }
    if (err.code === 'EACCES') {
      return new Error(`${this.description}: cannot start the source: '${program}' is not executable (spawn EACCES)${hint}`, {
        cause: err,
      });
    }
    return new Error(`${this.description}: cannot start '${program}': ${err.message}`, { cause: err });
  }
}
