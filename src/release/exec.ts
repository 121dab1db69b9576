import { type ChildProcessByStdio, spawn } from 'node:child_process';
import type { Readable } from 'node:stream';

/** What a finished child process left. */
export interface ExecResult {
  /** Exit status, or null when killed by a signal. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** True when it was killed because it ran longer than `timeoutMs`. */
  readonly timedOut: boolean;
  /** Set when it could not be started at all (ENOENT: not installed). */
  readonly spawnError?: NodeJS.ErrnoException;
}

/** Options of {@link execCapture}. */
export interface ExecOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** Killed (SIGKILL) after this many ms. Default 120 000. */
  readonly timeoutMs?: number;
  /** Bytes of stdout/stderr kept (the end is kept). Default 1 MiB. */
  readonly maxOutput?: number;
}

/**
 * Runs `command` with an argument array (never a shell), stdin closed,
 * stdout and stderr collected. Never throws: a program that cannot be
 * started gives `spawnError`.
 */
export function execCapture(command: string, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  const max = options.maxOutput ?? 1 << 20;
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let child: ChildProcessByStdio<null, Readable, Readable>;
    try {
      child = spawn(command, args, { env: options.env ?? process.env, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      resolve({ code: null, signal: null, stdout, stderr, timedOut, spawnError: err as NodeJS.ErrnoException });
      return;
    }
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs ?? 120_000);
    const keep = (text: string, add: string) => (text.length + add.length > max ? (text + add).slice(-max) : text + add);
    child.stdout.on('data', (d: Buffer) => (stdout = keep(stdout, d.toString())));
    child.stderr.on('data', (d: Buffer) => (stderr = keep(stderr, d.toString())));
    child.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, stdout, stderr, timedOut, spawnError: err });
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

/** The last `n` non-empty lines of `text`, joined with ` | ` — for one-line error messages. */
export function lastLines(text: string, n = 3): string {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .slice(-n)
    .join(' | ');
}
