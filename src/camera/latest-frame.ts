/** Counters of a `LatestFrameSlot` since it was made. */
export interface SlotStats {
  /** Frames passed to `offer()` (including those offered after `close()`). */
  readonly offered: number;
  /** Frames replaced by a newer one before anyone took them, discarded by `close()`, or offered after it. */
  readonly dropped: number;
  /** Frames handed to the consumer by `take()` or `next()`. */
  readonly taken: number;
}

/**
 * A one-frame mailbox where the latest frame wins: the hand-over between a
 * source that can produce faster than the classifier consumes (a camera at
 * 30 fps, a model at 8 fps on a Pi Zero 2 W) and that classifier.
 *
 * `offer(frame)` stores the frame, replacing (and counting as dropped) one
 * that was still waiting; if a consumer is waiting in `next()`, it gets the
 * frame at once. The consumer calls `take()` (non-blocking) or awaits
 * `next()` when it is free. Nothing is ever queued beyond one frame, so the
 * consumer always works on the newest frame and memory stays bounded.
 * Invariant: offered = taken + dropped + (1 if a frame is waiting).
 *
 * One consumer at a time: a second concurrent `next()` is refused.
 */
export class LatestFrameSlot<T> {
  private frame: T | undefined;
  private hasFrame = false;
  private waiter: ((frame: T | null) => void) | undefined;
  private closed = false;
  private offeredCount = 0;
  private droppedCount = 0;
  private takenCount = 0;

  /** Stores `frame` as the latest, or hands it to a waiting `next()`; after `close()` it is dropped. */
  offer(frame: T): void {
    this.offeredCount += 1;
    if (this.closed) {
      this.droppedCount += 1;
      return;
    }
    const waiter = this.waiter;
    if (waiter) {
      this.waiter = undefined;
      this.takenCount += 1;
      waiter(frame);
      return;
    }
    if (this.hasFrame) this.droppedCount += 1;
    this.frame = frame;
    this.hasFrame = true;
  }

  /** Removes and returns the waiting frame, or undefined when there is none. */
  take(): T | undefined {
    if (!this.hasFrame) return undefined;
    const frame = this.frame;
    this.frame = undefined;
    this.hasFrame = false;
    this.takenCount += 1;
    return frame;
  }

  /**
   * Resolves with the waiting frame at once, or with the next one offered;
   * resolves with null once the slot is closed.
   * @throws Error when another `next()` is already waiting (one consumer only).
   */
  next(): Promise<T | null> {
    if (this.closed) return Promise.resolve(null);
    if (this.hasFrame) return Promise.resolve(this.take() as T);
    if (this.waiter) {
      return Promise.reject(new Error('LatestFrameSlot.next(): another next() is already waiting; the slot has one consumer'));
    }
    return new Promise<T | null>((resolve) => {
      this.waiter = resolve;
    });
  }

  /** True while a frame is waiting to be taken. */
  get pending(): boolean {
    return this.hasFrame;
  }

  /** True after `close()`. */
  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Ends the hand-over: a waiting frame is dropped (counted), a waiting
   * `next()` resolves with null, later offers are dropped. Idempotent.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.hasFrame) {
      this.droppedCount += 1;
      this.frame = undefined;
      this.hasFrame = false;
    }
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.(null);
  }

  /** Counters since construction. */
  stats(): SlotStats {
    return { offered: this.offeredCount, dropped: this.droppedCount, taken: this.takenCount };
  }
}
