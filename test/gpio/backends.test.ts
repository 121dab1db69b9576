import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { silentLogger } from '../../src/core/log.js';
import { GpioActuator } from '../../src/gpio/actuator.js';
import { createGpioBackend, gpioBackendProblem, OnoffBackend, type OnoffGpioClass, VirtualBackend } from '../../src/gpio/backends.js';
import { rule } from '../helpers/gpio.js';
import { capturingLogger } from '../helpers/recording.js';

function tempRoot(t: { teardown(fn: () => void): void }): string {
  const root = mkdtempSync(path.join(tmpdir(), 'fake-sys-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  return root;
}

/** A fake sysfs tree of a Pi 5 on kernel 6.6 (pinctrl-rp1 at base 571). */
function pi5Sys(t: { teardown(fn: () => void): void }): string {
  const root = tempRoot(t);
  const chip = path.join(root, 'class', 'gpio', 'gpiochip571');
  mkdirSync(chip, { recursive: true });
  writeFileSync(path.join(chip, 'label'), 'pinctrl-rp1\n');
  writeFileSync(path.join(chip, 'base'), '571\n');
  writeFileSync(path.join(chip, 'ngpio'), '54\n');
  return root;
}

/**
 * A stand-in for onoff's Gpio class, recording what the backend asks of it.
 * onoff hard-codes /sys/class/gpio, which does not exist on this machine, so
 * the real class cannot open pins here.
 */
function fakeGpioClass(calls: string[], fail?: NodeJS.ErrnoException): OnoffGpioClass {
  class FakeGpio {
    static accessible = true;
    constructor(
      private readonly gpio: number,
      direction: string,
      edge: string,
      options: { activeLow?: boolean; reconfigureDirection?: boolean },
    ) {
      if (fail !== undefined) throw fail;
      calls.push(`new ${gpio} ${direction} ${edge} activeLow=${String(options.activeLow)}`);
    }
    writeSync(value: number): void {
      calls.push(`write ${this.gpio} ${value}`);
    }
    unexport(): void {
      calls.push(`unexport ${this.gpio}`);
    }
  }
  return FakeGpio as unknown as OnoffGpioClass;
}

t.test('auto picks the virtual backend on this machine (real onoff: Gpio.accessible is false)', async (t) => {
  const { Gpio } = await import('onoff');
  t.equal(Gpio.accessible, false, 'no writable /sys/class/gpio/export here');
  const { log, lines } = capturingLogger();
  const backend = await createGpioBackend('auto', { log });
  t.equal(backend.name, 'virtual');
  t.ok(backend instanceof VirtualBackend);
  t.same(
    lines.map((l) => [l.level, l.msg]),
    [[30, 'no GPIO on this machine (no /sys/class/gpio, not a Raspberry Pi): using virtual GPIO']],
  );
});

t.test('auto on a machine with GPIO that cannot be used is an error with the fix, never a silent virtual fallback', async (t) => {
  const root = pi5Sys(t);
  const { log, lines } = capturingLogger();
  const machineRoot = tempRoot(t);
  await t.rejects(createGpioBackend('auto', { log, root, machineRoot }), {
    message: `gpio.backend 'auto': ${path.join(root, 'class', 'gpio')}/export is not writable on this machine: add the service user to the 'gpio' group (sudo usermod -aG gpio edge-classifier), or set gpio.backend to 'virtual'`,
  });
  // onoff's epoll built for another Node.js ABI, on a Raspberry Pi.
  mkdirSync(path.join(machineRoot, 'proc', 'device-tree'), { recursive: true });
  writeFileSync(path.join(machineRoot, 'proc', 'device-tree', 'model'), 'Raspberry Pi 4 Model B Rev 1.5\0');
  const epoll = () => Promise.reject(new Error('The module epoll.node was compiled against a different Node.js version using NODE_MODULE_VERSION 108'));
  await t.rejects(createGpioBackend('auto', { log, root, machineRoot, loadOnoff: epoll }), {
    message:
      /^gpio\.backend 'auto': onoff cannot load on Raspberry Pi 4 Model B Rev 1\.5 \(The module epoll\.node .*NODE_MODULE_VERSION 108\): .*run 'npm rebuild epoll onoff'/,
  });
  // The same on a Pi whose kernel has no sysfs GPIO.
  await t.rejects(createGpioBackend('auto', { log, root: tempRoot(t), machineRoot }), { message: /Raspberry Pi 4 Model B Rev 1\.5 has no .*class\/gpio/ });
  t.equal(
    await gpioBackendProblem('auto', { root, machineRoot, loadOnoff: epoll }),
    (
      await createGpioBackend('auto', { log, root, machineRoot, loadOnoff: epoll }).then(
        () => new Error('resolved'),
        (e: Error) => e,
      )
    ).message.replace("gpio.backend 'auto': ", ''),
    'the preflight reports the same',
  );
  // A laptop whose onoff cannot load either: no GPIO here, virtual is right.
  const laptop = await createGpioBackend('auto', { log, root: tempRoot(t), machineRoot: tempRoot(t), loadOnoff: epoll });
  t.equal(laptop.name, 'virtual');
  t.same(
    lines.map((l) => [l.level, l.msg]),
    [[30, 'no GPIO on this machine (no /sys/class/gpio, not a Raspberry Pi): using virtual GPIO']],
    'nothing logged for the refusals (they are errors), one info line for the laptop',
  );
});

t.test("'sysfs' refuses to fall back; 'virtual' is always virtual", async (t) => {
  await t.rejects(createGpioBackend('sysfs', { log: silentLogger() }), {
    message:
      "gpio.backend 'sysfs': this machine has no /sys/class/gpio (the kernel's sysfs GPIO interface): use a kernel with CONFIG_GPIO_SYSFS, or set gpio.backend to 'virtual'",
  });
  t.equal((await createGpioBackend('virtual', { log: silentLogger() })).name, 'virtual');
  const calls: string[] = [];
  const chosen = await createGpioBackend('sysfs', { log: silentLogger(), root: pi5Sys(t), loadOnoff: async () => ({ Gpio: fakeGpioClass(calls) }) });
  t.equal(chosen.name, 'sysfs', 'onoff is used when Gpio.accessible is true');
});

t.test('OnoffBackend maps BCM to sysfs numbers and opens outputs at their level (onoff faked: no sysfs here)', async (t) => {
  const calls: string[] = [];
  const backend = new OnoffBackend({ Gpio: fakeGpioClass(calls), root: pi5Sys(t), log: silentLogger() });
  const actuator = new GpioActuator({ rules: ['17=cat', '27=cat:active-low'].map(rule), backend, log: silentLogger() });
  await actuator.start();
  actuator.update([{ index: 1, label: 'cat', score: 0.9 }]);
  await actuator.stop();
  t.same(calls, [
    'new 588 low none activeLow=false',
    'new 598 high none activeLow=false',
    'write 588 1',
    'write 598 0',
    'write 588 0',
    'unexport 588',
    'write 598 1',
    'unexport 598',
  ]);
});

t.test('OnoffBackend errors name the pin, the sysfs number and the fix', async (t) => {
  const root = pi5Sys(t);
  const eacces = Object.assign(new Error("EACCES: permission denied, open '/sys/class/gpio/export'"), { code: 'EACCES' });
  const denied = new OnoffBackend({ Gpio: fakeGpioClass([], eacces), root, log: silentLogger() });
  await t.rejects(async () => denied.open(17, 0), {
    message: "cannot open GPIO BCM 17 (sysfs GPIO 588) as an output: permission denied (EACCES): add the service user to the 'gpio' group",
  });
  const ebusy = Object.assign(new Error('EBUSY: resource busy or locked, write'), { code: 'EBUSY' });
  await t.rejects(
    async () => new OnoffBackend({ Gpio: fakeGpioClass([], ebusy), root, log: silentLogger() }).open(4, 0),
    /BCM 4 \(sysfs GPIO 575\).*in use \(EBUSY\)/,
  );
  const noChip = new OnoffBackend({ Gpio: fakeGpioClass([]), root: tempRoot(t), log: silentLogger() });
  await t.rejects(async () => noChip.open(17, 0), /cannot list .*class\/gpio/);
});

t.test('VirtualBackend keeps levels and refuses a pin opened twice', async (t) => {
  const { log, lines } = capturingLogger('debug');
  const backend = new VirtualBackend({ log });
  const out = backend.open(17, 0);
  t.throws(() => backend.open(17, 1), /virtual GPIO BCM 17 is already open/);
  out.write(1);
  out.write(1);
  t.equal(backend.level(17), 1);
  t.equal(backend.writes, 2);
  out.release();
  t.equal(backend.level(17), undefined);
  t.throws(() => out.write(0), /virtual GPIO BCM 17 was released/);
  t.same(
    lines.map((l) => [l.level, l.msg]),
    [
      [30, 'virtual GPIO 17 opened at 0'],
      [20, 'virtual GPIO 17 → 1 (electrical)'],
      [30, 'virtual GPIO 17 released'],
    ],
    'electrical writes at debug: the actuator logs each transition at info with its logical and electrical level',
  );
});
