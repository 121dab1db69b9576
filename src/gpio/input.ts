import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Gpio } from 'onoff';
import type { Lifecycle } from '../core/lifecycle.js';
import type { Logger } from '../core/log.js';
import type { GpioBackendKind } from './backends.js';
import { sysfsGpioNumber } from './sysfs.js';

/** Which transitions of an input count: low→high, high→low, or both. */
type InputEdge = 'rising' | 'falling' | 'both';

/** Bias of an input pin. */
type InputPull = 'up' | 'down' | 'none';

/** Settings of one input pin. */
export interface InputOptions {
  readonly edge: InputEdge;
  /** Edges within this many ms after an accepted one are ignored (contact bounce, a PIR's chatter). */
  readonly debounceMs: number;
  /** Bias wanted; see the backends for what each can set. */
  readonly pull: InputPull;
}

/** One opened input pin: `onEdge` is called with the electrical level after each accepted edge. */
export interface GpioInput {
  readonly pin: number;
  /** Current electrical level (1 high, 0 low). */
  read(): 0 | 1;
  release(): void;
}

/** Something that can open GPIO input pins. */
export interface GpioInputBackend {
  readonly name: string;
  /**
   * Opens BCM `pin` as an input that calls `onEdge(level)` on every accepted
   * edge. Throws an error naming the pin and what to do (in use, permission).
   */
  openInput(pin: number, options: InputOptions, onEdge: (level: 0 | 1) => void): GpioInput;
}

/**
 * Debounce by lockout: the first edge is accepted at once (a trigger should
 * react without delay), further edges within `debounceMs` are dropped.
 * Returns a function that tells, for an edge at `now` (ms), whether it counts.
 */
export function lockoutDebouncer(debounceMs: number): (now: number) => boolean {
  let last = -Infinity;
  return (now: number) => {
    if (now - last < debounceMs) return false;
    last = now;
    return true;
  };
}

function edgeMatches(edge: InputEdge, level: 0 | 1): boolean {
  return edge === 'both' || (edge === 'rising' ? level === 1 : level === 0);
}

function inputError(pin: number, sysfs: number, err: NodeJS.ErrnoException): Error {
  const where = `cannot open GPIO BCM ${pin} (sysfs GPIO ${sysfs}) as a trigger input`;
  switch (err.code) {
    case 'EACCES':
    case 'EPERM':
      return new Error(`${where}: permission denied (${err.code}): add the service user to the 'gpio' group`);
    case 'EBUSY':
      return new Error(`${where}: the pin is in use (EBUSY) by a kernel driver or another program: pick a free pin or remove the dtoverlay= that claims it`);
    default:
      return new Error(`${where}: ${err.message}`);
  }
}

/**
 * Inputs through `onoff` (sysfs GPIO): the kernel reports edges (`edge`
 * written to sysfs, interrupts via epoll) and this backend debounces them.
 * sysfs GPIO cannot set a pin's bias: with `pull` up or down the pin keeps
 * the bias set at boot, so `openInput` logs (once per pin) the config.txt line
 * that sets it, e.g. `gpio=17=ip,pu` in /boot/firmware/config.txt.
 */
export class OnoffInputBackend implements GpioInputBackend {
  readonly name = 'sysfs';
  private readonly Gpio: typeof Gpio;
  private readonly root: string;
  private readonly log: Logger;
  private readonly now: () => number;

  constructor(options: { readonly Gpio: typeof Gpio; readonly root?: string; readonly log: Logger; readonly now?: () => number }) {
    this.Gpio = options.Gpio;
    this.root = options.root ?? '/sys';
    this.log = options.log;
    this.now = options.now ?? (() => performance.now());
  }

  openInput(pin: number, options: InputOptions, onEdge: (level: 0 | 1) => void): GpioInput {
    const sysfs = sysfsGpioNumber(pin, this.root);
    let gpio: Gpio;
    try {
      gpio = new this.Gpio(sysfs, 'in', options.edge, { activeLow: false, reconfigureDirection: true });
    } catch (err) {
      throw inputError(pin, sysfs, err as NodeJS.ErrnoException);
    }
    if (options.pull !== 'none') {
      this.log.warn(
        { pin, pull: options.pull },
        `GPIO ${pin}: sysfs GPIO cannot set a pull-${options.pull}; set it at boot with 'gpio=${pin}=ip,${options.pull === 'up' ? 'pu' : 'pd'}' in /boot/firmware/config.txt (or wire an external resistor)`,
      );
    }
    const accept = lockoutDebouncer(options.debounceMs);
    gpio.watch((err, value) => {
      if (err) {
        this.log.warn({ err, pin }, `GPIO ${pin}: reading the input failed`);
        return;
      }
      if (edgeMatches(options.edge, value) && accept(this.now())) onEdge(value);
    });
    this.log.info({ pin, sysfs, edge: options.edge, debounceMs: options.debounceMs }, `GPIO ${pin} opened as a trigger input`);
    return {
      pin,
      read: () => gpio.readSync(),
      release: () => {
        gpio.unwatchAll();
        gpio.unexport();
      },
    };
  }
}

/**
 * Inputs without hardware: each pin holds a level in memory, `set(pin,
 * level)` changes it as a wire would, and the same edge and debounce rules
 * as on a Pi decide which changes fire. `pull` sets the idle level (up: 1,
 * else 0).
 */
export class VirtualInputBackend implements GpioInputBackend {
  readonly name = 'virtual';
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly pins = new Map<number, { level: 0 | 1; change: (level: 0 | 1) => void }>();

  constructor(options: { readonly log: Logger; readonly now?: () => number }) {
    this.log = options.log;
    this.now = options.now ?? (() => performance.now());
  }

  /** @throws Error when `pin` is already open. */
  openInput(pin: number, options: InputOptions, onEdge: (level: 0 | 1) => void): GpioInput {
    if (this.pins.has(pin)) throw new Error(`virtual GPIO BCM ${pin} is already open: expected one user per pin`);
    const accept = lockoutDebouncer(options.debounceMs);
    const state = {
      level: (options.pull === 'up' ? 1 : 0) as 0 | 1,
      change: (level: 0 | 1) => {
        if (level === state.level) return;
        state.level = level;
        if (edgeMatches(options.edge, level) && accept(this.now())) onEdge(level);
      },
    };
    this.pins.set(pin, state);
    this.log.info({ pin, edge: options.edge }, `virtual GPIO ${pin} opened as a trigger input`);
    return {
      pin,
      read: () => state.level,
      release: () => {
        this.pins.delete(pin);
      },
    };
  }

  /** Drives an open virtual input to `level`; throws when the pin is not open. */
  set(pin: number, level: 0 | 1): void {
    const state = this.pins.get(pin);
    if (!state) throw new Error(`virtual GPIO BCM ${pin} is not open as an input`);
    state.change(level);
  }
}

/**
 * The input backend `gpio.backend` names, chosen as the outputs' one is:
 * `virtual`, `sysfs` (onoff; throws naming the fix when it cannot be used),
 * or `auto` (sysfs when /sys/class/gpio is usable, else virtual).
 */
export async function createGpioInputBackend(
  kind: GpioBackendKind,
  options: { readonly log: Logger; readonly root?: string; readonly loadOnoff?: () => Promise<{ Gpio: typeof Gpio }> },
): Promise<GpioInputBackend> {
  const { log } = options;
  const root = options.root ?? '/sys';
  if (kind === 'virtual') return new VirtualInputBackend({ log });
  let GpioClass: typeof Gpio | undefined;
  try {
    GpioClass = (await (options.loadOnoff ?? (() => import('onoff')))()).Gpio;
  } catch {
    GpioClass = undefined;
  }
  if (GpioClass?.accessible) return new OnoffInputBackend({ Gpio: GpioClass, root, log });
  const classDir = path.join(root, 'class', 'gpio');
  const problem =
    GpioClass === undefined
      ? "onoff cannot load: run 'npm rebuild epoll onoff'"
      : existsSync(classDir)
        ? `${classDir}/export is not writable: add the service user to the 'gpio' group`
        : `no ${classDir}`;
  if (kind === 'sysfs') throw new Error(`gpio.backend is 'sysfs' but ${problem}; set gpio.backend to 'virtual' to run without GPIO`);
  log.info(`${problem}: the trigger input is virtual (only MQTT or the API can trigger)`);
  return new VirtualInputBackend({ log });
}

/**
 * A trigger input as a part: `start()` opens BCM `pin` through `backend`
 * and calls `onTrigger()` on every accepted edge; `stop()` releases it.
 */
export class GpioTrigger implements Lifecycle {
  readonly name = 'trigger input';
  private input: GpioInput | undefined;

  constructor(
    private readonly backend: GpioInputBackend,
    private readonly pin: number,
    private readonly options: InputOptions,
    private readonly onTrigger: () => void,
    private readonly log: Logger,
  ) {}

  /** @throws the backend's error naming the pin (in use, permission). */
  async start(): Promise<void> {
    if (this.input) return;
    this.input = this.backend.openInput(this.pin, this.options, (level) => {
      this.log.debug({ pin: this.pin, level }, `trigger input GPIO ${this.pin} fired`);
      this.onTrigger();
    });
  }

  async stop(): Promise<void> {
    const input = this.input;
    this.input = undefined;
    input?.release();
  }
}
