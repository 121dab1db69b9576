import { mkdir, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** Options of `SnapshotFolder`. */
export interface SnapshotFolderOptions {
  /** The folder; made when missing. */
  readonly dir: string;
  /** Most snapshot files kept (≥ 1). Default 100. */
  readonly maxFiles?: number;
  /** Most bytes kept in snapshot files (≥ 1). Default 50 MiB. */
  readonly maxBytes?: number;
}

/** Names of the files this class writes: `<UTC time>_<label>.jpg`, sortable by time. */
const NAME = /^\d{8}T\d{6}\.\d{3}Z(_[A-Za-z0-9_-]*)?\.jpg$/;

/** `2026-12-01T08:00:00.123Z` → `20261201T080000.123Z`. */
function stamp(time: Date): string {
  return time.toISOString().replace(/[-:]/g, '');
}

/** A label as a file name part: letters, digits, `_` and `-`, at most 40 characters. */
function slug(label: string | null): string {
  if (label === null) return '';
  const s = label
    .split(', ')[0]!
    .replace(/[^A-Za-z0-9-]+/g, '_')
    .replace(/^_+|_+$/g, '')
    .slice(0, 40);
  return s === '' ? '' : `_${s}`;
}

/**
 * Keeps the latest snapshots in a folder, bounded in count and bytes: after
 * each write the oldest snapshot files are deleted until at most `maxFiles`
 * files and `maxBytes` bytes remain (the newest one is always kept). Only
 * files named as this class names them (`20261201T080000.123Z_Egyptian_cat.jpg`)
 * are counted or deleted; anything else in the folder is left alone.
 * Files are written to a temporary name and renamed, so a reader never sees
 * half a JPEG.
 */
export class SnapshotFolder {
  readonly dir: string;
  private readonly maxFiles: number;
  private readonly maxBytes: number;

  /** Throws when a bound is not a whole number ≥ 1. No I/O. */
  constructor(options: SnapshotFolderOptions) {
    this.dir = options.dir;
    this.maxFiles = options.maxFiles ?? 100;
    this.maxBytes = options.maxBytes ?? 50 * 1024 * 1024;
    if (!Number.isInteger(this.maxFiles) || this.maxFiles < 1) throw new Error(`snapshot folder max files ${this.maxFiles}: expected a whole number ≥ 1`);
    if (!Number.isInteger(this.maxBytes) || this.maxBytes < 1) throw new Error(`snapshot folder max bytes ${this.maxBytes}: expected a whole number ≥ 1`);
  }

  /**
   * Writes one JPEG taken at `time` (the label goes into the file name) and
   * prunes the folder. Returns the file's path. Throws when the folder
   * cannot be made or written (the error names it).
   */
  async save(jpeg: Buffer, time: Date, label: string | null): Promise<string> {
    try {
      await mkdir(this.dir, { recursive: true });
      const name = `${stamp(time)}${slug(label)}.jpg`;
      const file = path.join(this.dir, name);
      const tmp = path.join(this.dir, `.${name}.${process.pid}.tmp`);
      await writeFile(tmp, jpeg);
      await rename(tmp, file);
      await this.prune(name);
      return file;
    } catch (err) {
      throw new Error(`snapshot folder ${this.dir}: ${(err as Error).message}`);
    }
  }

  /** Snapshot files in the folder, oldest first, with their sizes. */
  async list(): Promise<{ name: string; bytes: number }[]> {
    const names = (await readdir(this.dir).catch(() => [] as string[])).filter((n) => NAME.test(n)).sort();
    const out: { name: string; bytes: number }[] = [];
    for (const name of names) {
      const s = await stat(path.join(this.dir, name)).catch(() => undefined);
      if (s?.isFile()) out.push({ name, bytes: s.size });
    }
    return out;
  }

  private async prune(keep: string): Promise<void> {
    const files = await this.list();
    let total = files.reduce((a, f) => a + f.bytes, 0);
    let count = files.length;
    for (const f of files) {
      if (count <= this.maxFiles && total <= this.maxBytes) break;
      if (f.name === keep) continue;
      await unlink(path.join(this.dir, f.name)).catch(() => {});
      count--;
      total -= f.bytes;
    }
  }
}
