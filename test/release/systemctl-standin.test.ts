/**
 * The systemctl stand-in behaves as systemd does where the daemon and the
 * release commands can tell: Type=notify start that waits for READY,
 * NotifyAccess=main, start timeout, exit status 78 not restarted, a crash
 * restarted, reload by ExecReload with $MAINPID, stop with SIGTERM, the
 * runtime folder made and removed, `show` and `is-active` output.
 */

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import t from 'tap';
import { repoRoot } from '../helpers/assets.js';
import { STANDIN_BIN } from '../helpers/device.js';

const run = promisify(execFile);
const FIXTURE = path.join(repoRoot, 'test', 'release', 'fixtures', 'notify-service.mjs');

async function machine(t: { teardown(fn: () => unknown): void }, mode: string, extra: string[] = []) {
  const root = await mkdtemp(path.join(tmpdir(), 'ec-standin-'));
  const unitDir = path.join(root, 'etc', 'systemd', 'system');
  await mkdir(unitDir, { recursive: true });
  await writeFile(
    path.join(unitDir, 'demo.service'),
    [
      '[Unit]',
      'Description=demo',
      '[Service]',
      'Type=notify',
      'NotifyAccess=main',
      `ExecStart=${process.execPath} ${FIXTURE} ${mode}`,
      'ExecReload=/bin/kill -HUP $MAINPID',
      'RuntimeDirectory=demo',
      'TimeoutStartSec=3',
      'TimeoutStopSec=3',
      'Restart=on-failure',
      'RestartSec=0.2',
      'RestartPreventExitStatus=78',
      ...extra,
    ].join('\n'),
  );
  const env = { ...process.env, EDGE_CLASSIFIER_ROOT: root };
  const systemctl = async (...args: string[]) => {
    try {
      const r = await run(path.join(STANDIN_BIN, 'systemctl'), args, { env });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };
  const show = async (...props: string[]) =>
    Object.fromEntries(
      (await systemctl('show', '-p', props.join(','), 'demo')).stdout
        .trim()
        .split('\n')
        .map((l) => l.split(/=(.*)/s).slice(0, 2)),
    );
  const journal = () => readFile(path.join(root, 'run', 'systemd-standin', 'demo.service', 'journal.log'), 'utf8').catch(() => '');
  t.teardown(async () => {
    await systemctl('stop', 'demo');
    await rm(root, { recursive: true, force: true });
  });
  return { root, systemctl, show, journal };
}

t.test('Type=notify: start returns once READY came from the main pid; reload, stop', async (t) => {
  const m = await machine(t, 'ready');
  const started = await m.systemctl('start', 'demo');
  t.equal(started.code, 0, started.stderr);
  const s = await m.show('ActiveState', 'SubState', 'MainPID', 'StatusText', 'NotifyRejected', 'TimeoutStartUSec');
  t.match(s, { ActiveState: 'active', SubState: 'running', StatusText: 'serving', NotifyRejected: '0', TimeoutStartUSec: '3s' });
  t.ok(Number(s.MainPID) > 0);
  t.match(await m.journal(), /sd_notify 1/, 'sd_notify() returned 1: sent');
  t.ok(existsSync(path.join(m.root, 'run', 'demo')), 'RuntimeDirectory= made');
  t.equal((await m.systemctl('is-active', 'demo')).stdout.trim(), 'active');
  t.equal((await m.systemctl('reload', 'demo')).code, 0);
  for (let i = 0; i < 40 && !/hup/.test(await m.journal()); i++) await sleep(50);
  t.match(await m.journal(), /^hup$/m, 'ExecReload sent SIGHUP to $MAINPID');
  t.equal((await m.systemctl('stop', 'demo')).code, 0);
  t.match(await m.journal(), /^term$/m);
  t.match(await m.show('ActiveState', 'MainPID'), { ActiveState: 'inactive', MainPID: '0' });
  t.notOk(existsSync(path.join(m.root, 'run', 'demo')), 'RuntimeDirectory= removed on stop');
  const ia = await m.systemctl('is-active', 'demo');
  t.equal(ia.code, 3);
});

t.test('NotifyAccess=main: READY from a helper process is rejected, the start times out', async (t) => {
  const m = await machine(t, 'ready-helper', ['Restart=no']);
  const r = await m.systemctl('start', 'demo');
  t.equal(r.code, 1);
  t.match(r.stderr, /Job for demo\.service failed because a timeout was exceeded/);
  t.match(await m.show('ActiveState', 'Result', 'NotifyRejected'), { ActiveState: 'failed', Result: 'timeout', NotifyRejected: '1' });
  t.match(await m.journal(), /reception only permitted for main PID/);
});

t.test('exit 78 before READY: failed, not restarted; exit 1: restarted', async (t) => {
  const m = await machine(t, 'exit:78');
  const r = await m.systemctl('start', 'demo');
  t.equal(r.code, 1);
  t.match(r.stderr, /status=78/);
  await sleep(600);
  t.match(await m.show('ActiveState', 'Result', 'ExecMainStatus', 'NRestarts'), {
    ActiveState: 'failed',
    Result: 'exit-code',
    ExecMainStatus: '78',
    NRestarts: '0',
  });

  const c = await machine(t, 'exit:1', ['StartLimitBurst=3', 'StartLimitIntervalSec=60']);
  t.equal((await c.systemctl('start', 'demo')).code, 1);
  let s = await c.show('ActiveState', 'Result', 'NRestarts');
  for (let i = 0; i < 100 && s.Result !== 'start-limit-hit'; i++) {
    await sleep(50);
    s = await c.show('ActiveState', 'Result', 'NRestarts');
  }
  t.match(s, { ActiveState: 'failed', Result: 'start-limit-hit' }, 'restarted until StartLimitBurst=3');
  t.ok(Number(s.NRestarts) >= 2, `restarted ${s.NRestarts} times`);
  t.equal((await c.journal()).match(/Starting demo\.service/g)?.length, 3, 'three starts, then no more');
});
