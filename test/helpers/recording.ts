/**
 * Shared pieces of the test helpers that collect things as they happen
 * (MQTT messages, sd_notify datagrams, log lines).
 */
import { Writable } from 'node:stream';
import { type Logger, pino } from 'pino';

/**
 * An append-only list that can be waited on: `waitFor(match)` resolves with
 * the first item, past or future, that matches, and rejects after
 * `timeoutMs` with what was recorded so far.
 */
export class Recording<T> {
  /** Every item so far, in arrival order (the array itself may be emptied by its owner). */
  readonly items: T[] = [];
  private readonly waiters = new Set<() => void>();

  constructor(private readonly describe: (items: readonly T[]) => string = (items) => JSON.stringify(items).slice(-4000)) {}

  push(item: T): void {
    this.items.push(item);
    for (const w of [...this.waiters]) w();
  }

  waitFor(match: (item: T) => boolean, timeoutMs: number, what: string): Promise<T> {
    const found = this.items.find(match);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const item = this.items.find(match);
        if (item === undefined) return;
        this.waiters.delete(check);
        clearTimeout(timer);
        resolve(item);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; got ${this.describe(this.items)}`));
      }, timeoutMs);
      this.waiters.add(check);
    });
  }
}

/** A pino logger at `level` whose lines are collected as parsed JSON objects. */
export function capturingLogger(level = 'info'): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level }, stream), lines };
}
