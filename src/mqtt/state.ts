import type { ClassScore } from '../core/types.js';
import { roundTo, type StatePayload } from './topics.js';

/**
 * Decides when `<base>/state` changes. The "publish on change" rule lives
 * here, not in the publisher: the daemon feeds every classification to
 * `update()` and publishes the state it returns (when not `null`) with
 * `MqttPublisher.publishState`, which publishes whatever it is given.
 *
 * The state is the top class (`classes[0]`, highest score first; the
 * classifier's score threshold already applied), or "nothing" (`label: null`)
 * when no class is above the threshold. A new state is
 * returned only when the top label changes (compared exactly, as written in
 * the labels file), with `since` = the time of that change. Score changes
 * under the same label return `null` (no message), so a steady scene
 * produces one retained message, not one per frame.
 */
export class StateTracker {
  private current: StatePayload | undefined;

  /**
   * Takes the top-k `classes` of one frame (highest score first) and the
   * time it was classified. Returns the new state when the top label differs
   * from the last one (the first call always returns a state), else `null`.
   */
  update(classes: readonly ClassScore[], now: Date = new Date()): StatePayload | null {
    const top = classes[0];
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
}
