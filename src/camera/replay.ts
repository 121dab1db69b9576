import type { Dirent } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../core/log.js';
import type { Frame } from '../core/types.js';
import { FpsMeter } from './fps-meter.js';
import type { EndListener, FrameListener, FrameSource, SourceStats } from './frame-source.js';

export interface ReplaySourceOptions {
  /** Directory whose files are replayed. */
  readonly dir: string;
  /** Frames per second, above 0 (the schema's `source.fps`). */
  readonly fps: number;
  /** Start again after the last file; false ends the source one frame period after it. */
  readonly loop: boolean;
  readonly log: Logger;
}

/** Natural order: `img2.jpg` before `img10.jpg`; ties broken by code units so the order never depends on the locale. */
const collator = new Intl.Collator('en', { numeric: true, sensitivity: 'variant' });
/** Compares two file names in natural order (digit runs compared as numbers). */
export function naturalCompare(a: string, b: string): number {
  return collator.compare(a, b) || (a < b ? -1 : a > b ? 1 : 0);
}

/**
 * Lists the files to replay in `dir`, in natural name order, as full paths:
 * every regular file (or symlink to one) whose name does not start with a
 * dot. Files are not filtered by extension or content: a file that does not
 * decode must reach the pipeline, to be dropped and counted there.
 * @throws Error naming the directory when it does not exist, is not a
 * directory, cannot be read, or holds no such file.
 */
export async function listReplayFiles(dir: string): Promise<string[]> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`replay directory '${dir}' does not exist`, { cause: err });
    if (code === 'ENOTDIR') throw new Error(`replay directory '${dir}' is not a directory`, { cause: err });
    throw new Error(`cannot list replay directory '${dir}': ${(err as Error).message}`, { cause: err });
  }
  const names: string[] = [];
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    if (entry.isFile()) {
      names.push(entry.name);
    } else if (entry.isSymbolicLink()) {
      const target = await stat(path.join(dir, entry.name)).catch(() => undefined);
      if (target?.isFile()) names.push(entry.name);
    }
  }
  if (names.length === 0) {
    throw new Error(`replay directory '${dir}' holds no files to replay (images such as .jpg, .png, .webp are expected)`);
  }
  names.sort(naturalCompare);
  return names.map((name) => path.join(dir, name));
}

/**
 * Replays the files of a directory as frames, in natural name order, at a
 * fixed rate, looping by default. Each frame carries the file's bytes as they
 * are (`data`) and its path (`file`).
 *
 * Timing: frame k is due at t0 + k × (1000 / fps) ms on the monotonic clock,
 * so timer lateness does not accumulate; the next file is read while waiting.
 * If the source falls more than one period behind (a slow disk), it skips the
 * missed slots instead of bursting to catch up.
 *
 * A file that cannot be read is logged (warn), recorded in `lastError` and
 * skipped (its slot passes without a frame); when every file of a pass fails,
 * the source ends.
 */
export class ReplaySource implements FrameSource {
  readonly name = 'source';
  readonly description: string;
  private readonly dir: string;
  private readonly fps: number;
  private readonly loop: boolean;
  private readonly log: Logger;
  private readonly meter = new FpsMeter();

  private running = false;
  private seq = 0;
  private lastErrorText: string | undefined;
  private loopDone: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private onFrame: FrameListener = () => {};
  private onEnd: EndListener | undefined;

  /** Stores the options; no I/O. */
  constructor(options: ReplaySourceOptions) {
    this.dir = options.dir;
    this.fps = options.fps;
    this.loop = options.loop;
    this.log = options.log;
    this.description = `replay ${options.dir} @${this.fps}${this.loop ? ' (loop)' : ''}`;
  }

  /**
   * Lists the directory and starts the frame timer; the first frame follows
   * at once. When looping, the directory is listed again at the start of
   * each pass (files added are picked up); if it is gone or empty by then,
   * the source ends (`onEnd`) with the reason.
   * @throws Error from `listReplayFiles` (missing, empty or unreadable directory),
   * or when the source is already running.
   */
  listen(onFrame: FrameListener, onEnd?: EndListener): void {
    this.onFrame = onFrame;
    this.onEnd = onEnd;
  }

  async start(): Promise<void> {
    if (this.running) throw new Error(`${this.description}: start() called while the source is already running`);
    const files = await listReplayFiles(this.dir);
    this.running = true;
    this.log.info({ dir: this.dir, files: files.length, fps: this.fps, loop: this.loop }, 'replay source started');
    this.loopDone = this.play(files);
  }

  /** Stops the timer and resolves once no frame will follow. Idempotent. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.wake?.();
    await this.loopDone;
  }

  /** Frames delivered, fps measured over the last 3 s, last read error; replay never restarts. */
  stats(): SourceStats {
    const stats = { frames: this.seq, fps: this.meter.fps(), restarts: 0 };
    return this.lastErrorText === undefined ? stats : { ...stats, lastError: this.lastErrorText };
  }

  private async play(initialFiles: string[]): Promise<void> {
    let files = initialFiles;
    const period = 1000 / this.fps;
    const t0 = performance.now();
    let slot = 0;
    let index = 0;
    let failuresInARow = 0;
    let next = this.read(files[0]);
    while (this.running) {
      const data = await next;
      await this.sleepUntil(t0 + slot * period);
      if (!this.running) return;
      const file = files[index];
      if (data instanceof Error) {
        failuresInARow += 1;
        this.lastErrorText = `cannot read replay file '${file}': ${data.message}`;
        this.log.warn({ file }, this.lastErrorText);
      } else {
        failuresInARow = 0;
        const now = performance.now();
        this.seq += 1;
        this.meter.mark(now);
        const frame: Frame = { seq: this.seq, data, arrivedAt: now, file };
        try {
          this.onFrame(frame);
        } catch (err) {
          this.log.error({ err, seq: frame.seq }, 'frame listener threw');
        }
      }

      slot += 1;
      const lateBy = performance.now() - (t0 + slot * period);
      if (lateBy > period) slot += Math.floor(lateBy / period); // skip missed slots, never burst

      if (failuresInARow >= files.length) {
        this.end(`no file in replay directory '${this.dir}' could be read`);
        return;
      }
      index += 1;
      if (index === files.length) {
        if (!this.loop) {
          await this.sleepUntil(t0 + slot * period);
          if (this.running) this.end(`replayed ${files.length} files from '${this.dir}'`);
          return;
        }
        index = 0;
        // Each pass lists the folder again: files added since are replayed, removed ones are not tried.
        try {
          const listed = await listReplayFiles(this.dir);
          if (listed.length !== files.length || listed.some((f, i) => f !== files[i])) {
            this.log.info({ dir: this.dir, files: listed.length }, 'replay folder changed');
          }
          files = listed;
          failuresInARow = 0;
        } catch (err) {
          if (this.running) this.end((err as Error).message);
          return;
        }
      }
      next = this.read(files[index]);
    }
  }

  private end(reason: string): void {
    this.running = false;
    this.log.info(`replay source ended: ${reason}`);
    this.onEnd?.(reason);
  }

  /** The file's bytes, or the Error that reading it gave (never rejects). */
  private read(file: string): Promise<Buffer | Error> {
    return readFile(file).catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))));
  }

  private sleepUntil(target: number): Promise<void> {
    const delay = target - performance.now();
    if (delay <= 0 || !this.running) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.wake = () => {
        this.wake = undefined;
        resolve();
      };
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.wake?.();
      }, delay);
    });
  }
}
