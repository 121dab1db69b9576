/**
 * A window of the latest durations (ms) of one kind — inference,
 * preprocessing — with percentiles for `<base>/stats`. Fixed memory: a ring
 * of `size` samples; a percentile costs one sort of the window
 * (1000 samples: a few tens of µs, computed once per stats interval).
 */
export class LatencyWindow {
  private readonly samples: Float64Array;
  private next = 0;
  private count = 0;

  /** `size`: how many of the latest samples count (≥ 1). Default 1000 (100 s at 10 fps). */
  constructor(readonly size = 1000) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`latency window size ${size}: expected a whole number ≥ 1`);
    this.samples = new Float64Array(size);
  }

  /** Adds one duration in ms; non-finite values are ignored. */
  add(ms: number): void {
    if (!Number.isFinite(ms)) return;
    this.samples[this.next] = ms;
    this.next = (this.next + 1) % this.size;
    if (this.count < this.size) this.count++;
  }

  /** Samples in the window. */
  get length(): number {
    return this.count;
  }

  /**
   * Percentiles (each p in [0,100]) of the window by the nearest-rank
   * method: the smallest sample with at least p % of the samples ≤ it
   * (p50 of 1..10 is 5, p95 is 10). Null for each when the window is empty.
   */
  percentiles(ps: readonly number[]): (number | null)[] {
    for (const p of ps) if (!(p >= 0 && p <= 100)) throw new Error(`percentile ${p}: expected 0..100`);
    if (this.count === 0) return ps.map(() => null);
    const sorted = this.samples.slice(0, this.count).sort();
    return ps.map((p) => {
      const rank = Math.max(1, Math.ceil((p / 100) * this.count));
      return sorted[rank - 1]!;
    });
  }

  /** Forgets all samples (e.g. after a model reload). */
  clear(): void {
    this.next = 0;
    this.count = 0;
  }
}
