/**
 * Debouncing of a per-frame decision (a label, on/off) so that what users
 * see — `<base>/state`, a relay — does not flap when frames disagree.
 * Generic over the decided value; the state smoother (labels) and the GPIO
 * actuator (on/off per rule) each feed it one vote per classified frame.
 */

/** Smoothing settings shared by the state and the GPIO rules (config keys `state.*`). */
export interface SmoothingOptions {
  /** N: a new value takes over only when it is the vote of at least N of the last M frames. Default 1. */
  readonly minFrames?: number;
  /** M: how many of the latest frames are counted, ≥ N. Default N (N frames in a row). */
  readonly windowFrames?: number;
  /** Least time a value is kept before another may take over, in ms. Default 0. */
  readonly minDwellMs?: number;
}

/** The smoothing settings with defaults applied. */
export interface ResolvedSmoothing {
  readonly minFrames: number;
  readonly windowFrames: number;
  readonly minDwellMs: number;
}

/**
 * Fills defaults and checks ranges: `minFrames` a whole number ≥ 1,
 * `windowFrames` a whole number ≥ `minFrames` (at most 1000), `minDwellMs`
 * ≥ 0. Throws an error naming the option, what was expected and what came.
 */
export function resolveSmoothing(o: SmoothingOptions = {}): ResolvedSmoothing {
  const minFrames = o.minFrames ?? 1;
  if (!Number.isInteger(minFrames) || minFrames < 1) throw new Error(`smoothing minFrames ${minFrames}: expected a whole number ≥ 1`);
  const windowFrames = o.windowFrames ?? minFrames;
  if (!Number.isInteger(windowFrames) || windowFrames < minFrames || windowFrames > 1000) {
    throw new Error(`smoothing windowFrames ${windowFrames}: expected a whole number from minFrames (${minFrames}) to 1000`);
  }
  const minDwellMs = o.minDwellMs ?? 0;
  if (!Number.isFinite(minDwellMs) || minDwellMs < 0) throw new Error(`smoothing minDwellMs ${minDwellMs}: expected a number of ms ≥ 0`);
  return { minFrames, windowFrames, minDwellMs };
}

/**
 * N-of-M debouncer with a minimum dwell time.
 *
 * `vote(v, nowMs)` records one frame's vote and returns the debounced value.
 * The rules, for N = `minFrames`, M = `windowFrames`:
 * - the first vote (or the first after `reset`) with N = 1 sets the value;
 *   with N > 1 the value stays `initial` until some vote reaches N;
 * - the current value is kept while it still has ≥ N of the last M votes;
 * - otherwise the vote with ≥ N of the last M votes (the most votes; on a
 *   tie the latest) takes over, provided `minDwellMs` have passed since the
 *   last change;
 * - nothing with ≥ N votes: the current value is kept.
 *
 * With N = M (the default M) a value must win N frames in a row, so
 * alternating frames never change it. Values compare with `Object.is`
 * (labels as strings, `null` for "nothing", booleans).
 */
export class Debouncer<T> {
  private n: number;
  private m: number;
  private dwellMs: number;
  private readonly initial: T;
  private votes: T[] = [];
  private current: T;
  private changedAt = Number.NEGATIVE_INFINITY;
  private settled = false;

  constructor(initial: T, options: SmoothingOptions = {}) {
    const r = resolveSmoothing(options);
    this.n = r.minFrames;
    this.m = r.windowFrames;
    this.dwellMs = r.minDwellMs;
    this.initial = initial;
    this.current = initial;
  }

  /** The debounced value. */
  get value(): T {
    return this.current;
  }

  /** False until a value was decided by votes (after construction or `reset`). */
  get decided(): boolean {
    return this.settled;
  }

  /** Time (the `nowMs` clock) of the last change, -Infinity before any. */
  get lastChangeMs(): number {
    return this.changedAt;
  }

  /**
   * Records a vote made at `nowMs` (any monotonic ms clock, e.g.
   * `performance.now()`) and returns the debounced value.
   */
  vote(v: T, nowMs: number): T {
    this.votes.push(v);
    if (this.votes.length > this.m) this.votes.shift();
    const counts = new Map<T, number>();
    for (const x of this.votes) counts.set(x, (counts.get(x) ?? 0) + 1);
    if (this.settled && (counts.get(this.current) ?? 0) >= this.n) return this.current;
    let best: T | undefined;
    let bestCount = 0;
    // Latest first, so that a tie goes to the most recent vote.
    for (let i = this.votes.length - 1; i >= 0; i--) {
      const x = this.votes[i]!;
      const c = counts.get(x)!;
      if (c > bestCount) {
        best = x;
        bestCount = c;
      }
    }
    if (bestCount < this.n) return this.current;
    if (this.settled && Object.is(best, this.current)) return this.current;
    if (this.settled && nowMs - this.changedAt < this.dwellMs) return this.current;
    if (!this.settled && Object.is(best, this.current)) {
      // Confirming the initial value is not a change: no dwell starts.
      this.settled = true;
      return this.current;
    }
    this.current = best as T;
    this.changedAt = nowMs;
    this.settled = true;
    return this.current;
  }

  /**
   * New smoothing settings (a live change): the value stays, the latest
   * votes that fit the new window are kept. Throws as `resolveSmoothing`.
   */
  reconfigure(options: SmoothingOptions): void {
    const r = resolveSmoothing(options);
    this.n = r.minFrames;
    this.m = r.windowFrames;
    this.dwellMs = r.minDwellMs;
    if (this.votes.length > this.m) this.votes = this.votes.slice(-this.m);
  }

  /** Forgets the votes and returns to the initial value, undecided (e.g. after frames stopped). */
  reset(): void {
    this.votes = [];
    this.current = this.initial;
    this.settled = false;
    this.changedAt = Number.NEGATIVE_INFINITY;
  }
}
