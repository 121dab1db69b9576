import { pino, type Logger, type LevelWithSilent } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

/** Log levels accepted by `--log-level` and `log.level`, most verbose first. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * Creates the process logger: structured JSON lines on stdout (one object per
 * line, for journald and log shippers), or human-readable colourless lines
 * when `format` is `pretty` (the default when stdout is a terminal).
 * Writes are synchronous so that the last lines before an exit are not lost.
 */
export function createLogger(
  level: LevelWithSilent = 'info',
  format: 'json' | 'pretty' = process.stdout.isTTY ? 'pretty' : 'json',
  destination: NodeJS.WritableStream = process.stdout,
): Logger {
  const options = { level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime };
  if (format === 'pretty') {
    const stream = pretty({
      sync: true,
      destination,
      colorize: false,
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname',
      singleLine: true,
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
 * `url` with its password replaced by `***`, for logs, errors and MQTT
 * payloads (camera URLs such as `rtsp://admin:secret@cam/stream`, broker
 * URLs). Returns the text unchanged when it has no password or is not a URL.
 */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password === '') return url;
    parsed.password = '***';
    const text = parsed.toString();
    return url.endsWith('/') ? text : text.replace(/\/$/, '');
  } catch {
    return url;
  }
}
