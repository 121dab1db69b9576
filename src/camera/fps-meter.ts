import { performance } from 'node:perf_hooks';
import { invalidParameterError } from '../core/errors.js';

export interface FpsMeterOptions {
  /** Only arrivals within this many ms before now count (default 3000 ms). */
  readonly windowMs?: number;
  /** At most this many recent arrivals are kept (default 120); older ones are forgotten. */
  readonly maxSamples?: number;
}

/**
 * Measured frame rate over a sliding window of arrival times.
 *
 * Arrival times are monotonic milliseconds (`performance.now()` by default).
 * With the k arrivals t1 < ... < tk that lie within `windowMs` of `now`:
 *
 *   fps = min( (k - 1) / (tk - t1),  k / (now - t1) ) * 1000
 *
 * The first term is the rate between the first and the last arrival; the
 * second caps it once arrivals stop, so the reading decays towards 0 instead
 * of freezing at the last rate, and it is exactly 0 when fewer than two
 * arrivals lie in the window (stale or just started). Storage is a fixed ring
 * of `maxSamples` doubles: no allocation per frame.
 */
export class FpsMeter {
  readonly windowMs: number;
  private readonly times: Float64Array;
  /** Index of the oldest stored arrival. */
  private head = 0;
  private count = 0;

  /** @throws RangeError when `windowMs` is not > 0 or `maxSamples` is not an integer >= 2. */
  constructor(options: FpsMeterOptions = {}) {
    const windowMs = options.windowMs ?? 3000;
    const maxSamples = options.maxSamples ?? 120;
    if (!(windowMs > 0) || !Number.isFinite(windowMs)) {
      throw invalidParameterError('fps meter windowMs', 'a positive number of ms', windowMs);
    }
    if (!Number.isInteger(maxSamples) || maxSamples < 2) {
      throw invalidParameterError('fps meter maxSamples', 'an integer of at least 2', maxSamples);
    }
    this.windowMs = windowMs;
    this.times = new Float64Array(maxSamples);
  }

  /** Records one arrival at `at` (monotonic ms, default now). Arrivals must not go back in time. */
  mark(at: number = performance.now()): void {
    const capacity = this.times.length;
    if (this.count < capacity) {
      this.times[(this.head + this.count) % capacity] = at;
      this.count += 1;
    } else {
      this.times[this.head] = at;
      this.head = (this.head + 1) % capacity;
    }
  }

  /** Frames per second measured at `now` (monotonic ms, default now); 0 when stale or fewer than two arrivals. */
  fps(now: number = performance.now()): number {
    const capacity = this.times.length;
    const cutoff = now - this.windowMs;
    // Forget arrivals that left the window (the ring is in arrival order).
    while (this.count > 0 && this.times[this.head] < cutoff) {
      this.head = (this.head + 1) % capacity;
      this.count -= 1;
    }
    const k = this.count;
    if (k < 2) return 0;
    const first = this.times[this.head];
    const last = this.times[(this.head + k - 1) % capacity];
    const span = last - first;
    if (span <= 0) return 0;
    const sinceFirst = Math.max(now - first, span);
    return Math.min((k - 1) / span, k / sinceFirst) * 1000;
  }

  /** Forgets every arrival. */
  reset(): void {
    this.head = 0;
    this.count = 0;
  }
}
