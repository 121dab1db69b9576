import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Gpio } from 'onoff';
import type { Logger } from '../core/log.js';
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
   * glitch to the other level). Throws an error naming the pin and what to do.
   */
  open(pin: number, initialLevel: Level): GpioOutput;
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
 */
export class OnoffBackend implements GpioBackend {
  readonly name = 'sysfs';
  private readonly Gpio: OnoffGpioClass;
  private readonly root: string;
  private readonly log: Logger;

  constructor(options: OnoffBackendOptions) {
    this.Gpio = options.Gpio;
    this.root = options.root ?? '/sys';
    this.log = options.log;
  }

  /** Throws when there is no header GPIO chip, or the kernel refuses the pin (message names the pin, the sysfs number and the fix). */
  open(pin: number, initialLevel: Level): GpioOutput {
    const sysfs = sysfsGpioNumber(pin, this.root);
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
  /** Loads onoff; default `import('onoff')` (which loads its native epoll addon). */
  readonly loadOnoff?: () => Promise<{ Gpio: OnoffGpioClass }>;
}

/**
 * Builds the GPIO backend for `gpio.backend`:
 * - `virtual` → `VirtualBackend`;
 * - `sysfs` → `OnoffBackend`; throws when onoff cannot load or
 *   `/sys/class/gpio/export` is not writable (`Gpio.accessible` false);
 * - `auto` → `OnoffBackend` when usable, else `VirtualBackend`, logging why
 *   once: at info when there is no `/sys/class/gpio` (not a Pi), at warn
 *   when it exists but is not writable or onoff cannot load (a Pi with a
 *   permission or install problem, whose outputs would otherwise silently
 *   do nothing).
 */
export async function createGpioBackend(kind: GpioBackendKind, options: CreateGpioBackendOptions): Promise<GpioBackend> {
  const { log } = options;
  const root = options.root ?? '/sys';
  if (kind === 'virtual') return new VirtualBackend({ log });
  const classDir = path.join(root, 'class', 'gpio');
  let GpioClass: OnoffGpioClass | undefined;
  let problem: string | undefined;
  try {
    GpioClass = (await (options.loadOnoff ?? (() => import('onoff')))()).Gpio;
  } catch (err) {
    problem = `onoff cannot load (${(err as Error).message}): run 'npm rebuild epoll onoff'`;
  }
  if (GpioClass !== undefined && !GpioClass.accessible) {
    problem = existsSync(classDir) ? `${classDir}/export is not writable: add the service user to the 'gpio' group` : `no ${classDir}`;
  }
  if (problem === undefined && GpioClass !== undefined) return new OnoffBackend({ Gpio: GpioClass, root, log });
  if (kind === 'sysfs') throw new Error(`gpio.backend is 'sysfs' but ${problem}; set gpio.backend to 'virtual' to run without GPIO`);
  if (problem === `no ${classDir}`) log.info(`${problem}: using virtual GPIO`);
  else log.warn(`${problem}: using virtual GPIO (outputs will not change)`);
  return new VirtualBackend({ log });
}
