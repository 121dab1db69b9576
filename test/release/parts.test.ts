/** The small parts of the release commands, in process: health verdicts, the health file, time spans, the history, unit parsing, doctor on a fake Raspberry Pi, the tree fetched for another arch. */

import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { silentLogger } from '../../src/core/log.js';
import { doctor } from '../../src/release/doctor.js';
import { judgeHealth } from '../../src/release/health.js';
import { currentSequence, type HistoryEvent } from '../../src/release/history.js';
import { Layout } from '../../src/release/layout.js';
import { finishFetchedTree } from '../../src/release/pack.js';
import { parseTimespan } from '../../src/release/service-manager.js';
import { execStartProgram, parseUnit } from '../../src/release/unit-file.js';
import { HealthFile, type HealthRecord, type PipelineHealth } from '../../src/service/health-file.js';
import { buildFakeDelegates } from '../inference/fixtures/fake-delegate.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'ec-parts-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

function pipeline(over: Partial<PipelineHealth> = {}): PipelineHealth {
  return {
    ready: true,
    model_path: null,
    labels_path: null,
    frames_in: 10,
    classified: 9,
    dropped: 1,
    bad_frames: 0,
    failed: 0,
    fps: 4,
    last_classified_at: new Date().toISOString(),
    stalled: false,
    mqtt_connected: true,
    problems: [],
    ...over,
  };
}

function record(over: Partial<HealthRecord> = {}, p: Partial<PipelineHealth> = {}): HealthRecord {
  const { model_path: _m, labels_path: _l, ...rest } = pipeline(p);
  const now = new Date().toISOString();
  return {
    format: 1,
    pid: process.pid,
    version: '1.0.0',
    program_dir: '/opt/edge-classifier/releases/1.0.0',
    started_at: now,
    updated_at: now,
    interval_ms: 2000,
    reloads: 0,
    loaded_at: now,
    last_reload: null,
    ready_at: now,
    model: null,
    labels: null,
    pipeline: rest,
    state: 'running',
    ...over,
  };
}

t.test('health verdict: healthy; stale; process gone; not ready; stalled; an error problem; a warning is not', async (t) => {
  const ok = judgeHealth(record(), 'h.json');
  t.match(ok, { healthy: true, reasons: [], release: '1.0.0', pid: process.pid });
  const now = Date.now();
  t.match(judgeHealth(record({ updated_at: new Date(now - 60_000).toISOString() }), 'h.json', now).reasons, [/last written 60 s ago \(stale after 10 s\)/]);
  const gone = spawnSync(process.execPath, ['-e', '0']).pid!;
  t.match(judgeHealth(record({ pid: gone }), 'h.json').reasons, [new RegExp(`process ${gone} is gone`)]);
  t.match(judgeHealth(record({}, { ready: false }), 'h.json').reasons, [/not ready/]);
  t.match(judgeHealth(record({}, { stalled: true }), 'h.json').reasons, [/stalled/]);
  t.match(judgeHealth(record({ state: 'reloading', pipeline: null }), 'h.json').reasons, [/reloading/]);
  const problem = { id: 'broker_unreachable', message: 'broker 10.0.0.1:1883 unreachable', hint: 'check the network', since: new Date().toISOString() };
  t.match(judgeHealth(record({}, { problems: [{ ...problem, severity: 'error' }] }), 'h.json').reasons, [
    /problem broker_unreachable: broker 10\.0\.0\.1:1883 unreachable/,
  ]);
  const warned = judgeHealth(record({}, { problems: [{ ...problem, severity: 'warning' }] }), 'h.json');
  t.equal(warned.healthy, true, 'a warning is shown, not counted');
  t.equal(warned.problems.length, 1);
  t.match(judgeHealth(null, 'h.json'), { healthy: false, reasons: [/no health file at h\.json/] });
});

t.test('health file: 0644 whatever the umask, model sha256, reloads, removed on stop', async (t) => {
  const file = path.join(tmp, 'run', 'health.json');
  const modelFile = path.join(tmp, 'm.tflite');
  writeFileSync(modelFile, 'model bytes');
  const h = new HealthFile({ file, version: '9.9.9', programDir: '/x/releases/9.9.9', log: silentLogger(), intervalMs: 50 });
  const old = process.umask(0o077);
  try {
    h.start();
    h.attach(() => pipeline({ model_path: modelFile }), false);
  } finally {
    process.umask(old);
  }
  t.equal(statSync(file).mode & 0o777, 0o644);
  let r = JSON.parse(readFileSync(file, 'utf8')) as HealthRecord;
  // sha256 of "model bytes", computed with sha256sum.
  const expected = spawnSync('sha256sum', [modelFile]).stdout.toString().split(' ')[0];
  t.match(r, { pid: process.pid, version: '9.9.9', reloads: 0, state: 'running', model: { path: modelFile, sha256: expected, name: 'm' } });
  h.detach('reloading');
  t.match(JSON.parse(readFileSync(file, 'utf8')), { state: 'reloading', pipeline: null });
  h.reloadFailed('model.path: no such file');
  h.attach(() => pipeline({ model_path: modelFile }), false);
  r = JSON.parse(readFileSync(file, 'utf8')) as HealthRecord;
  t.match(r, { reloads: 0, last_reload: { ok: false, error: 'model.path: no such file' } });
  h.attach(() => pipeline({ model_path: modelFile }), true);
  t.match(JSON.parse(readFileSync(file, 'utf8')), { reloads: 1, last_reload: { ok: true } });
  h.stop();
  t.notOk(existsSync(file), 'a stopped daemon leaves no health file');
});

t.test('time spans as systemctl show prints them', async (t) => {
  t.equal(parseTimespan('2min'), 120_000);
  t.equal(parseTimespan('1min 30s'), 90_000);
  t.equal(parseTimespan('500ms'), 500);
  t.equal(parseTimespan('1h 2min 3s'), 3_723_000);
  t.equal(parseTimespan('infinity'), Infinity);
  t.throws(() => parseTimespan('soon'), /cannot read the time span "soon"/);
});

t.test('history: the sequence of current releases, the previous one', async (t) => {
  const e = (event: HistoryEvent['event'], version: string, to?: string): HistoryEvent => ({ at: '2026-01-01T00:00:00Z', event, version, to });
  t.same(currentSequence([e('activated', '1'), e('activated', '2'), e('rolled-back', '3', '2')]), ['1', '2'], 'a failed activation never counts');
  t.same(currentSequence([e('activated', '1'), e('activated', '2'), e('activated', '1')]), ['2', '1'], 'a rollback makes the other one previous');
});

t.test('unit parsing: drop-ins, an empty assignment resets, ExecStart prefixes', async (t) => {
  const u = parseUnit('[Service]\nExecStart=/usr/bin/node a.js\nEnvironment=A=1\n', '[Service]\nExecStart=\nExecStart=-/opt/node/bin/node \\\n  b.js --x\n');
  t.equal(execStartProgram(u), '/opt/node/bin/node');
  t.same(u.get('Service')?.get('ExecStart'), ['-/opt/node/bin/node    b.js --x']);
  t.same(u.get('Service')?.get('Environment'), ['A=1']);
});

t.test('doctor on a fake Raspberry Pi tree: GPIO chip, permissions, Edge TPU, camera heaps', async (t) => {
  const sys = path.join(tmp, 'pi');
  const gpio = path.join(sys, 'sys', 'class', 'gpio');
  mkdirSync(path.join(gpio, 'gpiochip512'), { recursive: true });
  mkdirSync(path.join(sys, 'proc', 'device-tree'), { recursive: true });
  writeFileSync(path.join(sys, 'proc', 'device-tree', 'model'), 'Raspberry Pi 4 Model B Rev 1.4\0');
  writeFileSync(path.join(gpio, 'gpiochip512', 'label'), 'pinctrl-bcm2711\n');
  writeFileSync(path.join(gpio, 'export'), '');
  chmodSync(path.join(gpio, 'export'), 0o200);
  const root = path.join(tmp, 'device');
  const layout = new Layout(root);
  mkdirSync(layout.configDir, { recursive: true });
  writeFileSync(layout.configFile, `source: rpicam\ngpio:\n  backend: auto\n  rules:\n    - pin: 17\n      labels: [cat]\ninference:\n  delegate: edgetpu\n`);
  const r = await doctor({ layout, sysRoot: sys, env: { PATH: '/nonexistent' } });
  const by = Object.fromEntries(r.checks.map((c) => [c.name, c]));
  t.match(by['gpio-chip'], { status: 'ok', detail: /pinctrl-bcm2711 on Raspberry Pi 4 Model B/ });
  t.match(by['gpio-permissions'], { status: 'fail', detail: /export is not writable by the gpio group/ });
  t.match(by.edgetpu, { status: 'warn', detail: /no Coral accelerator is attached/, fix: /inference\.delegate: cpu/ });
  // No Edge TPU runtime here (and none on PATH or LD_LIBRARY_PATH): without model.cpu_fallback the daemon would refuse to start.
  t.match(by['edgetpu-library'], { status: 'fail', detail: /libedgetpu\.so\.1 not found/, fix: /install the Edge TPU runtime/ });
  t.match(by.camera, { status: 'fail', detail: /neither rpicam-vid nor libcamera-vid/, fix: 'sudo apt install rpicam-apps' });
  t.match(by.dma_heap, { status: 'fail', detail: /dma_heap/ });
  t.match(by.release, { status: 'fail' });
  t.match(by.unit, { status: 'fail', detail: /is not installed/ });
  t.equal(r.ok, false);

  // A library that exports the external delegate entry points and loads, as libedgetpu does.
  const fake = buildFakeDelegates();
  t.teardown(() => rmSync(fake.dir, { recursive: true, force: true }));
  const library = await doctor({ layout, sysRoot: sys, env: { PATH: '/nonexistent', EDGE_CLASSIFIER_EDGETPU_LIB: fake.good } });
  t.match(
    library.checks.find((c) => c.name === 'edgetpu-library'),
    { status: 'ok', detail: /fake.*loads$/ },
  );
  const notDelegate = await doctor({ layout, sysRoot: sys, env: { PATH: '/nonexistent', EDGE_CLASSIFIER_EDGETPU_LIB: '/bin/sh' } });
  t.match(
    notDelegate.checks.find((c) => c.name === 'edgetpu-library'),
    { status: 'fail', detail: /\/bin\/sh is not a usable Edge TPU delegate/ },
  );

  rmSync(gpio, { recursive: true });
  const gone = await doctor({ layout, sysRoot: sys, env: { PATH: '/nonexistent' } });
  t.match(
    gone.checks.find((c) => c.name === 'gpio-chip'),
    { status: 'fail', detail: /Raspberry Pi 4 .* without .*sys\/class\/gpio/ },
    'a Pi without sysfs GPIO is a failure, not a quiet virtual fallback',
  );
});

t.test('pack for another arch: the fetched tree loses what is never loaded, and must hold the TFLite library for that arch', async (t) => {
  // What `npm ci --omit=dev --os=linux --cpu=arm64` leaves in a staged release: every production package.
  const staged = path.join(tmp, 'fetched');
  const pkg = (name: string, files: string[] = []) => {
    mkdirSync(path.join(staged, 'node_modules', name), { recursive: true });
    writeFileSync(path.join(staged, 'node_modules', name, 'package.json'), JSON.stringify({ name, version: '1.0.0' }));
    for (const f of files) {
      mkdirSync(path.dirname(path.join(staged, 'node_modules', name, f)), { recursive: true });
      writeFileSync(path.join(staged, 'node_modules', name, f), 'x');
    }
  };
  for (const name of ['@tensorflow/tfjs-core', '@tensorflow/tfjs-tflite', '@types/node', 'sharp']) pkg(name);
  pkg('tfjs-tflite-node', ['cc_deps/linux_amd64/libtensorflowlite_c.so']);
  await t.rejects(finishFetchedTree(staged, 'arm64'), {
    check: 'arch',
    message: /linux-arm64 lack a library the program loads: tfjs-tflite-node has no cc_deps\/linux_arm64\/libtensorflowlite_c\.so/,
  });
  pkg('tfjs-tflite-node', ['cc_deps/linux_arm64/libtensorflowlite_c.so']);
  await finishFetchedTree(staged, 'arm64');
  for (const name of ['@tensorflow/tfjs-core', '@tensorflow/tfjs-tflite', '@types/node'])
    t.notOk(existsSync(path.join(staged, 'node_modules', name)), `${name} is not shipped`);
  t.ok(existsSync(path.join(staged, 'node_modules', 'sharp')), 'the packages the program loads stay');
  rmSync(path.join(staged, 'node_modules', 'tfjs-tflite-node'), { recursive: true });
  await t.rejects(finishFetchedTree(staged, 'arm64'), { check: 'arch', message: /tfjs-tflite-node was not fetched/ });
});
