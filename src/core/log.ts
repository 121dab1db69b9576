import { type LevelWithSilent, type Logger, pino } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

/** Log levels accepted by `--log-level` and `log.level`, most verbose first. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * Creates the process logger: structured JSON lines on stdout (one object per
 * line, for journald and log shippers), or human-readable colourless lines
 * when `format` is `pretty` (the default when stdout is a terminal), where a
 * component logger's lines start with `[component]`.
 * Writes are synchronous so that the last lines before an exit are not lost.
 */
export function createLogger(
  level: LogLevel = 'info',
  format: 'json' | 'pretty' = process.stdout.isTTY ? 'pretty' : 'json',
  destination: NodeJS.WritableStream = process.stdout,
): Logger {
  const options = { level: level as LevelWithSilent, base: undefined, timestamp: pino.stdTimeFunctions.isoTime };
  if (format === 'pretty') {
    const stream = pretty({
      sync: true,
      destination,
      colorize: false,
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname,component',
      singleLine: true,
      messageFormat: (log, messageKey) => {
        const msg = String(log[messageKey] ?? '');
        return typeof log.component === 'string' ? `[${log.component}] ${msg}` : msg;
      },
    });
    return pino(options, stream);
  }
  return pino(options, destination === process.stdout ? pino.destination({ sync: true }) : destination);
}

/** A logger that drops everything, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/**
 * The logger of one component (`camera`, `inference`, `mqtt`, `gpio`,
 * `daemon`, `supervisor`, `systemd`): every line carries
 * `"component": name` (JSON) or starts with `[name]` (pretty), so a journal
 * can be filtered per part, as Zigbee2MQTT's `z2m:mqtt` namespaces do.
 */
export function componentLogger(log: Logger, name: string): Logger {
  return log.child({ component: name });
}

/**
 * "Log once" and "at most every N ms", per key: `allow(key)` is true the
 * first time a key is seen and then again only once `intervalMs` have passed
 * since it last returned true (never again for `Infinity`, the default).
 * `reset(key)` forgets a key (e.g. when an outage is over, so the next one is
 * logged again); `reset()` forgets them all. Callers count what they do not
 * log. Times are monotonic ms (`performance.now()`).
 */
export class LogThrottle {
  private readonly last = new Map<string, number>();

  constructor(private readonly intervalMs = Number.POSITIVE_INFINITY) {}

  /** True when a line for `key` should be logged now. */
  allow(key = '', now: number = performance.now()): boolean {
    const at = this.last.get(key);
    if (at !== undefined && now - at < this.intervalMs) return false;
    this.last.set(key, now);
    return true;
  }

  /** True when `key` has been allowed before (and not reset since). */
  seen(key = ''): boolean {
    return this.last.has(key);
  }

  /** Forgets `key`, or every key. */
  reset(key?: string): void {
    if (key === undefined) this.last.clear();
    else this.last.delete(key);
  }
}
