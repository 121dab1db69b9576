import { performance } from 'node:perf_hooks';
import { Debouncer, resolveSmoothing, type SmoothingOptions } from '../core/debounce.js';
import { invalidParameterError } from '../core/errors.js';
import type { Lifecycle } from '../core/lifecycle.js';
import { type Logger, LogThrottle } from '../core/log.js';
import type { ClassScore } from '../core/types.js';
import type { GpioBackend, GpioOutput, Level } from './backends.js';
import { evaluate, type GpioRule } from './rules.js';

/** Options of `GpioActuator`. */
export interface GpioActuatorOptions {
  /** One rule per BCM pin (the configuration schema refuses a pin used twice; so does the virtual backend). */
  readonly rules: readonly GpioRule[];
  readonly backend: GpioBackend;
  readonly log: Logger;
  /**
   * Called after every change of an output's logical level (1 = rule
   * active, 0 = off), including the initial 0 of each pin in `start()` and
   * the return to 0 in `stop()`. The daemon wires it to
   * `MqttPublisher.publishGpio`. Exceptions are logged, not propagated.
   */
  readonly onChange?: (pin: number, level: Level) => void;
  /** Smoothing of each rule's per-frame match (the state's `min_frames`, `window_frames`, `min_dwell_ms`, `hysteresis`). Default none. */
  readonly smoothing?: GpioSmoothing;
}

/** How a rule's per-frame match is smoothed: N of M frames, least dwell, and hysteresis on the rule's score. */
export interface GpioSmoothing extends SmoothingOptions {
  /** An output that is on stays on while a label scores ≥ max(min_score, scoreFloor) − hysteresis. In [0,1]; default 0. */
  readonly hysteresis?: number;
  /** The classifier's reporting threshold (`inference.threshold`), in [0,1]; default 0. */
  readonly scoreFloor?: number;
}

/** The settings of a rule that can change while running (`<base>/set/gpio/<pin>/...`). */
export interface LiveRuleSettings {
  readonly minScore?: number;
  readonly holdMs?: number;
}

interface Slot {
  readonly rule: GpioRule;
  /** The rule's score threshold and hold time in force (live settings change them). */
  minScore: number;
  holdMs: number;
  /** The smoothed match. */
  readonly debouncer: Debouncer<boolean>;
  output: GpioOutput | undefined;
  /** Logical level: true = rule active. */
  on: boolean;
  /** performance.now() of the last matching frame, ms. */
  lastMatchAt: number;
  holdTimer: NodeJS.Timeout | undefined;
}

function checkHysteresis(h: number): number {
  if (!(Number.isFinite(h) && h >= 0 && h <= 1)) throw invalidParameterError('GPIO hysteresis', 'a score difference in [0,1]', h);
  return h;
}

function checkFloor(v: number): number {
  if (!(Number.isFinite(v) && v >= 0 && v <= 1)) throw invalidParameterError('GPIO score floor (inference.threshold)', 'a score in [0,1]', v);
  return v;
}

/** Electrical level for a logical one: inverted for active-low outputs. */
function electrical(rule: GpioRule, on: boolean): Level {
  return on !== rule.activeLow ? 1 : 0;
}

/**
 * Drives GPIO outputs from classifications, one `GpioRule` per BCM pin.
 *
 * Logical level 1 means "rule active"; this class is the one place where it
 * becomes an electrical level (inverted for `activeLow`). The safe (off)
 * level is logical 0: electrical low, or high for active-low outputs.
 *
 * - `start()` opens every pin already at its safe level; if one fails, the
 *   pins opened so far are released and the error is thrown.
 * - `update(classes)` evaluates each rule on a frame's top-k, smooths the
 *   match as the state is smoothed (`smoothing`: N of M frames, least dwell,
 *   and hysteresis — an output that is on keeps matching down to
 *   max(`minScore`, `scoreFloor`) − hysteresis, also beyond top-k and below
 *   the reporting threshold), and writes only when an output changes. With
 *   no smoothing an output turns on at the first matching frame; it turns off
 *   at the first non-matching (smoothed) frame once `holdMs` have passed
 *   since the last match — or, if frames keep not matching, by a timer at
 *   exactly `holdMs` after the last match.
 * - `idle()` (frames stopped, classification paused): the smoothing is
 *   forgotten and every output switches off once its `holdMs` has passed.
 * - `stop()` sets every opened output to its safe level and releases it
 *   (sysfs unexport), once however often or from wherever it is called,
 *   and also after a half-failed `start()`. It throws after doing all pins
 *   when any of them failed.
 */
export class GpioActuator implements Lifecycle {
  readonly name = 'gpio';
  private readonly slots: Slot[];
  /** Pins whose last write failed: one error per failure streak. */
  private readonly writeErrors = new LogThrottle();
  private readonly backend: GpioBackend;
  private readonly log: Logger;
  private readonly onChange: ((pin: number, level: Level) => void) | undefined;
  private started = false;
  private stopping: Promise<void> | undefined;
  private hysteresis: number;
  private scoreFloor: number;

  /** No I/O. Throws when a smoothing setting is out of range. */
  constructor(options: GpioActuatorOptions) {
    const smoothing = resolveSmoothing(options.smoothing);
    this.hysteresis = checkHysteresis(options.smoothing?.hysteresis ?? 0);
    this.scoreFloor = checkFloor(options.smoothing?.scoreFloor ?? 0);
    this.slots = options.rules.map((rule) => ({
      rule,
      minScore: rule.minScore,
      holdMs: rule.holdMs,
      debouncer: new Debouncer<boolean>(false, smoothing),
      output: undefined,
      on: false,
      lastMatchAt: Number.NEGATIVE_INFINITY,
      holdTimer: undefined,
    }));
    this.backend = options.backend;
    this.log = options.log;
    this.onChange = options.onChange;
  }

  /** Opens every rule's pin at its safe level and reports logical 0 for each through `onChange`. */
  async start(): Promise<void> {
    if (this.started || this.stopping !== undefined) return;
    for (const slot of this.slots) {
      try {
        slot.output = await this.backend.open(slot.rule.pin, electrical(slot.rule, false));
      } catch (err) {
        this.releaseAll();
        throw err;
      }
    }
    this.started = true;
    for (const slot of this.slots) this.notify(slot.rule.pin, 0);
    if (this.slots.length > 0) {
      this.log.info(
        { backend: this.backend.name, pins: this.slots.map((s) => ({ pin: s.rule.pin, labels: s.rule.labels, active_low: s.rule.activeLow })) },
        'GPIO outputs ready',
      );
    }
  }

  /**
   * Applies one frame's reported classes (top-k above the score threshold,
   * highest first, as `Classification.classes`). An output that is on
   * keeps matching in `candidates` (the same frame's classes beyond top-k
   * and below the threshold; default `classes`) down to
   * max(min_score, scoreFloor) − hysteresis. `now` is `performance.now()`
   * in ms (a parameter for tests). Ignored before `start()` and after
   * `stop()`. A failed write is logged (once per failure streak) and
   * retried at the next change.
   */
  update(classes: readonly ClassScore[], now: number = performance.now(), candidates: readonly ClassScore[] = classes): void {
    if (!this.started || this.stopping !== undefined) return;
    for (const slot of this.slots) {
      const match = slot.on
        ? evaluate(slot.rule, candidates, Math.max(0, Math.max(slot.minScore, this.scoreFloor) - this.hysteresis))
        : evaluate(slot.rule, classes, slot.minScore);
      this.apply(slot, slot.debouncer.vote(match, now), now);
    }
  }

  /**
   * Frames stopped or classification paused: the smoothing is forgotten
   * and every output switches off once its `holdMs` since the last match
   * has passed (at once when it has).
   */
  idle(now: number = performance.now()): void {
    if (!this.started || this.stopping !== undefined) return;
    for (const slot of this.slots) {
      slot.debouncer.reset();
      this.apply(slot, false, now);
    }
  }

  /** New smoothing settings for every rule (a live change); outputs keep their level. Throws when out of range. */
  setSmoothing(smoothing: GpioSmoothing): void {
    const hysteresis = checkHysteresis(smoothing.hysteresis ?? 0);
    const scoreFloor = checkFloor(smoothing.scoreFloor ?? 0);
    for (const slot of this.slots) slot.debouncer.reconfigure(smoothing);
    this.hysteresis = hysteresis;
    this.scoreFloor = scoreFloor;
  }

  /** New score threshold and/or hold time for the rule on BCM `pin` (a live change). Throws for a pin without a rule or a value out of range. */
  setRule(pin: number, settings: LiveRuleSettings): void {
    const slot = this.slots.find((s) => s.rule.pin === pin);
    if (slot === undefined)
      throw invalidParameterError('GPIO pin', `one of the configured pins (${this.slots.map((s) => s.rule.pin).join(', ') || 'none'})`, pin);
    if (settings.minScore !== undefined && !(settings.minScore >= 0 && settings.minScore <= 1)) {
      throw invalidParameterError(`GPIO ${pin} min_score`, 'a score in [0,1]', settings.minScore);
    }
    if (settings.holdMs !== undefined && !(Number.isInteger(settings.holdMs) && settings.holdMs >= 0)) {
      throw invalidParameterError(`GPIO ${pin} hold_ms`, 'a whole number of ms ≥ 0', settings.holdMs);
    }
    if (settings.minScore !== undefined) slot.minScore = settings.minScore;
    if (settings.holdMs !== undefined) slot.holdMs = settings.holdMs;
  }

  /** The live settings of every rule, by pin. */
  ruleSettings(): Record<string, { readonly min_score: number; readonly hold_ms: number }> {
    const out: Record<string, { min_score: number; hold_ms: number }> = {};
    for (const slot of this.slots) out[String(slot.rule.pin)] = { min_score: slot.minScore, hold_ms: slot.holdMs };
    return out;
  }

  /** One smoothed match (`wanted`) of a rule: on at once, off once `holdMs` after the last match has passed. */
  private apply(slot: Slot, wanted: boolean, now: number): void {
    if (wanted) {
      slot.lastMatchAt = now;
      if (slot.holdTimer !== undefined) {
        clearTimeout(slot.holdTimer);
        slot.holdTimer = undefined;
      }
      if (!slot.on) this.set(slot, true);
    } else if (slot.on) {
      const left = slot.lastMatchAt + slot.holdMs - now;
      if (left <= 0) this.set(slot, false);
      else if (slot.holdTimer === undefined) {
        slot.holdTimer = setTimeout(() => {
          slot.holdTimer = undefined;
          if (this.stopping === undefined && slot.on) this.set(slot, false);
        }, left);
      }
    }
  }

  /** Logical level of every pin: `{ "17": 1, "27": 0 }` (1 = rule active). */
  levels(): Record<string, Level> {
    const out: Record<string, Level> = {};
    for (const slot of this.slots) out[String(slot.rule.pin)] = slot.on ? 1 : 0;
    return out;
  }

  /** Every output to its safe level and released; runs once (later calls return the same promise). */
  stop(): Promise<void> {
    this.stopping ??= Promise.resolve().then(() => this.doStop());
    return this.stopping;
  }

  private doStop(): void {
    const errors: string[] = [];
    for (const slot of this.slots) {
      clearTimeout(slot.holdTimer);
      slot.holdTimer = undefined;
      const output = slot.output;
      if (output === undefined) continue;
      const wasOn = slot.on;
      try {
        output.write(electrical(slot.rule, false));
        slot.on = false;
      } catch (err) {
        errors.push(`BCM ${slot.rule.pin}: ${(err as Error).message}`);
      }
      try {
        output.release();
      } catch (err) {
        errors.push(`BCM ${slot.rule.pin} release: ${(err as Error).message}`);
      }
      slot.output = undefined;
      if (wasOn && !slot.on) this.notify(slot.rule.pin, 0);
    }
    this.started = false;
    if (errors.length > 0) {
      this.log.error({ errors }, 'GPIO outputs could not all be set to their safe level');
      throw new Error(`GPIO stop: ${errors.join('; ')}`);
    }
    if (this.slots.length > 0) this.log.info('GPIO outputs at their safe level and released');
  }

  private set(slot: Slot, on: boolean): void {
    const pin = slot.rule.pin;
    try {
      slot.output!.write(electrical(slot.rule, on));
    } catch (err) {
      if (this.writeErrors.allow(String(pin))) this.log.error({ pin, err: (err as Error).message }, 'GPIO write failed');
      return;
    }
    this.writeErrors.reset(String(pin));
    slot.on = on;
    const level = electrical(slot.rule, on);
    this.log.info(
      { pin, value: on ? 1 : 0, electrical: level },
      `GPIO ${pin} ${on ? 'on' : 'off'} (pin ${level ? 'high' : 'low'}${slot.rule.activeLow ? ', active-low' : ''})`,
    );
    this.notify(pin, on ? 1 : 0);
  }

  private releaseAll(): void {
    for (const slot of this.slots) {
      if (slot.output === undefined) continue;
      try {
        slot.output.release();
      } catch (err) {
        this.log.warn({ pin: slot.rule.pin, err: (err as Error).message }, 'GPIO release failed');
      }
      slot.output = undefined;
    }
  }

  private notify(pin: number, level: Level): void {
    if (this.onChange === undefined) return;
    try {
      this.onChange(pin, level);
    } catch (err) {
      this.log.warn({ pin, err: (err as Error).message }, 'GPIO onChange listener failed');
    }
  }
}
