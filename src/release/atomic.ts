import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type FileHandle, open, readFile, rename, rm, symlink, unlink } from 'node:fs/promises';
import path from 'node:path';

/**
 * A release or model operation that was refused or failed. `check` names the
 * check (e.g. `checksum`, `arch`, `self-test`, `health`), `fix` says what to
 * do; the message says what was expected and what came.
 */
export class OperationError extends Error {
  constructor(
    readonly check: string,
    message: string,
    readonly fix?: string,
  ) {
    super(message);
    this.name = 'OperationError';
  }
}

/** sha256 of a file's bytes as 64 lower-case hex digits (streamed: constant memory). */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * fsync(2) of a folder, so that a rename or a new entry in it survives a
 * power cut (ext4 and f2fs on SD cards order data, not directory entries,
 * before a crash). Errors (a file system without directory fsync) are
 * ignored: the rename itself is still atomic.
 */
export async function fsyncDir(dir: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch {
    // best effort
  } finally {
    await handle?.close();
  }
}

/**
 * Writes `data` to `file` atomically: a temporary file beside it, fsync,
 * rename(2) over `file`, fsync of the folder. A reader sees the old or the
 * new content, never a part; a crash leaves at most a `.tmp-<pid>` file.
 * `mode` is applied with chmod, so the process umask does not narrow it.
 */
export async function writeFileAtomic(file: string, data: string | Buffer, mode = 0o644): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  const handle = await open(tmp, 'w', mode);
  try {
    await handle.writeFile(data);
    await handle.chmod(mode);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(path.dirname(file));
}

/**
 * Points symlink `link` at `target` atomically: a new symlink beside it,
 * then rename(2) over `link` — at every moment `link` names the old or the
 * new target (`ln -sfn` unlinks first, leaving a moment with no link).
 */
export async function switchSymlink(link: string, target: string): Promise<void> {
  const tmp = `${link}.new-${process.pid}`;
  await rm(tmp, { force: true });
  await symlink(target, tmp);
  try {
    await rename(tmp, link);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(path.dirname(link));
}

/** True when process `pid` exists (signal 0; EPERM means it exists but is another user's). */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A lock file held while one release or model operation changes the device
 * (two at once could switch `current` under each other). Made with O_EXCL
 * and holding our pid; a lock whose process is gone (killed mid-install) is
 * taken over.
 * @returns a function that releases it.
 * @throws OperationError (`lock`) naming the process that holds it.
 */
export async function acquireLock(file: string, what: string): Promise<() => Promise<void>> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(file, 'wx', 0o644);
      await handle.writeFile(`${process.pid} ${what}\n`);
      await handle.close();
      return async () => {
        await unlink(file).catch(() => undefined);
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const text = await readFile(file, 'utf8').catch(() => '');
      const pid = Number(text.split(' ')[0]);
      if (processAlive(pid)) {
        throw new OperationError(
          'lock',
          `another operation is changing this device: process ${pid} (${text.trim().split(' ').slice(1).join(' ') || 'unknown'}) holds ${file}`,
          'wait for it to finish',
        );
      }
      await unlink(file).catch(() => undefined);
    }
  }
  throw new OperationError('lock', `cannot take the lock ${file}`, 'remove it if no edge-classifier command is running');
}
