/** The part of a terminal stream the progress bar uses (process.stderr satisfies it). */
export interface ProgressStream {
  readonly isTTY?: boolean;
  readonly columns?: number;
  write(s: string): boolean;
}

/**
 * A one-line progress bar on a terminal: `[██████░░░░░░] 12/27 44 %  cat.jpg`,
 * redrawn in place with `\r` at most every `minIntervalMs` (and always at
 * the end), cleared by `done()`. On a stream that is not a terminal (a pipe,
 * a log file, `--json`) it writes nothing.
 */
export class ProgressBar {
  private last = -Infinity;
  private shown = false;

  constructor(
    private readonly stream: ProgressStream,
    private readonly label = '',
    private readonly minIntervalMs = 80,
    private readonly now: () => number = Date.now,
  ) {}

  /** True when the bar is drawn (the stream is a terminal). */
  get active(): boolean {
    return this.stream.isTTY === true;
  }

  /** Shows `done` of `total` items, `item` (e.g. a file name) after the count. */
  update(done: number, total: number, item = ''): void {
    if (!this.active) return;
    const t = this.now();
    if (done < total && t - this.last < this.minIntervalMs) return;
    this.last = t;
    const width = Math.max(40, this.stream.columns ?? 80);
    const frac = total > 0 ? Math.min(1, done / total) : 1;
    const head = `${this.label ? `${this.label} ` : ''}`;
    const count = ` ${done}/${total} ${String(Math.floor(frac * 100)).padStart(3)} %`;
    const barWidth = Math.max(10, Math.min(30, width - head.length - count.length - 20));
    const filled = Math.round(frac * barWidth);
    let line = `${head}[${'█'.repeat(filled)}${'░'.repeat(barWidth - filled)}]${count}`;
    const room = width - 1 - line.length - 2;
    if (item && room > 4) {
      const name = item.length > room ? `…${item.slice(item.length - room + 1)}` : item;
      line += `  ${name}`;
    }
    this.stream.write(`\r${line.padEnd(width - 1)}`);
    this.shown = true;
  }

  /** Clears the bar's line, so that what is printed next starts on a clean line. */
  done(): void {
    if (!this.active || !this.shown) return;
    this.stream.write(`\r${' '.repeat(Math.max(40, this.stream.columns ?? 80) - 1)}\r`);
    this.shown = false;
  }
}
