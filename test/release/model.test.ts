/**
 * `model install` / `model rollback` on a running device: the model is
 * stored by sha256, checked, switched in the configuration and reloaded by
 * SIGHUP without a restart (same pid), held to the health gate; a model that
 * does not work is refused before anything changes, and one that the daemon
 * does not end up running is rolled back. MQTT subscribers see the new
 * model's predictions.
 */

import { copyFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { parseDocument } from 'yaml';
import { labels as labelsAsset, model } from '../helpers/assets.js';
import { makeDevice } from '../helpers/device.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { recordMqtt } from '../helpers/mqtt-recorder.js';
import { BASE_VERSION, packedRelease, sha256Of } from '../helpers/release-archive.js';

// A real release is unpacked and self-tested, and a daemon started: more than the default per-file time on a busy machine.
t.setTimeout(360_000);

const broker = await startMosquitto(t);
const base = 'edge-classifier/model-test';
const dev = await makeDevice(t, { mqttUrl: broker.url, baseTopic: base });
const installed = await dev.cli(['release', 'install', await packedRelease()]);
if (installed.code !== 0) throw new Error(installed.stderr);
const activated = await dev.cli(['release', 'activate', BASE_VERSION]);
if (activated.code !== 0) throw new Error(activated.stderr + activated.stdout);
const rec = await recordMqtt(t, broker.url, `${base}/#`);

const FLOWERS = model('automl_labeler_model.tflite');
const flowersSha = await sha256Of(FLOWERS);
const defaultSha = await sha256Of(model('tf2_mobilenet_v2_1.0_224_ptq.tflite'));
const FLOWER_LABELS = ['daisy', 'dandelion', 'roses', 'sunflowers', 'tulips'];

interface Prediction {
  model: string;
  classes: { label: string }[];
}

t.test('model install: stored by sha256, checked, reloaded without a restart, predictions from the new model', async (t) => {
  const pid = await dev.mainPid();
  const r = await dev.cli(['model', 'install', FLOWERS, '--json']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.json, {
    ok: true,
    action: 'model-install',
    target: flowersSha,
    previous: defaultSha,
    healthy_at_end: true,
    health: { healthy: true, pid, model: { sha256: flowersSha } },
  });
  t.equal(await dev.mainPid(), pid, 'same process: reloaded, not restarted');
  const stored = path.join(dev.stateDir, 'models', flowersSha, 'automl_labeler_model.tflite');
  t.equal(await sha256Of(stored), flowersSha, 'stored under its sha256');
  const config = await readFile(dev.configFile, 'utf8');
  t.match(config, /^# test device configuration/, 'comments kept');
  t.match(config, new RegExp(`^  path: ${stored.replace(/[/.]/g, '\\$&')}$`, 'm'));
  t.match(r.stderr, /model check: 5 classes, 5 labels/);
  const m = await rec.waitFor(
    (m) => m.topic === `${base}/prediction` && (JSON.parse(m.payload) as Prediction).model === 'automl_labeler_model',
    30_000,
    'a prediction of the new model',
  );
  const p = JSON.parse(m.payload) as Prediction;
  t.ok(
    p.classes.every((c) => FLOWER_LABELS.includes(c.label)),
    `flower labels: ${p.classes.map((c) => c.label).join(', ')}`,
  );
  const h = await dev.cli(['health', '--json']);
  t.match(h.json, { healthy: true, reloads: 1, model: { sha256: flowersSha, name: 'automl_labeler_model' } });
});

t.test('a model that does not load, or whose labels do not fit its output, is refused before anything changes', async (t) => {
  const pid = await dev.mainPid();
  const configBefore = await readFile(dev.configFile, 'utf8');
  const broken = await dev.cli(['model', 'install', model('model_invoking_error.tflite'), '--json']);
  t.equal(broken.code, 1);
  t.match(broken.json, { ok: false, check: 'model' });
  const mismatch = await dev.cli(['model', 'install', FLOWERS, '--labels', labelsAsset('imagenet_labels.txt'), '--json']);
  t.equal(mismatch.code, 1);
  t.match(mismatch.json, { ok: false, check: 'labels', reason: /imagenet_labels\.txt has 1001 labels but the output .* \[1,5\] has 5 classes/ });
  const noLabels = await dev.cli(['model', 'install', model('mobilenet_v1_0.25_224_1_default_1.tflite'), '--json']);
  t.match(noLabels.json, { ok: false, check: 'labels', fix: /--labels FILE/ });
  t.equal(await readFile(dev.configFile, 'utf8'), configBefore, 'configuration untouched');
  t.equal(await dev.mainPid(), pid, 'daemon untouched');
  const h = await dev.cli(['health', '--json']);
  t.match(h.json, { healthy: true, reloads: 1, model: { sha256: flowersSha } });
  const events = (await readFile(path.join(dev.stateDir, 'history.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  t.same(
    events.filter((e) => e.event === 'model-failed').map((e) => e.check),
    ['model', 'labels', 'labels'],
  );
});

t.test('model rollback: the model that ran before, by reload', async (t) => {
  const pid = await dev.mainPid();
  const r = await dev.cli(['model', 'rollback', '--json']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.json, { ok: true, action: 'model-rollback', target: defaultSha, previous: flowersSha, health: { model: { sha256: defaultSha } } });
  t.equal(await dev.mainPid(), pid);
  t.notMatch(await readFile(dev.configFile, 'utf8'), /^\s+path:/m, 'model.path removed again: the release default');
});

t.test('a model the daemon does not end up running (Edge TPU model, no Edge TPU, CPU fallback) is rolled back', async (t) => {
  // An Edge TPU device whose accelerator is missing: the daemon runs the CPU fallback.
  const cpu = path.join(dev.stateDir, 'mobilenet_v1_0.25_128_quant.tflite');
  await copyFile(model('mobilenet_v1_0.25_128_quant.tflite'), cpu);
  await dev.dropIn('no-tpu', `[Service]\nEnvironment=EDGE_CLASSIFIER_EDGETPU_LIB=${path.join(dev.root, 'no-libedgetpu.so.1')}\n`);
  await dev.systemctl(['restart', 'edge-classifier']);
  const doc = parseDocument(await readFile(dev.configFile, 'utf8'));
  doc.setIn(['model', 'cpu_fallback'], cpu);
  doc.setIn(['inference', 'delegate'], 'edgetpu');
  await writeFile(dev.configFile, doc.toString());
  const reload = await dev.systemctl(['reload', 'edge-classifier']);
  t.equal(reload.code, 0, reload.stderr);
  const cpuSha = await sha256Of(cpu);
  let h = await dev.cli(['health', '--json']);
  // The health file is written as soon as something changes (the Edge TPU fallback problem is raised before the first
  // frame is classified): wait for the fallback model and the first frame.
  for (let i = 0; i < 120 && (h.json?.model?.sha256 !== cpuSha || h.json?.ready !== true); i++) {
    await new Promise((r) => setTimeout(r, 250));
    h = await dev.cli(['health', '--json']);
  }
  t.match(h.json, { healthy: true, model: { sha256: cpuSha } }, 'running the CPU fallback');
  const pid = await dev.mainPid();
  const configBefore = await readFile(dev.configFile, 'utf8');

  const tpuModel = model('mobilenet_v1_0.25_128_quant_edgetpu.tflite');
  const r = await dev.cli(['model', 'install', tpuModel, '--json', '--health-timeout', '30']);
  t.equal(r.code, 1, r.stderr);
  t.match(r.json, { ok: false, target: await sha256Of(tpuModel), rolled_back: true, rollback_healthy: true, healthy_at_end: true, check: 'reload' });
  t.match(r.json.reason, /runs model .*mobilenet_v1_0\.25_128_quant\.tflite .*not the one with sha256/);
  t.equal(await readFile(dev.configFile, 'utf8'), configBefore, 'configuration restored byte for byte');
  t.equal(await dev.mainPid(), pid, 'never restarted');
  const after = await dev.cli(['health', '--json']);
  t.match(after.json, { healthy: true, model: { sha256: cpuSha } });
  const events = (await readFile(path.join(dev.stateDir, 'history.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  t.match(events.at(-1), { event: 'model-rolled-back', check: 'reload', detail: { rollback_healthy: true } });
});
