/**
 * End to end: the daemon as a child process (dist/cli.js run), real frames
 * (a replay folder; an MJPEG stream from a real ffmpeg), the real model, a
 * real mosquitto started here, a subscriber checking the topics, and a
 * stand-in systemd notification socket.
 */

import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { image, model } from '../helpers/assets.js';
import { startCli } from '../helpers/cli.js';
import { fakeRpicamBin } from '../helpers/fake-camera.js';
import { startFakeNotifySocket } from '../helpers/fake-notify-socket.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { recordMqtt } from '../helpers/mqtt-recorder.js';

// Each daemon or classify run measures its engines the first time it sees a model (at most about 2 s,
// then cached): on a busy shared machine this file needs more than the default time.
t.setTimeout(300_000);

const MODEL = model('mobilenet_v2_1.0_224_quant.tflite');

interface PredictionMsg {
  time: string;
  seq: number;
  source: string;
  model: string;
  classes: { index: number; label: string; score: number }[];
  timings: Record<string, number>;
  dropped: number;
}

/** A replay folder: two good frames and three bad ones, in this name order. */
function replayFolder(): { dir: string; files: string[] } {
  const dir = mkdtempSync(path.join(tmpdir(), 'ec-replay-'));
  copyFileSync(image('cat_720p.jpg'), path.join(dir, '1-cat.jpg'));
  writeFileSync(path.join(dir, '2-notes.jpg'), 'this is not an image\n');
  copyFileSync(image('hot_dog.jpg'), path.join(dir, '3-hotdog.jpg'));
  const jpeg = readFileSync(image('cat_720p.jpg'));
  writeFileSync(path.join(dir, '4-truncated.jpg'), jpeg.subarray(0, Math.floor(jpeg.length / 2)));
  copyFileSync(image('rgb6X4.bmp'), path.join(dir, '5-bitmap.bmp'));
  return { dir, files: ['1-cat.jpg', '2-notes.jpg', '3-hotdog.jpg', '4-truncated.jpg', '5-bitmap.bmp'] };
}

t.test('replay folder → mosquitto: availability, predictions, state, gpio, bad frames, systemd, SIGTERM', async (t) => {
  const broker = await startMosquitto(t);
  const notify = await startFakeNotifySocket(t);
  const { dir, files } = replayFolder();
  const base = 'ec-test/replay';
  const rec = await recordMqtt(t, broker.url, `${base}/#`);
  const config = path.join(dir, '..', `${path.basename(dir)}.yaml`);
  writeFileSync(
    config,
    [
      'source:',
      `  spec: ${dir}`,
      '  fps: 5',
      'gpio:',
      '  backend: virtual',
      '  rules:',
      '    - pin: 17',
      '      labels: [Egyptian cat, tabby]',
      '      min_score: 0.5',
    ].join('\n'),
  );

  const d = startCli(t, ['run', '--config', config, '--model', MODEL, '--mqtt-url', broker.url, '--base-topic', base], {
    env: { ...process.env, NOTIFY_SOCKET: notify.path, WATCHDOG_USEC: '1000000' },
  });

  const online = await rec.waitFor((m) => m.topic === `${base}/availability` && m.payload === 'online', 30_000, 'online');
  t.ok(online, 'online published on connect');

  // Two full passes over the folder: every good frame classified at least twice.
  const predictions = () => rec.on(`${base}/prediction`).map((m) => JSON.parse(m.payload) as PredictionMsg);
  await rec.waitFor(() => predictions().filter((p) => p.seq > files.length).length >= 2, 30_000, 'a second pass of predictions');

  const fileOf = (seq: number) => files[(seq - 1) % files.length];
  for (const p of predictions()) {
    const file = fileOf(p.seq)!;
    t.ok(['1-cat.jpg', '3-hotdog.jpg'].includes(file), `seq ${p.seq} (${file}) is a good frame: bad frames publish nothing`);
    t.equal(p.classes[0]!.label, file === '1-cat.jpg' ? 'Egyptian cat' : 'hotdog, hot dog, red hot', `seq ${p.seq} ${file}: top-1`);
    t.ok(p.classes[0]!.score > 0.5 && p.classes[0]!.score <= 1, 'score is a dequantized probability');
    t.equal(p.classes[0]!.index, file === '1-cat.jpg' ? 286 : 935, 'ImageNet index with background at 0');
    t.ok(p.classes.length <= 3, 'top-k (3 by default)');
    t.equal(p.model, 'mobilenet_v2_1.0_224_quant');
    t.match(p.source, /replay/);
    t.ok(p.timings.inference_ms > 0 && p.timings.total_ms >= p.timings.inference_ms, 'timings in ms');
    t.ok(!Number.isNaN(Date.parse(p.time)), 'ISO time');
  }

  // GPIO 17 follows the cat: 1 on the cat frame, 0 on the hot dog.
  const gpio = rec.on(`${base}/gpio/17`).map((m) => m.payload);
  t.ok(gpio.includes('1') && gpio.includes('0'), `gpio/17 toggled: ${gpio.join(' ')}`);

  // Bad frames: logged once per kind, counted, the daemon goes on. On a busy machine the latest-frame slot may
  // skip a bad frame in the first passes (a newer frame replaced it), so wait until each kind has come once.
  for (const kind of ['corrupt', 'not-an-image', 'unsupported-format']) {
    await d.waitForLog((l) => /frame dropped/.test(l.msg) && l.kind === kind, 60_000, `a ${kind} frame`);
  }
  const dropped = d.logs.filter((l) => /frame dropped/.test(l.msg));
  t.same(dropped.map((l) => l.kind).sort(), ['corrupt', 'not-an-image', 'unsupported-format'], 'one warning per kind of bad frame');
  t.match(dropped.find((l) => l.kind === 'unsupported-format')!.msg, /5-bitmap\.bmp.*BMP/);

  // A subscriber that comes later gets the retained state and gpio level.
  const late = await recordMqtt(t, broker.url, `${base}/#`);
  const state = await late.waitFor((m) => m.topic === `${base}/state`, 5000, 'retained state');
  t.ok(state.retain, 'state is retained');
  const s = JSON.parse(state.payload) as { label: string; score: number; since: string };
  t.ok(['Egyptian cat', 'hotdog, hot dog, red hot'].includes(s.label), `state label ${s.label}`);
  t.ok(!Number.isNaN(Date.parse(s.since)), 'state since');
  t.ok((await late.waitFor((m) => m.topic === `${base}/gpio/17`, 5000, 'retained gpio')).retain, 'gpio level is retained');
  t.ok((await late.waitFor((m) => m.topic === `${base}/availability`, 5000)).retain, 'availability is retained');
  await late.end();

  // systemd: READY once a frame is classified, STATUS with the frame rate, WATCHDOG while classifying.
  const ready = await notify.waitFor((m) => m.fields.READY === '1', 10_000, 'READY=1');
  t.match(ready.fields.STATUS, /fps/);
  t.notMatch(ready.fields.STATUS, /0\.0 fps/, `READY's status claims no rate it could not measure: ${ready.fields.STATUS}`);
  await notify.waitFor((m) => m.fields.WATCHDOG === '1', 10_000, 'WATCHDOG=1');

  const killedAt = Date.now();
  d.child.kill('SIGTERM');
  const exit = await d.exited;
  t.equal(exit.code, 0, 'exit 0 on SIGTERM');
  t.ok(Date.now() - killedAt < 5000, `stopped within 5 s (${Date.now() - killedAt} ms)`);
  await notify.waitFor((m) => m.fields.STOPPING === '1', 5000, 'STOPPING=1');

  const after = await recordMqtt(t, broker.url, `${base}/#`);
  const avail = await after.waitFor((m) => m.topic === `${base}/availability`, 5000);
  t.equal(avail.payload, 'offline', 'offline retained after SIGTERM');
  t.ok(avail.retain);
  const pin = await after.waitFor((m) => m.topic === `${base}/gpio/17`, 5000);
  t.equal(pin.payload, '0', 'gpio back to its safe level on shutdown');
});

t.test('ffmpeg MJPEG stream from a video file → predictions; the stream ending stops the daemon cleanly', async (t) => {
  const broker = await startMosquitto(t);
  const dir = mkdtempSync(path.join(tmpdir(), 'ec-video-'));
  const video = path.join(dir, 'cat.mkv');
  // A 4 s, 5 fps MJPEG video made from the cat frame (20 frames: ffmpeg passes them on without duplicating any).
  execFileSync('ffmpeg', ['-loglevel', 'error', '-y', '-loop', '1', '-i', image('cat_720p.jpg'), '-t', '4', '-r', '5', '-c:v', 'mjpeg', '-q:v', '4', video]);
  const base = 'ec-test/ffmpeg';
  const rec = await recordMqtt(t, broker.url, `${base}/#`);
  const config = path.join(dir, 'config.yaml');
  writeFileSync(config, ['source:', `  spec: ${video}`, '  loop: false', '  width: 320', '  height: 240'].join('\n'));

  const d = startCli(t, ['run', '--config', config, '--model', MODEL, '--mqtt-url', broker.url, '--base-topic', base]);
  const exit = await d.exited;
  t.equal(exit.code, 0, `exit 0 when the video ends\n${d.stderr}`);
  const predictions = rec.on(`${base}/prediction`).map((m) => JSON.parse(m.payload) as PredictionMsg);
  t.ok(predictions.length >= 3, `${predictions.length} predictions from the stream`);
  for (const p of predictions) t.equal(p.classes[0]!.label, 'Egyptian cat', `seq ${p.seq}`);
  t.match(predictions[0]!.source, /ffmpeg|cat\.mkv/);
  const seqs = predictions.map((p) => p.seq);
  t.same(
    seqs,
    [...seqs].sort((a, b) => a - b),
    'sequence numbers increase',
  );
  await rec.waitFor((m) => m.topic === `${base}/availability` && m.payload === 'offline', 5000, 'offline');
});

t.test('no broker URL: an embedded broker serves the topics', async (t) => {
  const { freePort } = await import('../helpers/mosquitto.js');
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'ec-embedded-'));
  copyFileSync(image('hot_dog.jpg'), path.join(dir, 'hot_dog.jpg'));
  const config = `${dir}.yaml`;
  writeFileSync(config, ['source:', `  spec: ${dir}`, '  fps: 4', 'mqtt:', `  embedded_port: ${port}`, '  base_topic: ec-test/embedded'].join('\n'));
  const d = startCli(t, ['run', '--config', config, '--model', MODEL]);
  const started = await d.waitForLog((l) => /embedded MQTT broker/.test(l.msg), 30_000, 'embedded broker log');
  t.match(started.msg, new RegExp(`127\\.0\\.0\\.1:${port}`));
  const rec = await recordMqtt(t, `mqtt://127.0.0.1:${port}`, 'ec-test/embedded/#');
  const p = await rec.waitFor((m) => m.topic === 'ec-test/embedded/prediction', 20_000, 'prediction');
  t.equal((JSON.parse(p.payload) as PredictionMsg).classes[0]!.label, 'hotdog, hot dog, red hot');
  d.child.kill('SIGINT');
  t.equal((await d.exited).code, 0, 'exit 0 on SIGINT');
});

t.test('run --delegate edgetpu without libedgetpu: warns once and runs the CPU model', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ec-tpu-'));
  copyFileSync(image('cat_720p.jpg'), path.join(dir, 'cat.jpg'));
  const { freePort } = await import('../helpers/mosquitto.js');
  const config = `${dir}.yaml`;
  const port = await freePort();
  writeFileSync(config, ['source:', `  spec: ${dir}`, '  fps: 5', 'mqtt:', `  embedded_port: ${port}`].join('\n'));
  const d = startCli(
    t,
    [
      'run',
      '--config',
      config,
      '--model',
      model('mobilenet_v1_0.25_128_quant_edgetpu.tflite'),
      '--delegate',
      'edgetpu',
      '--cpu-model',
      model('mobilenet_v1_0.25_128_quant.tflite'),
      '--log-predictions',
    ],
    { env: { ...process.env, EDGE_CLASSIFIER_EDGETPU_LIB: path.join(dir, 'libedgetpu.so.1') } },
  );
  await d.waitForLog((l) => l.msg === 'first frame classified: ready', 30_000, 'ready');
  const warnings = d.logs.filter((l) => l.level === 40 && /Edge TPU runtime/.test(l.msg));
  t.equal(warnings.length, 1, 'one warning naming the Edge TPU runtime');
  t.match(warnings[0]!.msg, /apt install libedgetpu1-std/);
  const problems = await recordMqtt(t, `mqtt://127.0.0.1:${port}`, 'edge-classifier/+/problems');
  const p = await problems.waitFor(() => true, 5000, 'the retained problems');
  t.match(JSON.parse(p.payload).problems, [
    { id: 'edgetpu_fallback', severity: 'warning', message: 'the Edge TPU cannot be used: mobilenet_v1_0.25_128_quant.tflite runs on the CPU instead' },
  ]);
  await d.waitForLog((l) => /tiger cat|tabby|Egyptian cat/.test(l.msg) && typeof l.seq === 'number', 10_000, 'a CPU prediction');
  d.child.kill('SIGTERM');
  t.equal((await d.exited).code, 0);
});

t.test('a camera that stalls: GPIO outputs switch off, the rest keeps running', async (t) => {
  const broker = await startMosquitto(t);
  // The stand-in rpicam-vid writes five cat frames, then hangs like a frozen camera; the stall watchdog is
  // set far out so that this test sees the outputs switch off (test/e2e/camera.test.ts sees the restart).
  const bin = fakeRpicamBin();
  const config = path.join(mkdtempSync(path.join(tmpdir(), 'ec-stall-')), 'config.yaml');
  writeFileSync(config, ['source:', '  spec: rpicam', '  stall_timeout_s: 120'].join('\n'));
  const base = 'ec-test/stall';
  const rec = await recordMqtt(t, broker.url, `${base}/#`);
  const d = startCli(t, ['run', '--config', config, '--model', MODEL, '--mqtt-url', broker.url, '--base-topic', base, '--gpio', '17=Egyptian cat'], {
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, FAKE_RPICAM_IMAGE: image('cat_720p.jpg'), FAKE_RPICAM_STALL_AFTER: '5' },
  });
  await rec.waitFor((m) => m.topic === `${base}/gpio/17` && m.payload === '1', 30_000, 'gpio/17 on while the cat is seen');
  const seenBefore = rec.messages.length;
  await rec.waitFor((m) => rec.messages.indexOf(m) >= seenBefore && m.topic === `${base}/gpio/17` && m.payload === '0', 15_000, 'gpio/17 off after the stall');
  const warning = await d.waitForLog((l) => /no frame classified for/.test(l.msg), 5000, 'stall warning');
  t.equal(warning.level, 40, 'logged as a warning');
  const predictions = rec.on(`${base}/prediction`).map((m) => JSON.parse(m.payload) as PredictionMsg);
  const last = predictions.at(-1)!;
  t.equal(last.seq, 5, 'the newest frame is always classified (latest frame wins)');
  t.equal(predictions.length + last.dropped, 5, 'five frames: each classified or counted as dropped');
  t.match(predictions[0]!.source, /rpicam/);
  t.equal(rec.on(`${base}/availability`).at(-1)!.payload, 'online', 'still online');
  d.child.kill('SIGTERM');
  t.equal((await d.exited).code, 0);
});

t.test('SIGHUP reloads a good configuration and keeps the running one when the new one is bad', async (t) => {
  const broker = await startMosquitto(t);
  const dir = mkdtempSync(path.join(tmpdir(), 'ec-hup-'));
  copyFileSync(image('cat_720p.jpg'), path.join(dir, 'cat.jpg'));
  const config = `${dir}.yaml`;
  const write = (base: string, extra: string[] = []) =>
    writeFileSync(
      config,
      ['source:', `  spec: ${dir}`, '  fps: 5', 'model:', `  path: ${MODEL}`, 'mqtt:', `  url: ${broker.url}`, `  base_topic: ${base}`, ...extra].join('\n'),
    );
  write('ec-test/hup1');
  const rec = await recordMqtt(t, broker.url, 'ec-test/#');
  const d = startCli(t, ['run', '--config', config]);
  await rec.waitFor((m) => m.topic === 'ec-test/hup1/prediction', 30_000, 'predictions on hup1');

  // A configuration that does not validate: logged, the running one kept.
  writeFileSync(config, 'mqtt:\n  qos: 7\n');
  d.child.kill('SIGHUP');
  await d.waitForLog((l) => /SIGHUP: invalid configuration.*mqtt\.qos.*keeping the running configuration/s.test(l.msg), 10_000, 'bad reload refused');
  // One that validates but refers to a missing model: refused by the preflight, still running.
  write('ec-test/hup1', []);
  writeFileSync(config, readFileSync(config, 'utf8').replace(MODEL, path.join(dir, 'missing.tflite')));
  d.child.kill('SIGHUP');
  await d.waitForLog(
    (l) => /SIGHUP: .*model\.path: cannot read the model file .*missing\.tflite.*keeping the running configuration/s.test(l.msg),
    10_000,
    'missing model refused',
  );
  const before = rec.on('ec-test/hup1/prediction').length;
  await rec.waitFor(() => rec.on('ec-test/hup1/prediction').length > before, 10_000, 'still predicting on hup1');

  // A good one: the daemon moves to the new base topic.
  write('ec-test/hup2');
  d.child.kill('SIGHUP');
  await rec.waitFor((m) => m.topic === 'ec-test/hup2/prediction', 30_000, 'predictions on hup2 after reload');
  const offline = rec.on('ec-test/hup1/availability').at(-1);
  t.equal(offline?.payload, 'offline', 'the old base topic went offline');
  t.equal(d.child.exitCode, null, 'still running');
  d.child.kill('SIGTERM');
  t.equal((await d.exited).code, 0);
});

t.test('a looping replay folder that disappears exits 1 (systemd restarts it); SIGTERM right after SIGHUP exits 0', async (t) => {
  const { freePort } = await import('../helpers/mosquitto.js');
  const dir = mkdtempSync(path.join(tmpdir(), 'ec-vanish-'));
  copyFileSync(image('hot_dog.jpg'), path.join(dir, 'a.jpg'));
  const config = `${dir}.yaml`;
  writeFileSync(config, ['source:', `  spec: ${dir}`, '  fps: 10', 'model:', `  path: ${MODEL}`, 'mqtt:', `  embedded_port: ${await freePort()}`].join('\n'));
  const d = startCli(t, ['run', '--config', config]);
  await d.waitForLog((l) => l.msg === 'first frame classified: ready', 30_000, 'ready');
  const { rmSync } = await import('node:fs');
  rmSync(dir, { recursive: true, force: true });
  const exit = await d.exited;
  t.equal(exit.code, 1, `exit 1 when a looping source ends\n${d.stdout.slice(-1500)}`);
  t.ok(d.logs.some((l) => /source ended although source\.loop is on/.test(l.msg)));

  // Reload and stop in quick succession, as `systemctl reload` then `stop` may do.
  mkdirSync(dir);
  copyFileSync(image('hot_dog.jpg'), path.join(dir, 'a.jpg'));
  for (const gapMs of [60, 150]) {
    const r = startCli(t, ['run', '--config', config]);
    await r.waitForLog((l) => l.msg === 'first frame classified: ready', 30_000, 'ready');
    r.child.kill('SIGHUP');
    await new Promise((resolve) => setTimeout(resolve, gapMs));
    r.child.kill('SIGTERM');
    const e = await r.exited;
    t.equal(e.code, 0, `SIGTERM ${gapMs} ms after SIGHUP: exit 0\n${r.stderr.slice(-1500)}`);
  }
});

t.test('signals during start-up: handled from the first moment, a start is waited for or cancelled cleanly', async (t) => {
  const { freePort } = await import('../helpers/mosquitto.js');
  const dir = mkdtempSync(path.join(tmpdir(), 'ec-early-'));
  copyFileSync(image('cat_720p.jpg'), path.join(dir, 'a.jpg'));
  const config = `${dir}.yaml`;
  writeFileSync(config, ['source:', `  spec: ${dir}`, '  fps: 5', 'model:', `  path: ${MODEL}`, 'mqtt:', `  embedded_port: ${await freePort()}`].join('\n'));
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  /** Waits until the process names itself (it does so right after installing its signal handlers, before loading anything). */
  const handling = async (pid: number) => {
    for (let i = 0; i < 1000; i++) {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('edge-classifier run')) return;
      await sleep(2);
    }
    throw new Error(`process ${pid} never named itself`);
  };

  // SIGTERM as soon as the process handles it, while the program still loads: exit 0, not 143.
  const early = startCli(t, ['run', '--config', config]);
  await handling(early.child.pid!);
  early.child.kill('SIGTERM');
  const e1 = await early.exited;
  t.same([e1.code, e1.signal], [0, null], 'SIGTERM in the first second: exit 0');

  // SIGTERM while the daemon starts (the model loads): the start is cancelled, everything stops, exit 0.
  const starting = startCli(t, ['run', '--config', config]);
  await starting.waitForLog((l) => l.component === 'inference' || l.msg === 'running', 30_000, 'the start under way');
  starting.child.kill('SIGTERM');
  const e2 = await starting.exited;
  t.same([e2.code, e2.signal], [0, null], 'SIGTERM during start-up: exit 0');
  t.notOk(
    starting.logs.some(
      (l) => l.msg === 'first frame classified: ready' && starting.logs.indexOf(l) > starting.logs.findIndex((x) => x.msg === 'shutting down'),
    ),
  );

  // SIGHUP while the program loads and again while it starts: no exit 129, no race; the reload follows the start.
  const hup = startCli(t, ['run', '--config', config]);
  await handling(hup.child.pid!);
  hup.child.kill('SIGHUP');
  await hup.waitForLog((l) => l.component === 'inference', 30_000, 'the start under way');
  hup.child.kill('SIGHUP');
  await hup.waitForLog((l) => l.msg === 'SIGHUP: new configuration running', 30_000, 'the reload after the start');
  await hup.waitForLog((l) => l.msg === 'first frame classified: ready', 30_000, 'frames after the reload');
  t.equal(hup.child.exitCode, null, 'still running');
  hup.child.kill('SIGTERM');
  const e3 = await hup.exited;
  t.same([e3.code, e3.signal], [0, null], 'SIGTERM after the reload: exit 0');
});
