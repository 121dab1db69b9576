/**
 * Runs the built command line (`dist/cli.js`, made by `npm run build`, which
 * `npm test` runs first) as a child process, the way systemd or a user does.
 *
 *   const d = startCli(t, ['run', '--source', dir], { env });
 *   await d.waitForLog((l) => l.msg === 'running');
 *   d.child.kill('SIGTERM');
 *   const { code } = await d.exited;
 *
 * stdout lines that parse as JSON (the daemon's log lines when stdout is not
 * a terminal) are collected in `logs`; everything is kept in `stdout` and
 * `stderr` for failure messages. With `t`, a still-running child is killed in
 * teardown.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './assets.js';
import { Recording } from './recording.js';

export const CLI = path.join(repoRoot, 'dist', 'cli.js');
if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first (npm test does)`);

/** One JSON log line of the daemon (pino). */
interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface CliRun {
  readonly child: ChildProcess;
  readonly logs: LogLine[];
  stdout: string;
  stderr: string;
  /** Resolves when the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>;
  /** Resolves with the first log line (past or future) matching; rejects after timeoutMs with the output so far. */
  waitForLog(match: (l: LogLine) => boolean, timeoutMs?: number, what?: string): Promise<LogLine>;
}

interface TeardownTarget {
  teardown(fn: () => unknown): void;
}

export function startCli(t: TeardownTarget | undefined, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): CliRun {
  const started = Date.now();
  const child = spawn(process.execPath, [CLI, ...args], {
    env: options.env ?? process.env,
    cwd: options.cwd ?? repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const recording = new Recording<LogLine>(() => `\n--- stdout ---\n${run.stdout.slice(-4000)}\n--- stderr ---\n${run.stderr.slice(-2000)}`);
  const logs = recording.items;
  let pendingOut = '';
  const run: CliRun = {
    child,
    logs,
    stdout: '',
    stderr: '',
    exited: new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, ms: Date.now() - started }))),
    waitForLog: (match, timeoutMs = 20_000, what = 'a matching log line') => recording.waitFor(match, timeoutMs, what),
  };
  child.stdout!.on('data', (d: Buffer) => {
    const text = d.toString();
    run.stdout += text;
    pendingOut += text;
    const lines = pendingOut.split('\n');
    pendingOut = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      try {
        recording.push(JSON.parse(line) as LogLine);
      } catch {
        // not a log line
      }
    }
  });
  child.stderr!.on('data', (d: Buffer) => (run.stderr += d.toString()));
  t?.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return run;
}

/** Runs the CLI to completion and returns its exit code and output. */
export async function runCli(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
  const r = startCli(undefined, args, options);
  const { code } = await r.exited;
  return { code, stdout: r.stdout, stderr: r.stderr, logs: r.logs };
}
