import type { Logger } from './log.js';

/**
 * The one contract of every long-lived part (frame sources, the classifier
 * and its interpreter host, the MQTT publisher, the embedded broker, the GPIO
 * actuator, the systemd notifier, timers), after Zigbee2MQTT's
 * `lib/extension/extension.ts`:
 *
 * - the constructor stores options and does no I/O;
 * - `start(signal)` acquires what the part needs (spawns, connects, opens,
 *   loads) and resolves when the part is running. It watches `signal` where
 *   it waits for something slow that can be given up safely (a broker
 *   connection, a program to appear) and then rejects with the signal's
 *   reason; work that must not be interrupted (a native interpreter being
 *   built) is finished first;
 * - `stop()` releases everything, is idempotent, and is safe after a failed
 *   or cancelled `start()` and before any `start()`. It rejects only when
 *   something could not be released (e.g. a GPIO pin left driven).
 */
export interface Lifecycle {
  /** Name for logs, e.g. `mqtt publisher`, `source`. */
  readonly name: string;
  start(signal: AbortSignal): Promise<void>;
  stop(): Promise<void>;
}

/** A signal that is never aborted, for callers with nothing to cancel (tests, one-shot commands). */
export const NEVER_ABORTED: AbortSignal = new AbortController().signal;

/** A start-up that was cancelled through its signal (SIGTERM or a reload during start). Not a failure. */
export class CancelledError extends Error {
  override readonly name = 'CancelledError';
}

/**
 * Starts parts in order and stops them in reverse (Zigbee2MQTT's
 * `Controller.start/stop`).
 *
 * `start(part, signal)` records the part before starting it — so that a part
 * whose start failed half-way is still stopped — and throws the signal's
 * reason when `signal` is aborted before or right after the part's start.
 * Start-up is cancelled between parts and inside the parts that watch the
 * signal, never by dropping a start that is under way.
 *
 * `stop()` stops every recorded part in reverse order, each in its own
 * try/catch: a failure is logged and remembered, the rest still stop, and the
 * first failure is thrown once all are done. Idempotent: a part is stopped
 * once.
 */
export class Parts {
  private readonly started: Lifecycle[] = [];

  constructor(private readonly log: Logger) {}

  /** Starts `part` and returns it. @throws what `part.start` throws, or the signal's reason when aborted. */
  async start<T extends Lifecycle>(part: T, signal: AbortSignal): Promise<T> {
    signal.throwIfAborted();
    this.started.push(part);
    const t0 = performance.now();
    await part.start(signal);
    this.log.debug({ part: part.name, ms: Math.round(performance.now() - t0) }, `started ${part.name}`);
    signal.throwIfAborted();
    return part;
  }

  /** Names of the parts started (or being started), in start order. */
  names(): string[] {
    return this.started.map((p) => p.name);
  }

  /** Stops what was started, in reverse order; see the class description. */
  async stop(): Promise<void> {
    const parts = this.started.splice(0).reverse();
    let failure: { err: unknown } | undefined;
    for (const part of parts) {
      try {
        await part.stop();
        this.log.debug({ part: part.name }, `stopped ${part.name}`);
      } catch (err) {
        failure ??= { err };
        this.log.error({ part: part.name, err }, `stopping ${part.name} failed: ${(err as Error)?.message ?? String(err)}`);
      }
    }
    if (failure) throw failure.err;
  }
}

/**
 * A repeating timer as a part: `tick` runs every `everyMs` ms between
 * `start()` and `stop()`. The timer does not keep the process alive; an
 * exception in `tick` is logged, and the timer goes on.
 */
export class IntervalTimer implements Lifecycle {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly name: string,
    private readonly everyMs: number,
    private readonly tick: () => void,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    if (this.timer) return;
    this.timer = setInterval(() => {
      try {
        this.tick();
      } catch (err) {
        this.log.error({ err }, `${this.name} failed: ${(err as Error).message}`);
      }
    }, this.everyMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
