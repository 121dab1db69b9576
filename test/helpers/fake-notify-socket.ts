/**
 * Starts `fake-notify-socket.py` (a Unix datagram socket standing in for
 * systemd's notification socket, see that file) in a fresh temp directory and
 * collects the datagrams it receives:
 *
 *   const sock = await startFakeNotifySocket(t);
 *   const env = { ...process.env, NOTIFY_SOCKET: sock.path };
 *   // ... run the code under test with env ...
 *   await sock.waitFor((m) => m.fields.READY === '1');
 *   sock.messages  // every datagram so far, BARRIER=1 ones included
 *   sock.notifications()  // the same without systemd-notify's BARRIER=1 datagrams
 *
 * Needs `python3` (path from `PYTHON3`, default `python3` on PATH). With `t`
 * the stand-in is stopped and its directory removed in `t.teardown`.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Recording } from './recording.js';

const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fake-notify-socket.py');

/** One datagram received by the stand-in. */
interface NotifyMessage {
  /** The datagram as text, e.g. `READY=1\nSTATUS=up`. */
  readonly message: string;
  /** Its `KEY=value` lines. */
  readonly fields: Record<string, string>;
  /** Sender pid from SCM_CREDENTIALS (null if the kernel sent none). */
  readonly pid: number | null;
  /** File descriptors passed with it (1 for a BARRIER=1). */
  readonly fds: number;
}

export interface FakeNotifySocket {
  /** Socket path, the value for `NOTIFY_SOCKET`. */
  readonly path: string;
  /** Every datagram so far, in arrival order. */
  readonly messages: NotifyMessage[];
  /** Datagrams other than systemd-notify's `BARRIER=1`. */
  notifications(): NotifyMessage[];
  /** Resolves with the first datagram (past or future) matching; rejects after timeoutMs with what arrived. */
  waitFor(match: (m: NotifyMessage) => boolean, timeoutMs?: number, what?: string): Promise<NotifyMessage>;
  /** Stops the stand-in and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

interface TeardownTarget {
  teardown(fn: () => unknown): void;
}

export async function startFakeNotifySocket(t?: TeardownTarget): Promise<FakeNotifySocket> {
  const dir = mkdtempSync(path.join(tmpdir(), 'notify-'));
  const socketPath = path.join(dir, 'notify.sock');
  const child = spawn(process.env.PYTHON3 ?? 'python3', [SCRIPT, socketPath], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const recording = new Recording<NotifyMessage>((items) => JSON.stringify(items.map((m) => m.message)));
  const messages = recording.items;
  let listening!: () => void;
  const isListening = new Promise<void>((r) => (listening = r));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const obj = JSON.parse(line) as { event: string } & NotifyMessage;
    if (obj.event === 'listening') listening();
    else if (obj.event === 'message') {
      recording.push({ message: obj.message, fields: obj.fields, pid: obj.pid, fds: obj.fds });
    }
  });
  const exited = once(child, 'exit');
  try {
    await Promise.race([
      isListening,
      exited.then(([code]) => {
        throw new Error(`fake-notify-socket.py exited with ${String(code)}: ${stderr}`);
      }),
      once(child, 'error').then(([err]) => {
        throw new Error(`cannot run python3 for fake-notify-socket.py: ${(err as Error).message}`);
      }),
      new Promise((_, reject) => setTimeout(() => reject(new Error(`fake-notify-socket.py did not start in 5 s: ${stderr}`)), 5000).unref()),
    ]);
  } catch (err) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  let stopped: Promise<void> | undefined;
  const handle: FakeNotifySocket = {
    path: socketPath,
    messages,
    notifications: () => messages.filter((m) => m.fields.BARRIER !== '1'),
    waitFor: (match, timeoutMs = 5000, what = 'a matching notification') => recording.waitFor(match, timeoutMs, what),
    stop() {
      stopped ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.stdin!.end();
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
          await exited;
          clearTimeout(timer);
        }
        rmSync(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
  t?.teardown(() => handle.stop());
  return handle;
}
