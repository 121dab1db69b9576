/** GPIO rules for tests, written as `--gpio` flags and mapped as the daemon maps `gpio.rules`. */
import { parseGpioFlag } from '../../src/config/gpio-flag.js';
import type { GpioRule } from '../../src/gpio/rules.js';

export function rule(flag: string): GpioRule {
  const r = parseGpioFlag(flag);
  return { pin: r.pin, labels: r.labels, minScore: r.min_score, activeLow: r.active_low, holdMs: r.hold_ms };
}
