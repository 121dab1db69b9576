/**
 * What the operator sees: per-host progress while a command runs (one
 * line per host redrawn in place on a terminal, plain lines otherwise) and
 * the summary table at the end.
 */
import type { HostOutcome, ProgressSink } from './push.js';

/** Lays out rows as columns separated by two spaces; the last column is not padded. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** Seconds with one decimal, e.g. "12.3s". */
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)}s`;

/**
 * The push/rollback summary: one row per host (RESULT says where it ended),
 * then the hints of hosts that need something done.
 */
export function outcomeTable(rows: readonly { host: string; outcome?: HostOutcome; skipped?: string }[]): string {
  const table = formatTable(
    ['HOST', 'RESULT', 'BEFORE', 'NOW', 'TIME', 'DETAIL'],
    rows.map(({ host, outcome, skipped }) =>
      outcome !== undefined
        ? [host, outcome.status, outcome.before ?? '?', outcome.now ?? '?', seconds(outcome.ms), outcome.detail]
        : [host, 'skipped', '-', '-', '-', `not contacted: ${skipped ?? 'rollout stopped'}`],
    ),
  );
  const hints = rows.filter((r) => r.outcome?.hint !== undefined && !r.outcome.ok).map((r) => `  ${r.host}: ${r.outcome!.hint}`);
  return hints.length > 0 ? `${table}\n\nWhat to do:\n${hints.join('\n')}` : table;
}

interface Line {
  host: string;
  text: string;
  final: boolean;
}

/**
 * Per-host progress on stderr. On a terminal, one line per host redrawn in
 * place (at most 10 times a second); otherwise one line per step, with
 * transfer percentages only every 25 %.
 */
export class ProgressDisplay implements ProgressSink {
  private readonly lines: Line[] = [];
  private drawn = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly lastBucket = new Map<string, number>();

  constructor(
    private readonly out: NodeJS.WritableStream & { isTTY?: boolean; columns?: number },
    private readonly tty: boolean = out.isTTY === true,
  ) {}

  /** A message above the per-host lines (e.g. "canary: kitchen"). */
  note(text: string): void {
    if (this.tty) {
      this.clear();
      this.out.write(`${text}\n`);
      this.draw();
    } else {
      this.out.write(`${text}\n`);
    }
  }

  update(host: string, text: string): void {
    this.set(host, text, false);
  }

  /** The host's last line: where it ended. */
  finish(outcome: HostOutcome): void {
    this.set(outcome.host, `${outcome.status}: ${outcome.detail}`, true);
  }

  /** Draws the final state and stops redrawing. */
  end(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.tty) this.draw();
  }

  private set(host: string, text: string, final: boolean): void {
    let line = this.lines.find((l) => l.host === host);
    if (!line) {
      line = { host, text, final };
      this.lines.push(line);
    }
    line.text = text;
    line.final = final;
    if (this.tty) {
      this.timer ??= setTimeout(
        () => {
          this.timer = undefined;
          this.draw();
        },
        final ? 0 : 100,
      );
      return;
    }
    const pct = /^sending (\d+)%/.exec(text);
    if (pct) {
      const bucket = Math.floor(Number(pct[1]) / 25);
      if (this.lastBucket.get(host) === bucket) return;
      this.lastBucket.set(host, bucket);
    }
    this.out.write(`${host}: ${text}\n`);
  }

  private clear(): void {
    if (this.drawn > 0) this.out.write(`\x1b[${this.drawn}A\x1b[J`);
    this.drawn = 0;
  }

  private draw(): void {
    const width = Math.max(40, (this.out.columns || 100) - 1);
    const name = Math.max(...this.lines.map((l) => l.host.length), 4);
    this.clear();
    for (const l of this.lines) {
      const mark = l.final ? '•' : '›';
      this.out.write(`${`${mark} ${l.host.padEnd(name)}  ${l.text}`.slice(0, width)}\n`);
    }
    this.drawn = this.lines.length;
  }
}
