import { MAX_BCM_PIN } from '../core/types.js';
import { GPIO_RULE_DEFAULTS, type GpioRuleConfig } from './schema.js';

/** The grammar of `--gpio` flags, for help texts and errors; the options after the labels come in any order. */
const GPIO_FLAG_GRAMMAR = 'PIN=LABEL[|LABEL…][@MIN_SCORE][:active-low][:hold=MS]';

/** An example `--gpio` flag. */
const GPIO_FLAG_EXAMPLE = '17=Egyptian cat|tabby, tabby cat@0.6:active-low:hold=2000';

/**
 * Parses a `--gpio` flag into a `gpio.rules[]` entry (the configuration's
 * shape, defaults filled), with the grammar {@link GPIO_FLAG_GRAMMAR}:
 *
 * - `PIN` — BCM GPIO number 0..27;
 * - labels separated by `|` (labels themselves may hold commas and spaces,
 *   as ImageNet's `tabby, tabby cat` does), matched case-insensitively;
 * - then, in any order: `@MIN_SCORE` — score threshold in [0,1], default
 *   0.5; `:active-low` — the output is on when the pin is low; `:hold=MS` —
 *   keep on for at least MS milliseconds after the last match.
 *
 * The labels end at the first `@` or `:`, so a label holding `@`, `|` or `:`
 * cannot be written in a flag (a rule in the config file can hold it), and
 * anything after them that is not one of the options is refused rather than
 * read as part of a label.
 * Examples: `17=cat`, `17=cat|dog`, `17=cat@0.6`, `27=Egyptian cat:active-low:hold=2000@0.4`.
 * @throws Error quoting the flag, saying what is wrong and giving the grammar.
 */
export function parseGpioFlag(flag: string): GpioRuleConfig {
  const fail = (why: string): never => {
    throw new Error(`--gpio '${flag}': ${why}; expected ${GPIO_FLAG_GRAMMAR}, e.g. '${GPIO_FLAG_EXAMPLE}'`);
  };
  const eq = flag.indexOf('=');
  if (eq < 0) fail("no '='");
  const pinText = flag.slice(0, eq).trim();
  if (!/^\d+$/.test(pinText)) fail(`pin '${pinText}' is not a BCM GPIO number`);
  const pin = Number(pinText);
  if (pin > MAX_BCM_PIN) fail(`pin ${pin} is not a BCM GPIO number 0..${MAX_BCM_PIN}`);

  const rest = flag.slice(eq + 1);
  const end = rest.search(/[@:]/);
  const labelText = end < 0 ? rest : rest.slice(0, end);
  let minScore: number | undefined;
  let activeLow: boolean | undefined;
  let holdMs: number | undefined;
  for (const [, mark, body] of (end < 0 ? '' : rest.slice(end)).matchAll(/([@:])([^@:]*)/g)) {
    const text = (body ?? '').trim();
    if (mark === '@') {
      if (minScore !== undefined) fail("'@' given twice");
      if (!/^(\d+(\.\d*)?|\.\d+)$/.test(text)) fail(`min score '${text}' is not a number`);
      minScore = Number(text);
      if (minScore > 1) fail(`min score ${minScore} is outside [0,1]`);
    } else if (text.toLowerCase() === 'active-low') {
      if (activeLow !== undefined) fail("':active-low' given twice");
      activeLow = true;
    } else if (/^hold\s*=/i.test(text)) {
      if (holdMs !== undefined) fail("':hold=' given twice");
      const value = text.replace(/^hold\s*=/i, '');
      const m = /^\s*(\d+)\s*(ms)?\s*$/.exec(value);
      if (m === null) fail(`hold '${value}' is not a whole number of milliseconds`);
      holdMs = Number(m?.[1]);
    } else {
      fail(`unknown option ':${text}' (known: :active-low, :hold=MS)`);
    }
  }
  const labels = labelText.split('|').map((l) => l.trim());
  if (labels.some((l) => l === '')) fail('a label is empty');
  return {
    pin,
    labels,
    min_score: minScore ?? GPIO_RULE_DEFAULTS.min_score,
    active_low: activeLow ?? GPIO_RULE_DEFAULTS.active_low,
    hold_ms: holdMs ?? GPIO_RULE_DEFAULTS.hold_ms,
  };
}
