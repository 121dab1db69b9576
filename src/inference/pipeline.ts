/**
 * Frames through a model with preprocessing and inference overlapped: while
 * frame N is in inference, frame N+1 is decoded and written into the next
 * input buffer (slot), and is sent to the engine's worker at once, so the
 * worker starts it the moment N ends. Latest frame wins: a frame that arrives
 * while every slot is busy waits in one place and is replaced (and counted
 * as dropped) by a newer one; nothing queues without bound.
 *
 * With S slots (the session's, default 2) at most S frames are in flight
 * (one in inference, the others prepared or being prepared) plus one
 * waiting. When the source is faster than the model, inference never waits
 * for preprocessing as long as preprocess ≤ inference: the classified rate is
 * then 1000 / (inference ms).
 */

/** The parts the pipeline drives; the classifier provides them (tests: stand-ins). */
export interface PipelineStages<F, S, R> {
  /** A free slot, or null when all are in use. */
  tryAcquire(): S | null;
  release(slot: S): void;
  /** Decodes `frame` into `slot`'s input buffers. A rejection drops the frame (`onError`). */
  prepare(frame: F, slot: S): Promise<void>;
  /** Runs the model on `slot`; resolves with the inference time (ms). */
  invoke(slot: S): Promise<number>;
  /** Reads the result from `slot` (before it is released). */
  finish(frame: F, slot: S, inferenceMs: number): R;
}

/** Counters of a pipeline. */
export interface PipelineStats {
  readonly offered: number;
  /** Frames replaced by a newer one before they were started. */
  readonly dropped: number;
  readonly completed: number;
  readonly failed: number;
  /** Frames started (being prepared, prepared, or in inference) right now. */
  readonly inFlight: number;
  /** Most frames ever in flight at once (≤ the number of slots). */
  readonly maxInFlight: number;
}

export class FramePipeline<F, S, R> {
  private waiting: F | null = null;
  private preparing = false;
  private inFlight = 0;
  private closed = false;
  private idleWaiters: Array<() => void> = [];
  private counts = { offered: 0, dropped: 0, completed: 0, failed: 0, maxInFlight: 0 };

  constructor(
    private readonly stages: PipelineStages<F, S, R>,
    /** Called in frame order of completion with each result. */
    private readonly onResult: (frame: F, result: R) => void,
    /** Called for a frame whose preparation or inference failed. */
    private readonly onError: (frame: F, error: unknown) => void,
  ) {}

  /** Hands a frame to the pipeline; a frame still waiting is replaced (dropped). Ignored after `close()`. */
  offer(frame: F): void {
    if (this.closed) return;
    this.counts.offered += 1;
    if (this.waiting !== null) this.counts.dropped += 1;
    this.waiting = frame;
    this.pump();
  }

  stats(): PipelineStats {
    return { ...this.counts, inFlight: this.inFlight };
  }

  /** Stops taking frames (a waiting one is dropped) and resolves once the frames in flight are done. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.waiting !== null) {
      this.waiting = null;
      this.counts.dropped += 1;
    }
    await this.idle();
  }

  /** Resolves when no frame is in flight or waiting. */
  idle(): Promise<void> {
    if (this.inFlight === 0 && this.waiting === null) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    // One frame is prepared at a time: a second decode would only compete with the first for the CPU.
    if (this.preparing || this.waiting === null) return;
    const slot = this.stages.tryAcquire();
    if (slot === null) return;
    const frame = this.waiting;
    this.waiting = null;
    this.preparing = true;
    this.inFlight += 1;
    this.counts.maxInFlight = Math.max(this.counts.maxInFlight, this.inFlight);
    void this.process(frame, slot);
  }

  private async process(frame: F, slot: S): Promise<void> {
    let invoked: Promise<number>;
    try {
      await this.stages.prepare(frame, slot);
      invoked = this.stages.invoke(slot);
    } catch (err) {
      this.preparing = false;
      this.done(slot);
      this.counts.failed += 1;
      this.onError(frame, err);
      this.pump();
      return;
    }
    // Prepared and handed to the worker: the next frame may be prepared now.
    this.preparing = false;
    this.pump();
    let result: R;
    try {
      const ms = await invoked;
      result = this.stages.finish(frame, slot, ms);
    } catch (err) {
      this.done(slot);
      this.counts.failed += 1;
      this.onError(frame, err);
      this.pump();
      return;
    }
    this.done(slot);
    this.counts.completed += 1;
    this.onResult(frame, result);
    this.pump();
  }

  private done(slot: S): void {
    this.stages.release(slot);
    this.inFlight -= 1;
    if (this.inFlight === 0 && this.waiting === null) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}
