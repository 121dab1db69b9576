import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { findHeaderGpioChip, listGpioChips, sysfsGpioNumber } from '../../src/gpio/sysfs.js';

type Chip = [label: string, base: number, ngpio: number];

/** A fake /sys with class/gpio/gpiochip<base>/{label,base,ngpio} as the kernel lays them out. */
function fakeSys(t: { teardown(fn: () => void): void }, chips: Chip[]): string {
  const root = mkdtempSync(path.join(tmpdir(), 'fake-sys-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const dir = path.join(root, 'class', 'gpio');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'export'), '');
  writeFileSync(path.join(dir, 'unexport'), '');
  for (const [label, base, ngpio] of chips) {
    const chip = path.join(dir, `gpiochip${base}`);
    mkdirSync(chip);
    writeFileSync(path.join(chip, 'label'), `${label}\n`);
    writeFileSync(path.join(chip, 'base'), `${base}\n`);
    writeFileSync(path.join(chip, 'ngpio'), `${ngpio}\n`);
  }
  return root;
}

t.test('old kernel (before 6.6): base 0, sysfs number = BCM number', async (t) => {
  const root = fakeSys(t, [
    ['pinctrl-bcm2835', 0, 54],
    ['raspberrypi-exp-gpio', 504, 8],
  ]);
  t.equal(sysfsGpioNumber(17, root), 17);
  t.equal(sysfsGpioNumber(0, root), 0);
});

t.test('Pi 4 on kernel 6.6: pinctrl-bcm2711 at base 512, BCM 17 = 529', async (t) => {
  const root = fakeSys(t, [
    ['pinctrl-bcm2711', 512, 58],
    ['raspberrypi-exp-gpio', 570, 8],
  ]);
  t.same(findHeaderGpioChip(root), { name: 'gpiochip512', label: 'pinctrl-bcm2711', base: 512, ngpio: 58 });
  t.equal(sysfsGpioNumber(17, root), 529);
  t.equal(sysfsGpioNumber(27, root), 539);
});

t.test('Pi 5: pinctrl-rp1 at base 571 among the SoC controllers, BCM 17 = 588', async (t) => {
  const root = fakeSys(t, [
    ['gpio-brcmstb@107d508500', 512, 32],
    ['gpio-brcmstb@107d508520', 544, 4],
    ['gpio-brcmstb@107d517c00', 548, 17],
    ['gpio-brcmstb@107d517c20', 565, 6],
    ['pinctrl-rp1', 571, 54],
  ]);
  t.equal(sysfsGpioNumber(17, root), 588);
  t.equal(listGpioChips(root).length, 5);
});

t.test('Zero 2 W on kernel 6.6: pinctrl-bcm2835 at base 512', async (t) => {
  const root = fakeSys(t, [['pinctrl-bcm2835', 512, 54]]);
  t.equal(sysfsGpioNumber(4, root), 516);
});

t.test('errors list the chips found', async (t) => {
  const root = fakeSys(t, [
    ['INT34C5:00', 512, 360],
    ['gpio-sim', 872, 8],
  ]);
  t.throws(() => sysfsGpioNumber(17, root), {
    message:
      `no Raspberry Pi header GPIO controller in ${path.join(root, 'class', 'gpio')}: expected a chip labelled pinctrl-rp1, pinctrl-bcm2711, pinctrl-bcm2835; ` +
      "found gpiochip512 'INT34C5:00' base 512, gpiochip872 'gpio-sim' base 872",
  });
  const empty = fakeSys(t, []);
  t.throws(() => findHeaderGpioChip(empty), /found none$/);
  const missing = path.join(empty, 'nothing');
  t.throws(() => sysfsGpioNumber(17, missing), {
    message: `cannot list ${path.join(missing, 'class', 'gpio')}: ENOENT: no such file or directory, scandir '${path.join(missing, 'class', 'gpio')}' (is this a Raspberry Pi with the sysfs GPIO interface?)`,
  });
  const pi4 = fakeSys(t, [['pinctrl-bcm2711', 512, 58]]);
  t.throws(() => sysfsGpioNumber(58, pi4), { message: "BCM GPIO 58: expected 0..57 on gpiochip512 ('pinctrl-bcm2711')" });
});
