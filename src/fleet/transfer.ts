/**
 * Copying files to a device: resumable and atomic.
 *
 * With rsync on both ends: `--partial-dir` keeps what arrived of an
 * interrupted file in a hidden folder beside the target, and the next run
 * sends only the rest (rsync's delta against that partial file); the file
 * itself appears under its name only once complete (rsync writes a
 * temporary file and renames it). Without rsync on the device: scp to a
 * temporary name, then `mv` — atomic, not resumable.
 *
 * Either way nothing on the device acts on a file until the device-side
 * command checks its sha256, so a transfer cut at any point leaves the
 * device as it was.
 */
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import path from 'node:path';
import { CancelledError, classifySshFailure, SshError, type SshSession, shellQuote } from './ssh.js';

/** Hidden folder (inside the staging folder) where rsync keeps interrupted files. */
export const PARTIAL_DIR = '.partial';
/** rsync gives up when no data moves for this long, in s (a dead link). */
const IO_TIMEOUT_S = 60;

interface TransferProgress {
  /** Bytes of the current run so far (excludes what a resumed file already had). */
  readonly bytes: number;
  /** 0–100 over all files, as rsync computes it. */
  readonly percent: number;
  /** Current rate as rsync prints it, e.g. "2.05MB/s". */
  readonly rate: string;
}

export interface TransferOptions {
  /** Limit the bandwidth, in KiB/s (rsync --bwlimit); undefined for none. */
  readonly bwlimitKiBps?: number;
  /** Use scp even if rsync is there (the device lacks rsync). */
  readonly scp?: boolean;
  readonly onProgress?: (p: TransferProgress) => void;
  readonly signal?: AbortSignal;
  /** Programs; default `rsync` and `scp` from PATH. */
  readonly rsyncBin?: string;
  readonly scpBin?: string;
}

export interface TransferResult {
  /** 'rsync' or 'scp'. */
  readonly method: 'rsync' | 'scp';
  /** Bytes sent as file data in this run (rsync's "Literal data"). */
  readonly literalBytes: number;
  /** Bytes the device already had — a resumed partial file or an unchanged upload (rsync's "Matched data"). */
  readonly matchedBytes: number;
  /** Total size of the files, in bytes. */
  readonly totalBytes: number;
}

/** A transfer that failed for a reason other than ssh itself. */
export class TransferError extends Error {
  constructor(
    message: string,
    readonly hint: string,
  ) {
    super(message);
    this.name = 'TransferError';
  }
}

const bytesOf = (text: string, label: string): number => {
  const m = new RegExp(`^${label}: ([\\d,]+) bytes`, 'm').exec(text);
  return m ? Number(m[1]!.replace(/,/g, '')) : 0;
};

const RSYNC_EXITS: Record<number, string> = {
  1: 'syntax or usage error',
  3: 'errors selecting input/output files',
  5: 'error starting the client-server protocol',
  10: 'error in socket I/O',
  11: 'error in file I/O (disk full?)',
  12: 'error in the rsync protocol data stream (the connection dropped?)',
  20: 'interrupted',
  23: 'partial transfer due to error',
  30: 'timeout in data send/receive',
  35: 'timeout waiting for the daemon connection',
};

/**
 * Copies `files` (local paths) into `remoteDir` (absolute, created if
 * missing) on the session's host. Resolves with byte counts; rejects with
 * SshError (ssh failed), TransferError (rsync/scp failed, e.g. the disk is
 * full) or CancelledError (aborted; with rsync the partial file is kept for
 * the next run).
 */
export async function upload(session: SshSession, files: readonly string[], remoteDir: string, options: TransferOptions = {}): Promise<TransferResult> {
  const mk = await session.run(['mkdir', '-p', '-m', '0700', remoteDir], { signal: options.signal });
  if (mk.code !== 0)
    throw new TransferError(
      `cannot create ${remoteDir} on ${session.host.name}: ${mk.stderr.trim()}`,
      'set staging_dir in the inventory to a folder the SSH user can write',
    );
  const totalBytes = files.reduce((sum, f) => sum + statSync(f).size, 0);
  return options.scp === true ? scpUpload(session, files, remoteDir, totalBytes, options) : rsyncUpload(session, files, remoteDir, totalBytes, options);
}

function runTool(
  bin: string,
  args: string[],
  signal: AbortSignal | undefined,
  onStdout: (text: string) => void,
): Promise<{ code: number | null; stdout: string; stderr: string; cancelled: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let cancelled = false;
    child.stdout!.on('data', (d: Buffer) => {
      const text = d.toString();
      stdout += text;
      onStdout(text);
    });
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const abort = (): void => {
      cancelled = true;
      child.kill('SIGTERM');
    };
    if (signal?.aborted) abort();
    signal?.addEventListener('abort', abort, { once: true });
    child.once('error', (e) => reject(new TransferError(`cannot run ${bin}: ${e.message}`, `install ${path.basename(bin)}`)));
    child.once('close', (code) => {
      signal?.removeEventListener('abort', abort);
      // A Ctrl-C reaches rsync directly too (exit 20) and may beat fleet's own kill.
      resolve({ code, stdout, stderr, cancelled: cancelled || signal?.aborted === true });
    });
  });
}

async function rsyncUpload(
  session: SshSession,
  files: readonly string[],
  remoteDir: string,
  totalBytes: number,
  options: TransferOptions,
): Promise<TransferResult> {
  const bin = options.rsyncBin ?? 'rsync';
  const args = [
    '-e',
    session.rsyncShell(),
    `--partial-dir=${PARTIAL_DIR}`,
    '--times',
    '--chmod=F0600',
    `--timeout=${IO_TIMEOUT_S}`,
    '--info=progress2',
    '--no-inc-recursive',
    '--stats',
    ...(options.bwlimitKiBps !== undefined ? [`--bwlimit=${options.bwlimitKiBps}`] : []),
    '--',
    ...files,
    session.remotePath(`${remoteDir.replace(/\/+$/, '')}/`),
  ];
  let pending = '';
  const r = await runTool(bin, args, options.signal, (text) => {
    pending += text;
    const parts = pending.split(/[\r\n]/);
    pending = parts.pop() ?? '';
    for (const line of parts) {
      const m = /^\s*([\d,]+)\s+(\d+)%\s+(\S+\/s)/.exec(line);
      if (m) options.onProgress?.({ bytes: Number(m[1]!.replace(/,/g, '')), percent: Number(m[2]), rate: m[3]! });
    }
  });
  if (r.cancelled) throw new CancelledError(`transfer to ${session.host.name}`);
  if (r.code === 0) return { method: 'rsync', literalBytes: bytesOf(r.stdout, 'Literal data'), matchedBytes: bytesOf(r.stdout, 'Matched data'), totalBytes };
  const ssh = classifySshFailure(session.host, r.stderr);
  if (ssh) throw ssh;
  const first =
    r.stderr.split('\n').find((l) => /^rsync(: | error:)/.test(l) && !/connection unexpectedly closed/.test(l)) ??
    r.stderr.trim().split('\n').slice(-1)[0] ??
    '';
  if (/command not found|rsync: not found|No such file or directory.*rsync/.test(r.stderr)) {
    throw new TransferError(`rsync is not installed on ${session.host.name}`, 'install it there (sudo apt install rsync) or push with --scp');
  }
  const nospace = /No space left on device/.test(r.stderr);
  throw new TransferError(
    `transfer to ${session.host.name} failed: ${nospace ? `no space left on the device in ${remoteDir}` : `${first.trim()} (rsync exit ${String(r.code)}${r.code !== null && RSYNC_EXITS[r.code] ? `: ${RSYNC_EXITS[r.code]}` : ''})`}`,
    nospace
      ? 'free space on the device (edge-classifier release prune --keep 2) and push again; the transfer resumes'
      : 'push again: the transfer resumes where it stopped',
  );
}

/** scp's options from ssh's: `-P` for the port (scp's `-p` preserves times). */
function scpArgs(session: SshSession): string[] {
  const a = session.baseArgs();
  const i = a.indexOf('-p');
  if (i >= 0) a[i] = '-P';
  return [...a, '-o', 'ControlMaster=no'];
}

async function scpUpload(
  session: SshSession,
  files: readonly string[],
  remoteDir: string,
  totalBytes: number,
  options: TransferOptions,
): Promise<TransferResult> {
  const bin = options.scpBin ?? 'scp';
  for (const file of files) {
    const name = path.basename(file);
    const tmp = `${remoteDir}/.${name}.part`;
    const r = await runTool(
      bin,
      [...scpArgs(session), '-q', ...(options.bwlimitKiBps !== undefined ? ['-l', String(options.bwlimitKiBps * 8)] : []), '--', file, session.remotePath(tmp)],
      options.signal,
      () => undefined,
    );
    if (r.cancelled) throw new CancelledError(`transfer to ${session.host.name}`);
    if (r.code !== 0) {
      const ssh = classifySshFailure(session.host, r.stderr);
      if (ssh) throw ssh;
      const nospace = /No space left on device|Failure/.test(r.stderr);
      throw new TransferError(
        `transfer to ${session.host.name} failed: ${r.stderr.trim().split('\n').slice(-1)[0] ?? `scp exit ${String(r.code)}`}`,
        nospace ? 'free space on the device and push again' : 'push again',
      );
    }
    const mv = await session.run(['mv', '-f', tmp, `${remoteDir}/${name}`], { signal: options.signal });
    if (mv.code !== 0) throw new TransferError(`cannot rename ${tmp} on ${session.host.name}: ${mv.stderr.trim()}`, 'check the staging folder on the device');
  }
  return { method: 'scp', literalBytes: totalBytes, matchedBytes: 0, totalBytes };
}

/** Removes staged files (and rsync's partial copies of them) from the device; never throws. */
export async function removeStaged(session: SshSession, remoteDir: string, names: readonly string[]): Promise<void> {
  const paths = names.flatMap((n) => [`${remoteDir}/${n}`, `${remoteDir}/${PARTIAL_DIR}/${n}`, `${remoteDir}/.${n}.part`]);
  await session.runShell(`rm -f -- ${paths.map(shellQuote).join(' ')}`).catch((e: unknown) => {
    if (!(e instanceof SshError)) throw e;
  });
}
