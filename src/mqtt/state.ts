import type { ClassScore } from '../inference/types.js';
import { roundTo, type StatePayload } from './topics.js';

/** Options of `StateTracker`. */
export interface StateTrackerOptions {
  /**
   * Extra score threshold for the state, in [0,1]: the top class counts only
   * when its score is at least this. Default 0 (the classifier's own score
   * threshold, already applied to `classes`, decides).
   */
  readonly minScore?: number;
}

/**
 * Decides when `<base>/state` changes. The "publish on change" rule lives
 * here, not in the publisher: the daemon feeds every classification to
 * `update()` and publishes the state it returns (when not `null`) with
 * `MqttPublisher.publishState`, which publishes whatever it is given.
 *
 * The state is the top class (`classes[0]`, highest score first) when its
 * score is ≥ `minScore`, otherwise "nothing" (`label: null`). A new state is
 * returned only when the top label changes (compared exactly, as written in
 * the labels file), with `since` = the time of that change. Score changes
 * under the same label return `null` (no message), so a steady scene
 * produces one retained message, not one per frame.
 */
export class StateTracker {
  private readonly minScore: number;
  private current: StatePayload | undefined;

  constructor(options: StateTrackerOptions = {}) {
    const minScore = options.minScore ?? 0;
    if (!(minScore >= 0 && minScore <= 1)) {
      throw new Error(`state minScore ${minScore}: expected a score in [0,1]`);
    }
    this.minScore = minScore;
  }

  /**
   * Takes the top-k `classes` of one frame (highest score first) and the
   * time it was classified. Returns the new state when the top label differs
   * from the last one (the first call always returns a state), else `null`.
   */
  update(classes: readonly ClassScore[], now: Date = new Date()): StatePayload | null {
    const top = classes.length > 0 && classes[0]!.score >= this.minScore ? classes[0]! : undefined;
    const label = top === undefined ? null : top.label;
    if (this.current !== undefined && this.current.label === label) return null;
    const time = now.toISOString();
    this.current = {
      label,
      index: top === undefined ? null : top.index,
      score: top === undefined ? null : roundTo(top.score, 4),
      since: time,
      time,
    };
    return this.current;
  }

  /** The last state returned by `update`, or `undefined` before the first frame. */
  get state(): StatePayload | undefined {
    return this.current;
  }

  /** Forgets the current state, so the next `update` returns a state again (e.g. after a model reload). */
  reset(): void {
    this.current = undefined;
  }
}
