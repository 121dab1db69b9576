import type { ClassScore } from '../inference/types.js';

/** Highest BCM GPIO number on the Raspberry Pi 40-pin header (GPIO 0..27). */
export const MAX_BCM_PIN = 27;

/**
 * One GPIO output driven by predictions: the output is on ("rule active",
 * logical level 1) while any of `labels` is among the frame's top-k classes
 * with a score ≥ `minScore`, and for `holdMs` after the last such frame.
 */
export interface GpioRule {
  /** BCM GPIO number 0..27 (not the physical header pin number). */
  readonly pin: number;
  /** Class labels as written in the labels file, e.g. `Egyptian cat`, `tabby, tabby cat`; matched case-insensitively, whole label. */
  readonly labels: readonly string[];
  /** Score threshold in [0,1]. Default 0.5. */
  readonly minScore: number;
  /** The output is on when the pin is electrically low (e.g. many relay boards). Default false. */
  readonly activeLow: boolean;
  /** Keep the output on at least this long after the last matching frame, in ms. Default 0. */
  readonly holdMs: number;
  /** Name for logs, e.g. `door-light`. */
  readonly name?: string;
}

/** A rule as written in the config file; defaults fill the rest (see `gpioRule`). */
export interface GpioRuleInput {
  readonly pin: number;
  readonly labels: readonly string[];
  readonly minScore?: number;
  readonly activeLow?: boolean;
  readonly holdMs?: number;
  readonly name?: string;
}

/** Default score threshold of a rule. */
export const DEFAULT_MIN_SCORE = 0.5;

/** The grammar of `--gpio` flags, for help texts and errors. */
export const GPIO_FLAG_GRAMMAR = 'PIN=LABEL[|LABEL…][@MIN_SCORE][:active-low][:hold=MS]';

/** An example `--gpio` flag. */
export const GPIO_FLAG_EXAMPLE = '17=Egyptian cat|tabby, tabby cat@0.6:active-low:hold=2000';

/**
 * Validates a rule and fills defaults (`minScore` 0.5, `activeLow` false,
 * `holdMs` 0). Throws an error starting with `where` (e.g. `gpio.rules[1]`)
 * naming the field, what was expected and what came.
 */
export function gpioRule(input: GpioRuleInput, where = 'gpio rule'): GpioRule {
  const { pin, labels } = input;
  if (!Number.isInteger(pin) || pin < 0 || pin > MAX_BCM_PIN) {
    throw new Error(`${where}: pin ${pin} is not a BCM GPIO number: expected an integer 0..${MAX_BCM_PIN}`);
  }
  if (labels.length === 0) throw new Error(`${where}: pin ${pin} has no labels: expected at least one class label`);
  const cleaned = labels.map((l) => l.trim());
  const empty = cleaned.findIndex((l) => l === '');
  if (empty >= 0) throw new Error(`${where}: pin ${pin} label #${empty + 1} is empty: expected a class label such as 'Egyptian cat'`);
  const minScore = input.minScore ?? DEFAULT_MIN_SCORE;
  if (!(Number.isFinite(minScore) && minScore >= 0 && minScore <= 1)) {
    throw new Error(`${where}: pin ${pin} minScore ${minScore} is not a score: expected a number in [0,1]`);
  }
  const holdMs = input.holdMs ?? 0;
  if (!(Number.isInteger(holdMs) && holdMs >= 0)) {
    throw new Error(`${where}: pin ${pin} holdMs ${holdMs}: expected a whole number of milliseconds ≥ 0`);
  }
  const rule: GpioRule = { pin, labels: cleaned, minScore, activeLow: input.activeLow ?? false, holdMs };
  return input.name === undefined ? rule : { ...rule, name: input.name };
}

/**
 * Parses a `--gpio` flag with the grammar
 * `PIN=LABEL[|LABEL…][@MIN_SCORE][:active-low][:hold=MS]`:
 *
 * - `PIN` — BCM GPIO number 0..27;
 * - labels separated by `|` (labels themselves may hold commas and spaces,
 *   as ImageNet's `tabby, tabby cat` does), matched case-insensitively;
 * - `@MIN_SCORE` — score threshold in [0,1], default 0.5;
 * - `:active-low` — the output is on when the pin is low;
 * - `:hold=MS` — keep on for at least MS milliseconds after the last match.
 *
 * Examples: `17=cat`, `17=cat|dog`, `17=cat@0.6`, `27=Egyptian cat@0.4:active-low:hold=2000`.
 * A label holding `@` or `|`, or ending in `:word`, cannot be written in a
 * flag; use a rule in the config file for it.
 * Throws an error quoting the flag, saying what is wrong and giving the grammar.
 */
export function parseGpioFlag(flag: string): GpioRule {
  const fail = (why: string): never => {
    throw new Error(`--gpio '${flag}': ${why}; expected ${GPIO_FLAG_GRAMMAR}, e.g. '${GPIO_FLAG_EXAMPLE}'`);
  };
  const eq = flag.indexOf('=');
  if (eq < 0) fail("no '='");
  const pinText = flag.slice(0, eq).trim();
  if (!/^\d+$/.test(pinText)) fail(`pin '${pinText}' is not a BCM GPIO number`);
  const pin = Number(pinText);
  if (pin > MAX_BCM_PIN) fail(`pin ${pin} is not a BCM GPIO number 0..${MAX_BCM_PIN}`);

  let rest = flag.slice(eq + 1);
  let activeLow: boolean | undefined;
  let holdMs: number | undefined;
  // Options from the end: ':word' or ':word=value'.
  for (let m = /:([a-z][a-z-]*)(?:=([^:@|]*))?\s*$/i.exec(rest); m !== null; m = /:([a-z][a-z-]*)(?:=([^:@|]*))?\s*$/i.exec(rest)) {
    const [whole, word, value] = m;
    const key = word!.toLowerCase();
    if (key === 'active-low' && value === undefined) {
      if (activeLow !== undefined) fail("':active-low' given twice");
      activeLow = true;
    } else if (key === 'hold') {
      if (holdMs !== undefined) fail("':hold=' given twice");
      const hm = /^\s*(\d+)\s*(ms)?\s*$/.exec(value ?? '');
      if (hm === null) fail(`hold '${value ?? ''}' is not a whole number of milliseconds`);
      holdMs = Number(hm![1]);
    } else {
      fail(`unknown option ':${word}${value === undefined ? '' : `=${value}`}' (known: :active-low, :hold=MS)`);
    }
    rest = rest.slice(0, rest.length - whole.length);
  }
  let minScore: number | undefined;
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    const scoreText = rest.slice(at + 1).trim();
    if (!/^(\d+(\.\d*)?|\.\d+)$/.test(scoreText)) fail(`min score '${scoreText}' is not a number`);
    minScore = Number(scoreText);
    if (minScore > 1) fail(`min score ${minScore} is outside [0,1]`);
    rest = rest.slice(0, at);
  }
  const labels = rest.split('|').map((l) => l.trim());
  if (labels.some((l) => l === '')) fail('a label is empty');
  return gpioRule({ pin, labels, minScore, activeLow, holdMs }, `--gpio '${flag}'`);
}

/**
 * Checks a set of rules together: one rule per pin.
 * Returns the rules; throws naming the pin used twice (with rule names when given).
 */
export function checkGpioRules(rules: readonly GpioRule[]): readonly GpioRule[] {
  const seen = new Map<number, GpioRule>();
  for (const rule of rules) {
    const prev = seen.get(rule.pin);
    if (prev !== undefined) {
      const name = (r: GpioRule): string => (r.name === undefined ? r.labels.join('|') : r.name);
      throw new Error(
        `GPIO BCM pin ${rule.pin} is used by two rules ('${name(prev)}' and '${name(rule)}'): expected one rule per pin (list several labels in one rule instead)`,
      );
    }
    seen.set(rule.pin, rule);
  }
  return rules;
}

const lowered = new WeakMap<GpioRule, ReadonlySet<string>>();

/**
 * True when any of the rule's labels is among `classes` (a frame's top-k,
 * as `Classification.classes`) with a score ≥ `rule.minScore`. Labels
 * compare case-insensitively and whole (`cat` does not match `tiger cat`);
 * a class label that lists synonyms separated by `, ` (the ImageNet labels
 * file's convention: `hotdog, hot dog, red hot`) also matches each synonym,
 * so `17=hotdog` works. `holdMs` is not applied here (that is the actuator's job).
 */
export function evaluate(rule: GpioRule, classes: readonly ClassScore[]): boolean {
  let set = lowered.get(rule);
  if (set === undefined) {
    set = new Set(rule.labels.map((l) => l.toLowerCase()));
    lowered.set(rule, set);
  }
  for (const c of classes) {
    if (c.score < rule.minScore) continue;
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
