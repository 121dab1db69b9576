import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { silentLogger } from '../../src/core/log.js';
import { createGpioInputBackend, GpioTrigger, lockoutDebouncer, OnoffInputBackend, VirtualInputBackend } from '../../src/gpio/input.js';
import { capturingLogger } from '../helpers/recording.js';

t.test('lockout debounce: the first edge counts at once, bounces within the window do not', async (t) => {
  const accept = lockoutDebouncer(50);
  t.same(
    [0, 10, 49, 50, 51, 120].map((ms) => accept(ms)),
    [true, false, false, true, false, true],
  );
});

t.test('virtual input: edges, debounce and idle level as on a Pi', async (t) => {
  let now = 0;
  const backend = new VirtualInputBackend({ log: silentLogger(), now: () => now });
  const rising: number[] = [];
  const input = backend.openInput(17, { edge: 'rising', debounceMs: 100, pull: 'down' }, (level) => rising.push(now + level * 0));
  t.equal(input.read(), 0, 'pull-down idles low');
  // A button press with contact bounce: 0→1→0→1 within 20 ms, released at 300 ms, pressed again at 500 ms.
  for (const [ms, level] of [
    [1000, 1],
    [1005, 0],
    [1012, 1],
    [1300, 0],
    [1500, 1],
  ] as const) {
    now = ms;
    backend.set(17, level);
  }
  t.same(rising, [1000, 1500], 'one trigger per press');
  t.throws(() => backend.openInput(17, { edge: 'both', debounceMs: 0, pull: 'none' }, () => {}), /BCM 17 is already open/);
  const falling: number[] = [];
  const pir = backend.openInput(4, { edge: 'falling', debounceMs: 0, pull: 'up' }, () => falling.push(now));
  t.equal(pir.read(), 1, 'pull-up idles high');
  now = 2000;
  backend.set(4, 0);
  t.same(falling, [2000], 'active-low sensor fires on the falling edge');
  input.release();
  t.throws(() => backend.set(17, 1), /not open as an input/);
});

/** A fake sysfs tree of a Pi 4 on kernel 6.6 (pinctrl-bcm2711 at base 512). */
function pi4Sys(t: { teardown(fn: () => void): void }): string {
  const root = mkdtempSync(path.join(tmpdir(), 'fake-sys-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const chip = path.join(root, 'class', 'gpio', 'gpiochip512');
  mkdirSync(chip, { recursive: true });
  writeFileSync(path.join(chip, 'label'), 'pinctrl-bcm2711\n');
  writeFileSync(path.join(chip, 'base'), '512\n');
  writeFileSync(path.join(chip, 'ngpio'), '58\n');
  return root;
}

/**
 * A stand-in for onoff's Gpio class (onoff hard-codes /sys/class/gpio, which
 * does not exist here): records the calls and lets the test fire the watch
 * callback as the kernel's edge interrupt would.
 */
function fakeGpio(calls: string[], fail?: NodeJS.ErrnoException) {
  const watchers: ((err: Error | null, value: 0 | 1) => void)[] = [];
  class FakeGpio {
    static accessible = true;
    constructor(
      private readonly gpio: number,
      direction: string,
      edge: string,
    ) {
      if (fail) throw fail;
      calls.push(`new ${gpio} ${direction} ${edge}`);
    }
    watch(cb: (err: Error | null, value: 0 | 1) => void): void {
      watchers.push(cb);
    }
    readSync(): 0 | 1 {
      return 1;
    }
    unwatchAll(): void {
      calls.push('unwatchAll');
    }
    unexport(): void {
      calls.push(`unexport ${this.gpio}`);
    }
  }
  const fire = (value: 0 | 1, err: Error | null = null): void => {
    for (const w of watchers) w(err, value);
  };
  return { Gpio: FakeGpio as unknown as typeof import('onoff').Gpio, fire };
}

t.test('sysfs input through onoff: BCM mapped, kernel edge set, debounced, pull-up explained, released', async (t) => {
  const calls: string[] = [];
  const fake = fakeGpio(calls);
  const { log, lines } = capturingLogger('debug');
  let now = 0;
  const backend = new OnoffInputBackend({ Gpio: fake.Gpio, root: pi4Sys(t), log, now: () => now });
  const fired: number[] = [];
  const trigger = new GpioTrigger(backend, 17, { edge: 'falling', debounceMs: 100, pull: 'up' }, () => fired.push(now), log);
  await trigger.start();
  t.same(calls, ['new 529 in falling'], 'BCM 17 is sysfs 529 on this kernel; the kernel reports falling edges');
  t.ok(
    lines.some((l) => /sysfs GPIO cannot set a pull-up; set it at boot with 'gpio=17=ip,pu' in \/boot\/firmware\/config\.txt/.test(String(l.msg))),
    'how to set the pull-up',
  );
  for (const [ms, value] of [
    [0, 0],
    [30, 0],
    [500, 0],
    [510, 1],
  ] as const) {
    now = ms;
    fake.fire(value);
  }
  fake.fire(0, new Error('EIO'));
  t.same(fired, [0, 500], 'one trigger per press, bounces and rising edges ignored');
  await trigger.stop();
  await trigger.stop();
  t.same(calls.slice(1), ['unwatchAll', 'unexport 529'], 'released once');
});

t.test('sysfs input errors name the pin and the fix; auto falls back to virtual here', async (t) => {
  const busy = Object.assign(new Error('EBUSY: resource busy'), { code: 'EBUSY' });
  const backend = new OnoffInputBackend({ Gpio: fakeGpio([], busy).Gpio, root: pi4Sys(t), log: silentLogger() });
  t.throws(
    () => backend.openInput(4, { edge: 'rising', debounceMs: 0, pull: 'none' }, () => {}),
    /cannot open GPIO BCM 4 \(sysfs GPIO 516\) as a trigger input: the pin is in use \(EBUSY\)/,
  );
  const denied = Object.assign(new Error('EACCES'), { code: 'EACCES' });
  t.throws(
    () =>
      new OnoffInputBackend({ Gpio: fakeGpio([], denied).Gpio, root: pi4Sys(t), log: silentLogger() }).openInput(
        4,
        { edge: 'rising', debounceMs: 0, pull: 'none' },
        () => {},
      ),
    /permission denied \(EACCES\): add the service user to the 'gpio' group/,
  );
  t.equal((await createGpioInputBackend('auto', { log: silentLogger() })).name, 'virtual');
  t.equal((await createGpioInputBackend('virtual', { log: silentLogger() })).name, 'virtual');
  await t.rejects(createGpioInputBackend('sysfs', { log: silentLogger() }), /gpio\.backend is 'sysfs' but .*set gpio\.backend to 'virtual'/);
  t.equal((await createGpioInputBackend('auto', { log: silentLogger(), root: pi4Sys(t), loadOnoff: async () => ({ Gpio: fakeGpio([]).Gpio }) })).name, 'sysfs');
});
