import { performance } from 'node:perf_hooks';
import { Debouncer, resolveSmoothing, type SmoothingOptions } from '../core/debounce.js';
import type { ClassScore } from '../core/types.js';
import { roundedClasses, roundTo, type StatePayload } from './topics.js';

/** Options of `StateSmoother` (config keys `state.*`). Scores are probabilities in [0,1]. */
export interface StateSmootherOptions extends SmoothingOptions {
  /** Score a label needs to become the state. Default 0 (the classifier's score threshold decides). */
  readonly minScore?: number;
  /**
   * h: the state's own label keeps counting while its score is ≥ its
   * threshold − h (on above the threshold, off only below threshold − h). Default 0.
   */
  readonly hysteresis?: number;
  /**
   * Per-label score thresholds replacing `minScore` for those labels, keyed
   * by label; matched as GPIO rules match (case-insensitive, whole label or
   * one of its `, `-separated synonyms: `hotdog` matches `hotdog, hot dog, red hot`).
   */
  readonly labelThresholds?: Readonly<Record<string, number>>;
  /** After this long without a frame the state becomes `unknown`, in ms; 0 = never. Default 0. */
  readonly expireAfterMs?: number;
  /**
   * The classifier's reporting threshold (`inference.threshold`), in [0,1]:
   * a label becomes the state only at or above it too, and the held label
   * keeps counting down to max(its threshold, this) − `hysteresis`, looked
   * up in the wider list `update` is given. Default 0.
   */
  readonly scoreFloor?: number;
}

/** `detected`: a label is the state; `none`: no label passes its threshold; `unknown`: no recent frame. */
type StateStatus = 'detected' | 'none' | 'unknown';

/** The smoothed state: what `<base>/state` and the GPIO-free Home Assistant sensors show. */
export interface SmoothedState {
  readonly status: StateStatus;
  /** The label as written in the labels file; null unless `detected`. */
  readonly label: string | null;
  /** Class index of `label`; null unless `detected`. */
  readonly index: number | null;
  /** Score of `label` in the frame that made it the state, in [0,1]; null unless `detected`. */
  readonly score: number | null;
  /** When the state took this value. */
  readonly since: Date;
  /** Top-k of the frame that made the state (empty for `unknown`). */
  readonly classes: readonly ClassScore[];
}

/** The `<base>/state` payload of a state, made at `now`: score and top-k scores rounded to 4 decimals. */
export function statePayload(s: SmoothedState, now: Date = new Date()): StatePayload {
  return {
    status: s.status,
    label: s.label,
    index: s.index,
    score: s.score === null ? null : roundTo(s.score, 4),
    since: s.since.toISOString(),
    time: now.toISOString(),
    classes: roundedClasses(s.classes),
  };
}

function score01(name: string, v: number): number {
  if (!(Number.isFinite(v) && v >= 0 && v <= 1)) throw new Error(`state ${name} ${v}: expected a score in [0,1]`);
  return v;
}

/** The names a class label answers to: itself and its `, `-separated synonyms, lower case. */
function names(label: string): string[] {
  const l = label.toLowerCase();
  return l.includes(', ') ? [l, ...l.split(', ')] : [l];
}

/**
 * Turns per-frame classifications into a state that does not flap.
 *
 * Each frame votes for one label or for "nothing": the highest-scoring
 * class whose score is ≥ its threshold (per-label, else `minScore`); the
 * current state's label also counts with a score ≥ threshold −
 * `hysteresis`. A {@link Debouncer} then applies `minFrames` of
 * `windowFrames` and `minDwellMs`. With the defaults (1 of 1, h = 0, no
 * dwell, `minScore` 0) the state is the top class of every frame, which
 * is what the daemon did before smoothing existed.
 *
 * `expire(nowMs)`, called from a timer, makes the state `unknown` once no
 * frame came for `expireAfterMs`; the next frames then decide anew (no dwell).
 */
export class StateSmoother {
  private minScore = 0;
  private hysteresis = 0;
  private thresholds = new Map<string, number>();
  private expireAfterMs = 0;
  private scoreFloor = 0;
  private readonly debouncer: Debouncer<string | null>;
  /** The latest class seen for each label voted for, to report its index and score. */
  private readonly seen = new Map<string, ClassScore>();
  private current: SmoothedState | undefined;
  private lastFrameMs = Number.NEGATIVE_INFINITY;

  /** Throws an error naming the option when a value is out of range. */
  constructor(options: StateSmootherOptions = {}) {
    this.debouncer = new Debouncer<string | null>(null, resolveSmoothing(options));
    this.configure(options);
  }

  /**
   * New settings while running (`<base>/set/state/...`): the state and the
   * latest votes stay; the next frames are judged by the new settings.
   * Throws (changing nothing) when a value is out of range.
   */
  reconfigure(options: StateSmootherOptions): void {
    resolveSmoothing(options);
    this.configure(options);
    this.debouncer.reconfigure(options);
  }

  private configure(options: StateSmootherOptions): void {
    const minScore = score01('minScore', options.minScore ?? 0);
    const hysteresis = score01('hysteresis', options.hysteresis ?? 0);
    const scoreFloor = score01('scoreFloor', options.scoreFloor ?? 0);
    const thresholds = new Map<string, number>();
    for (const [label, v] of Object.entries(options.labelThresholds ?? {})) {
      if (label.trim() === '') throw new Error('state label threshold for an empty label: expected a class label such as "Egyptian cat"');
      thresholds.set(label.trim().toLowerCase(), score01(`threshold of "${label}"`, v));
    }
    const expire = options.expireAfterMs ?? 0;
    if (!(Number.isFinite(expire) && expire >= 0)) throw new Error(`state expireAfterMs ${expire}: expected a number of ms ≥ 0 (0: never)`);
    this.minScore = minScore;
    this.hysteresis = hysteresis;
    this.scoreFloor = scoreFloor;
    this.thresholds = thresholds;
    this.expireAfterMs = expire;
  }

  /** The score threshold of a label: its own (by name or synonym), else `minScore`. */
  thresholdOf(label: string): number {
    if (this.thresholds.size > 0) {
      for (const name of names(label)) {
        const t = this.thresholds.get(name);
        if (t !== undefined) return t;
      }
    }
    return this.minScore;
  }

  /**
   * The frame's vote: a label, or null for "nothing above its threshold".
   * A label must be among the reported `classes`; the held one may be
   * anywhere in `candidates`.
   */
  private voteOf(classes: readonly ClassScore[], candidates: readonly ClassScore[]): ClassScore | null {
    const held = this.current?.status === 'detected' ? this.current.label : null;
    // Both lists are highest first and the reported classes are the candidates cut by top-k and threshold,
    // so the reported ones are the first classes.length candidates: no per-frame lookup set is needed.
    for (let i = 0; i < candidates.length; i++) {
      const c = candidates[i]!;
      const threshold = this.thresholdOf(c.label);
      if (c.label === held) {
        if (c.score >= Math.max(threshold, this.scoreFloor) - this.hysteresis) return c;
      } else if (i < classes.length && c.score >= threshold) return c;
    }
    return null;
  }

  /**
   * Takes one frame's reported top-k `classes` (highest score first,
   * probabilities) classified at `now` (`nowMs` on a monotonic clock, for
   * dwell and expiry). `candidates`: the same frame's classes reported
   * beyond `inference.top_k` and below `inference.threshold` (highest
   * first; `classes` is its first `classes.length` entries), where the held label is looked for
   * down to its threshold − hysteresis; default `classes`. Returns the new
   * state when it changed, else null.
   */
  update(
    classes: readonly ClassScore[],
    now: Date = new Date(),
    nowMs: number = performance.now(),
    candidates: readonly ClassScore[] = classes,
  ): SmoothedState | null {
    this.lastFrameMs = nowMs;
    const voted = this.voteOf(classes, candidates);
    const vote = voted?.label ?? null;
    if (voted !== null) this.seen.set(voted.label, voted);
    const wasDecided = this.debouncer.decided;
    const value = this.debouncer.vote(vote, nowMs);
    if (!this.debouncer.decided) return null;
    const status: StateStatus = value === null ? 'none' : 'detected';
    if (wasDecided && this.current !== undefined && this.current.status === status && this.current.label === value) return null;
    const c = value === null ? undefined : this.seen.get(value);
    // Labels no longer in the window cannot be reported again: keep only the state's.
    for (const label of this.seen.keys()) if (label !== value && label !== vote) this.seen.delete(label);
    this.current = { status, label: value, index: c?.index ?? null, score: c?.score ?? null, since: now, classes: [...classes] };
    return this.current;
  }

  /**
   * Called from a timer: when `expireAfterMs` is set and no frame came for
   * that long, the state becomes `unknown` (returned once), and the next
   * frames decide a new state without waiting for the dwell. Else null.
   */
  expire(now: Date = new Date(), nowMs: number = performance.now()): SmoothedState | null {
    if (this.expireAfterMs === 0 || this.current?.status === 'unknown') return null;
    if (this.lastFrameMs === Number.NEGATIVE_INFINITY || nowMs - this.lastFrameMs < this.expireAfterMs) return null;
    return this.markUnknown(now);
  }

  /** Makes the state `unknown` now (e.g. at start-up, before any frame) and forgets the votes. Returns it. */
  markUnknown(now: Date = new Date()): SmoothedState {
    this.debouncer.reset();
    this.seen.clear();
    this.current = { status: 'unknown', label: null, index: null, score: null, since: now, classes: [] };
    return this.current;
  }

  /** The current state; undefined before the first decided frame or `markUnknown`. */
  get state(): SmoothedState | undefined {
    return this.current;
  }
}
