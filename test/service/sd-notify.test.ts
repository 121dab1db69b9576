import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { silentLogger } from '../../src/core/log.js';
import { SdNotifier } from '../../src/service/sd-notify.js';
import { startFakeNotifySocket } from '../helpers/fake-notify-socket.js';
import { capturingLogger } from '../helpers/recording.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'sd-notify-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** An executable shell script in `dir`. */
function script(dir: string, name: string, body: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return file;
}

t.test('READY, STATUS, WATCHDOG and STOPPING arrive in order through systemd-notify', async (t) => {
  const sock = await startFakeNotifySocket(t);
  const notifier = new SdNotifier({ log: silentLogger(), env: { ...process.env, NOTIFY_SOCKET: sock.path } });
  t.teardown(() => notifier.stop());
  t.equal(notifier.enabled, true);
  await notifier.start();
  const started = Date.now();
  notifier.ready('model loaded, frames flowing');
  notifier.status('9.8 fps, 3 dropped\nline two');
  notifier.watchdog();
  notifier.stopping();
  await notifier.flush();
  t.ok(Date.now() - started < 3000, 'the barrier completes at once when the socket closes the fd as systemd does');
  const got = sock.notifications().map((m) => m.fields);
  t.same(got, [
    { MAINPID: String(process.pid), READY: '1', STATUS: 'model loaded, frames flowing' },
    { MAINPID: String(process.pid), STATUS: '9.8 fps, 3 dropped line two' },
    { MAINPID: String(process.pid), WATCHDOG: '1' },
    { MAINPID: String(process.pid), STOPPING: '1' },
  ]);
  // systemd-notify claims our pid in the credentials (allowed to root; others send their own pid).
  t.ok(sock.notifications().every((m) => m.pid !== null));
  // Blocking mode: every message is followed by a BARRIER=1 carrying one fd.
  const barriers = sock.messages.filter((m) => m.fields.BARRIER === '1');
  t.equal(barriers.length, 4);
  t.ok(barriers.every((m) => m.fds === 1));
  t.same(notifier.stats(), { sent: 4, failed: 0, coalesced: 0 });
});

t.test('watchdog pings at half WATCHDOG_USEC, only while healthy, and stop() clears it', async (t) => {
  const sock = await startFakeNotifySocket(t);
  const env = { ...process.env, NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: '300000', WATCHDOG_PID: String(process.pid) };
  const notifier = new SdNotifier({ log: silentLogger(), env });
  t.teardown(() => notifier.stop());
  t.equal(notifier.watchdogIntervalMs(), 150);
  let healthy = false;
  t.equal(
    notifier.startWatchdog(() => healthy),
    150,
  );
  await sleep(500);
  t.same(sock.notifications(), [], 'no WATCHDOG=1 while unhealthy');
  healthy = true;
  await sock.waitFor((m) => m.fields.WATCHDOG === '1', 3000, 'WATCHDOG=1 once healthy');
  await sleep(400);
  const pings = sock.notifications().filter((m) => m.fields.WATCHDOG === '1').length;
  t.ok(pings >= 2 && pings <= 6, `${pings} pings in about 0.5 s at a 150 ms interval`);
  await notifier.stop();
  const after = sock.notifications().length;
  await sleep(400);
  t.equal(sock.notifications().length, after, 'no ping after stop()');
  notifier.ready();
  await notifier.flush();
  t.equal(sock.notifications().length, after, 'no message after stop()');
});

t.test('watchdog interval: WATCHDOG_USEC, WATCHDOG_PID and NOTIFY_SOCKET', async (t) => {
  const log = silentLogger();
  const interval = (env: NodeJS.ProcessEnv): number | undefined => new SdNotifier({ log, env }).watchdogIntervalMs();
  t.equal(interval({ NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: '30000000' }), 15000, 'WatchdogSec=30 → ping every 15 s');
  t.equal(interval({ NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: '30000000', WATCHDOG_PID: String(process.pid) }), 15000);
  t.equal(interval({ NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: '30000000', WATCHDOG_PID: '1' }), undefined, 'meant for another process');
  t.equal(interval({ NOTIFY_SOCKET: '/run/x' }), undefined, 'no WatchdogSec=');
  t.equal(interval({ NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: 'abc' }), undefined);
  t.equal(interval({ WATCHDOG_USEC: '30000000' }), undefined, 'not under systemd');
  const notifier = new SdNotifier({ log, env: {} });
  t.equal(
    notifier.startWatchdog(() => true),
    undefined,
  );
  await notifier.stop();
});

t.test('nothing is spawned when NOTIFY_SOCKET is unset', async (t) => {
  const dir = tempDir(t);
  const marker = path.join(dir, 'spawned');
  const command = script(dir, 'notify-marker', `echo "$@" >> '${marker}'`);
  // The same command does run when NOTIFY_SOCKET is set: the marker proves spawning.
  const on = new SdNotifier({ log: silentLogger(), env: { NOTIFY_SOCKET: path.join(dir, 'sock') }, command });
  on.ready('x');
  await on.stop();
  t.equal(readFileSync(marker, 'utf8'), `--pid=${process.pid} READY=1 STATUS=x\n`);
  rmSync(marker);

  const off = new SdNotifier({ log: silentLogger(), env: { PATH: process.env.PATH }, command });
  t.equal(off.enabled, false);
  off.ready('x');
  off.status('y');
  off.watchdog();
  off.stopping();
  await off.flush();
  await off.stop();
  t.equal(existsSync(marker), false);
  t.same(off.stats(), { sent: 0, failed: 0, coalesced: 0 });
});

t.test('a failing send logs one warning and never throws', async (t) => {
  const dir = tempDir(t);
  const { log, lines } = capturingLogger('debug');
  const notifier = new SdNotifier({ log, env: { ...process.env, NOTIFY_SOCKET: path.join(dir, 'nobody-listens') } });
  notifier.ready();
  notifier.stopping();
  await notifier.stop();
  t.same(notifier.stats(), { sent: 0, failed: 2, coalesced: 0 });
  const warnings = lines.filter((l) => l.level === 40);
  t.equal(warnings.length, 1);
  t.match(warnings[0]!.msg, /^sd_notify through systemd-notify failed \(exit 1: Failed to notify init system: No such file or directory\)/);
  t.equal(lines.filter((l) => l.level === 20 && l.msg === 'sd_notify failed').length, 1, 'the second failure at debug');

  const missing = new SdNotifier({ log, env: { NOTIFY_SOCKET: '/run/x' }, command: path.join(dir, 'no-such-binary') });
  missing.ready();
  await missing.stop();
  t.same(missing.stats(), { sent: 0, failed: 1, coalesced: 0 });
  t.match(lines.at(-1)?.msg, /spawn .*no-such-binary ENOENT/);
});

t.test('a hanging systemd-notify is killed after sendTimeoutMs', async (t) => {
  const dir = tempDir(t);
  const command = script(dir, 'hang', 'exec sleep 30');
  const notifier = new SdNotifier({ log: silentLogger(), env: { NOTIFY_SOCKET: '/run/x' }, command, sendTimeoutMs: 300 });
  const started = Date.now();
  notifier.ready();
  notifier.stopping();
  await notifier.flush();
  const took = Date.now() - started;
  t.ok(took >= 550 && took < 2000, `two timed-out sends took ${took} ms`);
  t.same(notifier.stats(), { sent: 0, failed: 2, coalesced: 0 });
  await notifier.stop();
});

t.test('repeated WATCHDOG and STATUS coalesce while a send is in flight', async (t) => {
  const sock = await startFakeNotifySocket(t);
  const dir = tempDir(t);
  // A slow systemd-notify: each send takes 300 ms, so the rest waits in the queue.
  const command = script(dir, 'slow-notify', 'sleep 0.3\nexec systemd-notify "$@"');
  const notifier = new SdNotifier({ log: silentLogger(), env: { ...process.env, NOTIFY_SOCKET: sock.path }, command });
  notifier.ready();
  for (let i = 0; i < 5; i++) notifier.watchdog();
  notifier.status('a');
  notifier.status('b');
  notifier.stopping();
  notifier.status('c');
  await notifier.stop();
  const got = sock.notifications().map((m) =>
    Object.keys(m.fields)
      .filter((k) => k !== 'MAINPID')
      .map((k) => `${k}=${m.fields[k]}`)
      .join(' '),
  );
  t.same(got, ['READY=1', 'WATCHDOG=1', 'STOPPING=1', 'STATUS=c']);
  t.same(notifier.stats(), { sent: 4, failed: 0, coalesced: 6 });
});
