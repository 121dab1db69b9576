/** Shortest stall timeout in ms: a camera starting up takes about a second, a network stream a few. */
const MIN_STALL_TIMEOUT_MS = 5000;

/**
 * How long a running source may deliver no frame before it counts as
 * stalled, in ms: `configuredMs` when given, else max(5 frame periods, 5 s)
 * at `fps` Hz (e.g. 5 s at 10 fps, 25 s at 0.2 fps).
 * @throws RangeError for a configured value that is not a positive number of ms.
 */
export function stallTimeoutMs(fps: number, configuredMs?: number): number {
  if (configuredMs !== undefined) {
    if (!(configuredMs > 0) || !Number.isFinite(configuredMs)) {
      throw new RangeError(`stall timeout must be a positive number of ms, got ${String(configuredMs)}`);
    }
    return configuredMs;
  }
  return Math.max(MIN_STALL_TIMEOUT_MS, fps > 0 ? Math.ceil(5000 / fps) : MIN_STALL_TIMEOUT_MS);
}

/**
 * Notices a source that is alive but silent. `arm()` starts the clock (when a
 * child process is spawned), `frame()` resets it on every delivered frame,
 * `disarm()` stops it (the process exited, or the source was stopped on
 * purpose, e.g. between interval captures). When `timeoutMs` pass after the
 * later of arm() and the last frame, `onStall(silentMs)` is called once; the
 * watchdog is then disarmed until armed again.
 *
 * One timer at a time: `frame()` only records a time, and the timer, when it
 * fires early, re-arms itself for the remainder (no timer churn per frame).
 */
export class StallWatchdog {
  readonly timeoutMs: number;
  private readonly onStall: (silentMs: number) => void;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private last = 0;
  private armed = false;

  constructor(timeoutMs: number, onStall: (silentMs: number) => void, now: () => number = () => performance.now()) {
    this.timeoutMs = timeoutMs;
    this.onStall = onStall;
    this.now = now;
  }

  /** Starts (or restarts) watching from now. */
  arm(): void {
    this.armed = true;
    this.last = this.now();
    this.schedule(this.timeoutMs);
  }

  /** A frame arrived. */
  frame(): void {
    if (this.armed) this.last = this.now();
  }

  /** Stops watching. */
  disarm(): void {
    this.armed = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  get isArmed(): boolean {
    return this.armed;
  }

  private schedule(ms: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.check(), Math.max(1, ms));
    this.timer.unref?.();
  }

  private check(): void {
    this.timer = undefined;
    if (!this.armed) return;
    const silent = this.now() - this.last;
    if (silent >= this.timeoutMs) {
      this.armed = false;
      this.onStall(silent);
    } else {
      this.schedule(this.timeoutMs - silent);
    }
  }
}
