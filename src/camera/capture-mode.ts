/**
 * Which frames of a running source are classified (`source.mode`):
 * - `continuous`: every frame (the classifier still takes only the latest);
 * - `interval`: one frame every `everyMs`;
 * - `trigger`: a burst of `burst` frames after each `trigger()` (a GPIO
 *   input edge, an MQTT command), none otherwise.
 */
export type CaptureMode =
  | { readonly kind: 'continuous' }
  | { readonly kind: 'interval'; readonly everyMs: number }
  | { readonly kind: 'trigger'; readonly burst: number };

/**
 * Decides, frame by frame, whether the capture mode wants the frame
 * classified. Times are monotonic ms (`performance.now()`).
 *
 * Interval: the first frame is taken, then the first frame arriving at or
 * after each due time; due times stay one interval apart (so captures
 * average exactly one per interval), except after a gap longer than an
 * interval (a restarted source), where the schedule restarts from the frame
 * taken rather than catching up with a burst. Trigger: the next `burst` frames after a trigger are taken; a
 * trigger during a burst starts a fresh burst of `burst` frames (the event
 * goes on), it does not add up.
 */
export class FrameSelector {
  readonly mode: CaptureMode;
  private due = -Infinity;
  private pending = 0;
  private triggers = 0;

  constructor(mode: CaptureMode) {
    this.mode = mode;
  }

  /** A frame arrived at `now`: returns true when it is to be classified. */
  offer(now: number): boolean {
    switch (this.mode.kind) {
      case 'continuous':
        return true;
      case 'interval':
        if (now < this.due) return false;
        // Stay on the schedule (no drift by a frame period per capture), but never catch up with a burst.
        this.due = this.due + this.mode.everyMs > now ? this.due + this.mode.everyMs : now + this.mode.everyMs;
        return true;
      case 'trigger':
        if (this.pending === 0) return false;
        this.pending -= 1;
        return true;
    }
  }

  /** Starts a burst (trigger mode); ignored by the other modes. Returns whether it was taken. */
  trigger(): boolean {
    if (this.mode.kind !== 'trigger') return false;
    this.pending = this.mode.burst;
    this.triggers += 1;
    return true;
  }

  /** ms until the next interval capture is due at `now` (0 when due; undefined outside interval mode). */
  untilDue(now: number): number | undefined {
    return this.mode.kind === 'interval' ? Math.max(0, this.due - now) : undefined;
  }

  /** Frames still to take of the current burst. */
  get burstRemaining(): number {
    return this.pending;
  }

  /** Triggers received so far. */
  get triggerCount(): number {
    return this.triggers;
  }
}
