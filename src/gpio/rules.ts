import type { ClassScore } from '../core/types.js';

/**
 * One GPIO output driven by predictions: the output is on ("rule active",
 * logical level 1) while any of `labels` is among the frame's top-k classes
 * with a score ≥ `minScore`, and for `holdMs` after the last such frame.
 * Rules come from `gpio.rules` or `--gpio` flags, validated by the
 * configuration schema (one rule per pin, bounds, defaults) and mapped onto
 * this shape once, in `config/options.ts`.
 */
export interface GpioRule {
  /** BCM GPIO number 0..27 (not the physical header pin number). */
  readonly pin: number;
  /** Class labels as written in the labels file, e.g. `Egyptian cat`, `tabby, tabby cat`; matched case-insensitively, whole label. */
  readonly labels: readonly string[];
  /** Score threshold in [0,1]. */
  readonly minScore: number;
  /** The output is on when the pin is electrically low (e.g. many relay boards). */
  readonly activeLow: boolean;
  /** Keep the output on at least this long after the last matching frame, in ms. */
  readonly holdMs: number;
}

const lowered = new WeakMap<GpioRule, ReadonlySet<string>>();

/**
 * True when any of the rule's labels is among `classes` (a frame's top-k,
 * as `Classification.classes`) with a score ≥ `minScore` (default the
 * rule's; the actuator passes a live or hysteresis-lowered one). Labels
 * compare case-insensitively and whole (`cat` does not match `tiger cat`);
 * a class label that lists synonyms separated by `, ` (the ImageNet labels
 * file's convention: `hotdog, hot dog, red hot`) also matches each synonym,
 * so `17=hotdog` works. `holdMs` is not applied here (that is the actuator's job).
 */
export function evaluate(rule: GpioRule, classes: readonly ClassScore[], minScore: number = rule.minScore): boolean {
  let set = lowered.get(rule);
  if (set === undefined) {
    set = new Set(rule.labels.map((l) => l.toLowerCase()));
    lowered.set(rule, set);
  }
  for (const c of classes) {
    if (c.score < minScore) continue;
    const label = c.label.toLowerCase();
    if (set.has(label)) return true;
    if (label.includes(', ') && label.split(', ').some((name) => set.has(name))) return true;
  }
  return false;
}

/**
 * The labels of `rule` that no class of the model has (compared as
 * `evaluate` does, synonyms included): such a label can never switch the
 * output, usually a typo (`cat` where the model says `tabby, tabby cat`).
 * `modelLabels` is the model's label list in class order.
 */
export function unknownLabels(rule: GpioRule, modelLabels: readonly string[]): string[] {
  const names = new Set<string>();
  for (const label of modelLabels) {
    const l = label.toLowerCase();
    names.add(l);
    if (l.includes(', ')) for (const name of l.split(', ')) names.add(name);
  }
  return rule.labels.filter((l) => !names.has(l.toLowerCase()));
}

/**
 * One warning per rule that names labels no class of the model has (see
 * `unknownLabels`), e.g. `GPIO 17: the model has no class named "cat": that
 * label will never switch the output`; empty when the model has no labels at
 * all (nothing to compare with). `run` logs these at start-up and
 * `--check-config` prints them.
 */
export function unknownLabelWarnings(rules: readonly GpioRule[], modelLabels: readonly string[]): { pin: number; labels: string[]; message: string }[] {
  if (modelLabels.length === 0) return [];
  return rules.flatMap((rule) => {
    const unknown = unknownLabels(rule, modelLabels);
    if (unknown.length === 0) return [];
    const names = unknown.map((l) => JSON.stringify(l)).join(', ');
    return [{ pin: rule.pin, labels: unknown, message: `GPIO ${rule.pin}: the model has no class named ${names}: that label will never switch the output` }];
  });
}
