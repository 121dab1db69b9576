/**
 * `release activate` / `rollback` / `list` / `health` / `doctor` on a device
 * whose service manager is the systemctl stand-in: the daemon runs from
 * `current`, sends READY through libsystemd from its main pid
 * (`NotifyAccess=main`), and keeps its health file. A release that reaches
 * READY and then dies, or stays up but reports an error problem, fails the
 * health gate and is rolled back by itself — also when failed activations
 * come one after another faster than the unit's start limit allows.
 */

import { mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { model } from '../helpers/assets.js';
import { makeDevice } from '../helpers/device.js';
import { BASE_VERSION, packedRelease, repack, sha256Of } from '../helpers/release-archive.js';

// Real releases are unpacked and self-tested (and daemons started): more than the default per-file time on a busy machine.
t.setTimeout(480_000);
const out = await mkdtemp(path.join(tmpdir(), 'ec-activate-'));
t.teardown(() => rm(out, { recursive: true, force: true }));
const archive = await packedRelease();
const good = await repack(archive, out, { version: '1.1.0' });
// Reaches READY (its first frame classified), then exits 1 a second later: "started" is not "works".
const dies = await repack(archive, out, {
  version: '1.2.0',
  mutate: async (dir) => {
    const file = path.join(dir, 'dist', 'service', 'daemon.js');
    const js = await readFile(file, 'utf8');
    const ready = "'first frame classified: ready');";
    const patched = js.replace(ready, `${ready} setTimeout(() => { console.error('simulated fault after READY'); process.exit(1); }, 1000);`);
    if (patched === js) throw new Error(`cannot patch ${file}: its "first frame classified: ready" log line moved`);
    await writeFile(file, patched);
  },
});
// Reaches READY and stays up, but reports an `error` problem right after: up is not working.
const faulty = await repack(archive, out, {
  version: '1.3.0',
  mutate: async (dir) => {
    const file = path.join(dir, 'dist', 'service', 'daemon.js');
    const js = await readFile(file, 'utf8');
    const ready = "'first frame classified: ready');";
    const fault = "setTimeout(() => this.problems.raise('simulated_fault', 'simulated fault after READY: the predictions are wrong', 'none', 'error'), 300);";
    const patched = js.replace(ready, `${ready} ${fault}`);
    if (patched === js) throw new Error(`cannot patch ${file}: its "first frame classified: ready" log line moved`);
    await writeFile(file, patched);
  },
});

const dev = await makeDevice(t);
const journal = () => readFile(path.join(dev.root, 'run', 'systemd-standin', 'edge-classifier.service', 'journal.log'), 'utf8');
for (const a of [archive, good, dies, faulty]) {
  const r = await dev.cli(['release', 'install', a]);
  if (r.code !== 0) throw new Error(`install ${a} failed: ${r.stderr}`);
}
const defaultModelSha = await sha256Of(model('tf2_mobilenet_v2_1.0_224_ptq.tflite'));

t.test('activate: current switched, service READY through libsystemd from its main pid, health from the daemon', async (t) => {
  const r = await dev.cli(['release', 'activate', BASE_VERSION, '--json']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.json, { ok: true, action: 'activate', target: BASE_VERSION, previous: null, rolled_back: false, healthy_at_end: true });
  t.equal(await readlink(dev.currentLink), `releases/${BASE_VERSION}`);
  const pid = await dev.mainPid();
  t.ok(pid > 0);
  const show = (await dev.systemctl(['show', '-p', 'ActiveState,NotifyRejected,NotifyAccess', 'edge-classifier'])).stdout;
  t.match(show, /ActiveState=active/);
  t.match(show, /NotifyAccess=main/);
  t.match(show, /NotifyRejected=0/, 'every notification came from the main pid');
  // Run as root, the systemd-notify fallback would pass NotifyAccess=main too: the daemon's own log says which it used.
  const log = await journal();
  t.match(log, /first frame classified: ready/, "the daemon's log is in the journal");
  t.notMatch(log, /sd_notify through libsystemd is not available/, 'READY went through libsystemd, not the systemd-notify fallback');

  const h = await dev.cli(['health', '--json']);
  t.equal(h.code, 0, h.stdout);
  t.match(h.json, {
    healthy: true,
    pid,
    release: BASE_VERSION,
    version: BASE_VERSION,
    ready: true,
    model: { sha256: defaultModelSha, name: 'tf2_mobilenet_v2_1.0_224_ptq' },
  });
  t.ok(h.json.classified >= 1, `${h.json.classified} frames classified`);
  const text = await dev.cli(['health']);
  t.match(text.stdout, new RegExp(`^healthy \\(pid ${pid}\\)`));
});

t.test('activate another release: a new process; the old one is previous', async (t) => {
  const before = await dev.mainPid();
  const r = await dev.cli(['release', 'activate', '1.1.0', '--json']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.json, { ok: true, target: '1.1.0', previous: BASE_VERSION, health: { release: '1.1.0', healthy: true } });
  t.not(await dev.mainPid(), before, 'restarted');
});

t.test('a release that dies after READY fails the gate and is rolled back; the history says why', async (t) => {
  const r = await dev.cli(['release', 'activate', '1.2.0', '--json']);
  t.equal(r.code, 1, 'exit 1: failed, but healthy on the previous release');
  t.match(r.json, {
    ok: false,
    target: '1.2.0',
    previous: '1.1.0',
    rolled_back: true,
    rollback_healthy: true,
    healthy_at_end: true,
    health: { release: '1.1.0', healthy: true },
  });
  t.match(r.json.reason, /did not stay up|not healthy|did not start|not running after its restart/, 'the reason, whichever moment the fault hit');
  t.equal(await readlink(dev.currentLink), 'releases/1.1.0', 'current points at the previous release again');
  t.ok(Array.isArray(r.json.doctor), 'the report carries the doctor lines that did not pass');
  t.ok(r.json.doctor.every((c: { status: string }) => c.status === 'warn' || c.status === 'fail'));
  t.match(await journal(), /simulated fault after READY/, 'the bad release did run');
  const h = await dev.cli(['health', '--json']);
  t.match(h.json, { healthy: true, release: '1.1.0', pid: await dev.mainPid() });

  const list = await dev.cli(['release', 'list', '--json']);
  t.match(list.json, { current: '1.1.0', previous: BASE_VERSION });
  const bad = list.json.releases.find((x: { version: string }) => x.version === '1.2.0');
  t.match(bad, { status: 'failed', last_result: /^failed .*: / });
  const rolled = list.json.history.filter((e: { event: string }) => e.event === 'rolled-back');
  t.match(rolled, [{ version: '1.2.0', to: '1.1.0', reason: r.json.reason, detail: { rollback_healthy: true } }]);
  const text = await dev.cli(['release', 'list']);
  t.match(text.stdout, /^current: 1\.1\.0 {3}previous: 1\.0\.0/);
});

t.test('a release that stays up but reports an error problem fails the gate and is rolled back, naming the problem', async (t) => {
  const r = await dev.cli(['release', 'activate', '1.3.0', '--health-timeout', '8', '--json']);
  t.equal(r.code, 1, 'exit 1: failed, but healthy on the previous release');
  t.match(r.json, {
    ok: false,
    check: 'health',
    target: '1.3.0',
    previous: '1.1.0',
    rolled_back: true,
    rollback_healthy: true,
    healthy_at_end: true,
    health: { release: '1.1.0', healthy: true },
  });
  t.match(r.json.reason, /not healthy within 8 s: .*problem simulated_fault: simulated fault after READY/);
  t.equal(await readlink(dev.currentLink), 'releases/1.1.0');
  const list = await dev.cli(['release', 'list', '--json']);
  const rolled = list.json.history.filter((e: { event: string }) => e.event === 'rolled-back').pop();
  t.match(rolled, { version: '1.3.0', to: '1.1.0', reason: /problem simulated_fault/ });
});

t.test('failed activations one after another: each rollback still starts, whatever the start limit', async (t) => {
  // A start limit smaller than the starts this file has made: a restart that
  // does not reset it (systemctl reset-failed) is refused with start-limit-hit,
  // and the device would end stopped instead of back on 1.1.0.
  await dev.dropIn('start-limit', ['[Unit]', 'StartLimitIntervalSec=600', 'StartLimitBurst=3'].join('\n'));
  t.teardown(() => rm(path.join(`${dev.unitFile}.d`, 'start-limit.conf'), { force: true }));
  for (let attempt = 1; attempt <= 3; attempt++) {
    const r = await dev.cli(['release', 'activate', '1.2.0', '--json']);
    t.equal(r.code, 1, `attempt ${attempt}: ${r.json?.reason}`);
    t.match(r.json, { ok: false, target: '1.2.0', rolled_back: true, rollback_healthy: true, healthy_at_end: true }, `attempt ${attempt}`);
  }
  const show = (await dev.systemctl(['show', '-p', 'ActiveState,Result', 'edge-classifier'])).stdout;
  t.match(show, /ActiveState=active/);
  t.match(show, /Result=success/);
  t.notMatch(await journal(), /start-limit-hit/, 'no start was refused');
  const h = await dev.cli(['health', '--json']);
  t.match(h.json, { healthy: true, release: '1.1.0', pid: await dev.mainPid() });
});

t.test('release rollback goes to the previous release with the same gate', async (t) => {
  const r = await dev.cli(['release', 'rollback', '--json']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.json, { ok: true, action: 'rollback', target: BASE_VERSION, previous: '1.1.0' });
  t.equal(await readlink(dev.currentLink), `releases/${BASE_VERSION}`);
});

t.test('doctor on the device: every line ok or warn, with what it found', async (t) => {
  const r = await dev.cli(['doctor', '--json']);
  const byName = Object.fromEntries(r.json.checks.map((c: { name: string }) => [c.name, c]));
  for (const name of ['node', 'arch', 'release', 'config', 'tflite', 'sharp', 'gpio', 'camera', 'disk', 'broker', 'unit'])
    t.equal(byName[name]?.status, 'ok', `${name}: ${byName[name]?.detail}`);
  t.match(byName.node.detail, new RegExp(`${process.version} \\(ABI ${process.versions.modules}, the unit's ExecStart\\) matches release ${BASE_VERSION}`));
  t.match(byName.unit.detail, /ExecStart runs .*, the Node\.js checked above/);
  t.ok(['ok', 'warn'].includes(byName.clock.status), `clock: ${byName.clock.detail}`);
  t.equal(r.code, r.json.checks.some((c: { status: string }) => c.status === 'fail') ? 1 : 0);
  const text = await dev.cli(['doctor']);
  t.match(text.stdout, /^ok {3}node /m);
});

t.test('health: a stopped daemon is not healthy, and says so', async (t) => {
  await dev.systemctl(['stop', 'edge-classifier']);
  const h = await dev.cli(['health', '--json']);
  t.equal(h.code, 1);
  t.match(h.json, { healthy: false, reasons: [/no health file/] });
  const again = await dev.cli(['release', 'activate', BASE_VERSION, '--json']);
  t.equal(again.code, 0, 'activating the current release starts it again, with the gate');
  t.match(again.json, { ok: true, target: BASE_VERSION, previous: BASE_VERSION, health: { healthy: true } });
});
