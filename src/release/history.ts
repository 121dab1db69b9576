import { appendFile, mkdir, open, readFile } from 'node:fs/promises';
import path from 'node:path';

/** Kinds of event in the device's history. */
type HistoryEventKind =
  | 'installed'
  | 'install-failed'
  | 'activating'
  | 'activated'
  | 'activation-failed'
  | 'rolled-back'
  | 'pruned'
  | 'model-installed'
  | 'model-activated'
  | 'model-failed'
  | 'model-rolled-back';

/** One line of `history.jsonl`. */
export interface HistoryEvent {
  /** ISO 8601 UTC. */
  readonly at: string;
  readonly event: HistoryEventKind;
  /** The release (or for model events the model's sha256) the event is about. */
  readonly version?: string;
  /** What was current before. */
  readonly previous?: string | null;
  /** Where a rollback went. */
  readonly to?: string | null;
  /** The check that failed (`checksum`, `arch`, `self-test`, `health`, ...). */
  readonly check?: string;
  /** Why it failed, in words. */
  readonly reason?: string;
  /** Extra facts (archive sha256, model file, health summary). */
  readonly detail?: Record<string, unknown>;
}

/**
 * The device's release and model history: an append-only JSON-lines file in
 * the state folder. Each event is one `write(2)` of one line opened with
 * O_APPEND and fsynced, so a kill or power cut leaves at most a cut last
 * line, which `read()` skips.
 */
export class History {
  constructor(readonly file: string) {}

  /** Appends `event` (with `at` set to now). */
  async append(event: Omit<HistoryEvent, 'at'>): Promise<HistoryEvent> {
    const full: HistoryEvent = { at: new Date().toISOString(), ...event };
    await mkdir(path.dirname(this.file), { recursive: true });
    const handle = await open(this.file, 'a', 0o644);
    try {
      await appendFile(handle, `${JSON.stringify(full)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    return full;
  }

  /** Every readable event, oldest first; an empty list when there is no history yet. */
  async read(): Promise<HistoryEvent[]> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const events: HistoryEvent[] = [];
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      try {
        const e = JSON.parse(line) as HistoryEvent;
        if (typeof e.event === 'string' && typeof e.at === 'string') events.push(e);
      } catch {
        // a line cut by a crash
      }
    }
    return events;
  }
}

/**
 * The releases that were current, oldest first, each once at its latest
 * position: from `activated` events and the `to` of `rolled-back` events.
 * The previous release is the last entry that is not the current one.
 */
export function currentSequence(events: readonly HistoryEvent[]): string[] {
  const seq: string[] = [];
  const put = (v: string | null | undefined) => {
    if (!v) return;
    const i = seq.indexOf(v);
    if (i >= 0) seq.splice(i, 1);
    seq.push(v);
  };
  for (const e of events) {
    if (e.event === 'activated') put(e.version);
    else if (e.event === 'rolled-back') put(e.to);
  }
  return seq;
}
