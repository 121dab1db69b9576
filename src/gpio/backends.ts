import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Gpio } from 'onoff';
import type { Logger } from '../core/log.js';
import { exportAndWaitForAccess, machineHasGpio, raspberryPiModel } from './access.js';
import { sysfsGpioNumber } from './sysfs.js';

/**
 * An electrical output level at the backend: 1 = high (3.3 V), 0 = low.
 * Active-low is NOT applied by backends: `GpioActuator` is the one place
 * that turns a logical level (1 = rule active) into an electrical one.
 */
export type Level = 0 | 1;

/** One opened output pin. */
export interface GpioOutput {
  /** BCM GPIO number. */
  readonly pin: number;
  /** Sets the electrical level. Throws on an I/O error (naming the pin). */
  write(level: Level): void;
  /** Gives the pin back (sysfs: unexport). The level stays as last written. */
  release(): void;
}

/** Something that can drive GPIO output pins. */
export interface GpioBackend {
  /** `sysfs` or `virtual`, for logs and stats. */
  readonly name: string;
  /**
   * Opens BCM `pin` as an output already at electrical `initialLevel` (no
   * glitch to the other level). Throws (or rejects) with an error naming the
   * pin and what to do.
   */
  open(pin: number, initialLevel: Level): GpioOutput | Promise<GpioOutput>;
}

/** The `Gpio` class of `onoff` (injected so the backend can be built without loading the native module). */
export type OnoffGpioClass = typeof Gpio;

/** Options of `OnoffBackend`. */
export interface OnoffBackendOptions {
  /** `Gpio` from `onoff`. */
  readonly Gpio: OnoffGpioClass;
  /** sysfs root for the BCM → sysfs number mapping, default `/sys`. (onoff itself always uses `/sys/class/gpio`.) */
  readonly root?: string;
  readonly log: Logger;
  /**
   * Export each pin first and wait (at most {@link GPIO_ACCESS_WAIT_MS}) for
   * udev to make its files writable before onoff opens it. Default: on the
   * real `/sys` only (with a fake tree onoff is faked too).
   */
  readonly waitForAccess?: boolean;
}

function openError(pin: number, sysfs: number, err: NodeJS.ErrnoException): Error {
  const where = `cannot open GPIO BCM ${pin} (sysfs GPIO ${sysfs}) as an output`;
  switch (err.code) {
    case 'EACCES':
    case 'EPERM':
      return new Error(`${where}: permission denied (${err.code}): add the service user to the 'gpio' group`);
    case 'EBUSY':
      return new Error(`${where}: the pin is in use (EBUSY) by a kernel driver or another program: check dtoverlay= lines in config.txt and other GPIO users`);
    case 'EINVAL':
      return new Error(`${where}: the kernel refused GPIO ${sysfs} (EINVAL): the BCM → sysfs mapping does not match this kernel`);
    default:
      return new Error(`${where}: ${err.message}`);
  }
}

/**
 * Real outputs through `onoff` (the kernel's sysfs GPIO interface,
 * `/sys/class/gpio`). BCM numbers are mapped to sysfs numbers with the
 * header chip's base (`sysfsGpioNumber`: + 512 on a Pi 4, + 571 on a Pi 5
 * with kernels ≥ 6.6). Pins are opened with direction `high`/`low`, which
 * sets output and level in one write, and with onoff's `activeLow: false`,
 * which resets an inversion left by an earlier program: levels here are
 * electrical.
 *
 * Each pin is exported and given up to 2 s for udev to grant the `gpio`
 * group access before onoff opens it (`exportAndWaitForAccess`): onoff's own
 * wait gives up after 0.2–0.6 s, and a busy Pi's udev can take longer, which
 * used to fail the start with a permission error that only a restart cured.
 */
export class OnoffBackend implements GpioBackend {
  readonly name = 'sysfs';
  private readonly Gpio: OnoffGpioClass;
  private readonly root: string;
  private readonly log: Logger;
  private readonly waitForAccess: boolean;

  constructor(options: OnoffBackendOptions) {
    this.Gpio = options.Gpio;
    this.root = options.root ?? '/sys';
    this.log = options.log;
    this.waitForAccess = options.waitForAccess ?? this.root === '/sys';
  }

  /** Rejects when there is no header GPIO chip, or the kernel refuses the pin (message names the pin, the sysfs number and the fix). */
  async open(pin: number, initialLevel: Level): Promise<GpioOutput> {
    const sysfs = sysfsGpioNumber(pin, this.root);
    if (this.waitForAccess) {
      try {
        const { waitedMs } = await exportAndWaitForAccess(sysfs, this.root);
        if (waitedMs > 0) this.log.debug({ pin, sysfs, waited_ms: waitedMs }, 'GPIO files writable after the export');
      } catch (err) {
        throw new Error(`cannot open GPIO BCM ${pin} (sysfs GPIO ${sysfs}) as an output: ${(err as Error).message}`);
      }
    }
    let gpio: Gpio;
    try {
      gpio = new this.Gpio(sysfs, initialLevel === 1 ? 'high' : 'low', 'none', { activeLow: false, reconfigureDirection: true });
    } catch (err) {
      throw openError(pin, sysfs, err as NodeJS.ErrnoException);
    }
    this.log.debug({ pin, sysfs, value: initialLevel }, 'GPIO output opened');
    return {
      pin,
      write(level: Level): void {
        try {
          gpio.writeSync(level);
        } catch (err) {
          throw new Error(`cannot write ${level} to GPIO BCM ${pin} (sysfs GPIO ${sysfs}): ${(err as Error).message}`);
        }
      },
      release(): void {
        gpio.unexport();
      },
    };
  }
}

/**
 * Outputs without hardware (a laptop, CI, a Pi without sysfs GPIO): levels
 * are kept in memory and each open, transition and release is logged at
 * info, so a run shows what the pins would do. `level(pin)` reads them back.
 */
export class VirtualBackend implements GpioBackend {
  readonly name = 'virtual';
  private readonly log: Logger;
  private readonly levels = new Map<number, Level>();
  private writeCount = 0;

  constructor(options: { readonly log: Logger }) {
    this.log = options.log;
  }

  /** Throws when `pin` is already open. */
  open(pin: number, initialLevel: Level): GpioOutput {
    if (this.levels.has(pin)) throw new Error(`virtual GPIO BCM ${pin} is already open: expected one output per pin`);
    this.levels.set(pin, initialLevel);
    this.log.info({ pin, value: initialLevel }, `virtual GPIO ${pin} opened at ${initialLevel}`);
    let released = false;
    return {
      pin,
      write: (level: Level): void => {
        if (released) throw new Error(`virtual GPIO BCM ${pin} was released: cannot write ${level}`);
        this.writeCount++;
        if (this.levels.get(pin) === level) return;
        this.levels.set(pin, level);
        this.log.debug({ pin, value: level }, `virtual GPIO ${pin} → ${level} (electrical)`);
      },
      release: (): void => {
        if (released) return;
        released = true;
        this.log.info({ pin, value: this.levels.get(pin) }, `virtual GPIO ${pin} released`);
        this.levels.delete(pin);
      },
    };
  }

  /** Electrical level of an open pin, `undefined` when not open (never opened or released). */
  level(pin: number): Level | undefined {
    return this.levels.get(pin);
  }

  /** Number of `write()` calls on all pins so far. */
  get writes(): number {
    return this.writeCount;
  }
}

/** Config key `gpio.backend`: `auto` (sysfs when usable, else virtual), `sysfs`, `virtual`. */
export type GpioBackendKind = 'auto' | 'sysfs' | 'virtual';

/** Options of `createGpioBackend`. */
export interface CreateGpioBackendOptions {
  readonly log: Logger;
  /** sysfs root, default `/sys`. */
  readonly root?: string;
  /** File system root for the device tree (is this a Raspberry Pi?), default `/`. */
  readonly machineRoot?: string;
  /** Loads onoff; default `import('onoff')` (which loads its native epoll addon). */
  readonly loadOnoff?: () => Promise<{ Gpio: OnoffGpioClass }>;
}

/**
 * Why `gpio.backend` cannot drive real pins on this machine, or undefined
 * when it can (or when it is `virtual`, or `auto` on a machine without GPIO,
 * where virtual GPIO is the right answer). `auto` falls back to virtual GPIO
 * only on a machine that has no GPIO at all (no `/sys/class/gpio` and not a
 * Raspberry Pi): on a Pi, onoff that cannot load (its `epoll` addon built
 * for another Node.js ABI) or an export file the service user cannot write
 * is a problem to fix, not a reason to log "GPIO 4 on" and move no pin.
 * Used by `createGpioBackend`, the configuration preflight and the self-test.
 */
export async function gpioBackendProblem(kind: GpioBackendKind, options: Omit<CreateGpioBackendOptions, 'log'> = {}): Promise<string | undefined> {
  return (await probe(kind, options)).problem;
}

async function probe(
  kind: GpioBackendKind,
  options: Omit<CreateGpioBackendOptions, 'log'>,
): Promise<{ Gpio?: OnoffGpioClass; problem?: string; noGpio?: boolean }> {
  if (kind === 'virtual') return {};
  const root = options.root ?? '/sys';
  const classDir = path.join(root, 'class', 'gpio');
  const machine = options.machineRoot ?? '/';
  const hasGpio = existsSync(classDir) || machineHasGpio(machine);
  const where = raspberryPiModel(machine) ?? 'this machine';
  let GpioClass: OnoffGpioClass | undefined;
  try {
    GpioClass = (await (options.loadOnoff ?? (() => import('onoff')))()).Gpio;
  } catch (err) {
    if (kind === 'auto' && !hasGpio) return { noGpio: true };
    const first = (err as Error).message.split('\n')[0];
    return {
      problem: `onoff cannot load on ${where} (${first}): its native part (epoll) is missing or built for another Node.js; run 'npm rebuild epoll onoff' in the release folder, or set gpio.backend to 'virtual' to run without pins`,
    };
  }
  if (GpioClass.accessible) return { Gpio: GpioClass };
  if (!existsSync(classDir)) {
    if (kind === 'auto' && !hasGpio) return { noGpio: true };
    return {
      problem: `${where} has no ${classDir} (the kernel's sysfs GPIO interface): use a kernel with CONFIG_GPIO_SYSFS, or set gpio.backend to 'virtual'`,
    };
  }
  return {
    problem: `${classDir}/export is not writable on ${where}: add the service user to the 'gpio' group (sudo usermod -aG gpio edge-classifier), or set gpio.backend to 'virtual'`,
  };
}

/**
 * Builds the GPIO backend for `gpio.backend`:
 * - `virtual` → `VirtualBackend`;
 * - `sysfs` → `OnoffBackend`, or throws when it cannot be used;
 * - `auto` → `OnoffBackend` when usable; `VirtualBackend` (logged at info)
 *   only on a machine without GPIO; on a machine with GPIO that cannot be
 *   used (see {@link gpioBackendProblem}) it throws.
 * @throws Error naming what is wrong and the fix.
 */
export async function createGpioBackend(kind: GpioBackendKind, options: CreateGpioBackendOptions): Promise<GpioBackend> {
  const { log } = options;
  if (kind === 'virtual') return new VirtualBackend({ log });
  const p = await probe(kind, options);
  if (p.Gpio) return new OnoffBackend({ Gpio: p.Gpio, root: options.root ?? '/sys', log });
  if (p.noGpio) {
    log.info('no GPIO on this machine (no /sys/class/gpio, not a Raspberry Pi): using virtual GPIO');
    return new VirtualBackend({ log });
  }
  throw new Error(`gpio.backend '${kind}': ${p.problem}`);
}
