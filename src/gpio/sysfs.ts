import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * Labels of the GPIO controller that drives the 40-pin header, most specific
 * first: `pinctrl-rp1` (Raspberry Pi 5, the RP1 south bridge), `pinctrl-bcm2711`
 * (Pi 4, Pi 400, CM4), `pinctrl-bcm2835` (Pi 1/2/3, Zero, Zero 2 W). The
 * Pi 5's BCM2712 SoC has controllers of its own (e.g. `gpio-brcmstb@…`) and
 * boards have expanders (e.g. `raspberrypi-exp-gpio`); those are not the
 * header and are never chosen.
 */
const HEADER_GPIO_CHIP_LABELS: readonly string[] = ['pinctrl-rp1', 'pinctrl-bcm2711', 'pinctrl-bcm2835'];

/** One `/sys/class/gpio/gpiochipN` entry. */
export interface GpioChip {
  /** Directory name, e.g. `gpiochip512`. */
  readonly name: string;
  /** Driver label, e.g. `pinctrl-bcm2711`. */
  readonly label: string;
  /** First sysfs GPIO number of the chip. */
  readonly base: number;
  /** Number of lines of the chip. */
  readonly ngpio: number;
}

/**
 * Lists the GPIO chips under `<root>/class/gpio` (root defaults to `/sys`),
 * reading each chip's `label`, `base` and `ngpio` files. Chips whose files
 * cannot be read are skipped. Throws naming the directory when it cannot be
 * listed (no sysfs GPIO interface).
 */
export function listGpioChips(root = '/sys'): GpioChip[] {
  const dir = path.join(root, 'class', 'gpio');
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.startsWith('gpiochip'));
  } catch (err) {
    throw new Error(`cannot list ${dir}: ${(err as Error).message} (is this a Raspberry Pi with the sysfs GPIO interface?)`);
  }
  const chips: GpioChip[] = [];
  for (const name of names.sort()) {
    try {
      const read = (f: string): string => readFileSync(path.join(dir, name, f), 'utf8').trim();
      const base = Number(read('base'));
      const ngpio = Number(read('ngpio'));
      if (!Number.isInteger(base) || !Number.isInteger(ngpio)) continue;
      chips.push({ name, label: read('label'), base, ngpio });
    } catch {}
  }
  return chips;
}

/**
 * The chip driving the 40-pin header: the first label of
 * `HEADER_GPIO_CHIP_LABELS` found among the chips. Throws listing every chip
 * found (name, label, base) when none matches.
 */
export function findHeaderGpioChip(root = '/sys'): GpioChip {
  const chips = listGpioChips(root);
  for (const label of HEADER_GPIO_CHIP_LABELS) {
    const chip = chips.find((c) => c.label === label);
    if (chip !== undefined) return chip;
  }
  const found = chips.length === 0 ? 'none' : chips.map((c) => `${c.name} '${c.label}' base ${c.base}`).join(', ');
  throw new Error(
    `no Raspberry Pi header GPIO controller in ${path.join(root, 'class', 'gpio')}: expected a chip labelled ${HEADER_GPIO_CHIP_LABELS.join(', ')}; found ${found}`,
  );
}

/**
 * The sysfs GPIO number of BCM pin `bcm`: the header chip's `base` + `bcm`.
 * On Raspberry Pi kernels before 6.6 the base is 0 (sysfs number = BCM
 * number); from 6.6 on it is not, e.g. BCM 17 = 529 on a Pi 4 (base 512)
 * and 588 on a Pi 5 (`pinctrl-rp1`, base 571). Throws when no header chip
 * is found (see `findHeaderGpioChip`) or `bcm` is beyond the chip's lines.
 */
export function sysfsGpioNumber(bcm: number, root = '/sys'): number {
  const chip = findHeaderGpioChip(root);
  if (!Number.isInteger(bcm) || bcm < 0 || bcm >= chip.ngpio) {
    throw new Error(`BCM GPIO ${bcm}: expected 0..${chip.ngpio - 1} on ${chip.name} ('${chip.label}')`);
  }
  return chip.base + bcm;
}
