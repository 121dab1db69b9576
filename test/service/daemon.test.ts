/**
 * The Daemon in process: the real classifier (worker thread, real model and
 * images), the embedded broker on a free port, the virtual GPIO backend and
 * an array-backed frame source. Start order, stop in reverse with a part
 * failing, stop during start, no result after stop has begun, the stall
 * timer, the consecutive-failure limit, a finite source's end.
 */
import { readFileSync } from 'node:fs';
import t, { type Test } from 'tap';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { CancelledError } from '../../src/core/lifecycle.js';
import { VirtualBackend } from '../../src/gpio/backends.js';
import { Classifier } from '../../src/inference/classifier.js';
import { Daemon, type DaemonOptions, MAX_CONSECUTIVE_FAILURES } from '../../src/service/daemon.js';
import { image, model } from '../helpers/assets.js';
import { recordMqtt } from '../helpers/mqtt-recorder.js';
import { capturingLogger } from '../helpers/recording.js';
import { ArraySource } from '../helpers/sources.js';

const CAT = readFileSync(image('cat_720p.jpg'));
const HOTDOG = readFileSync(image('hot_dog.jpg'));
const BASE = 'ec-test/daemon';

/** The defaults, with the V2 model, the embedded broker on a free port, virtual GPIO 17 on a cat. */
function config(change: (c: Config) => Config = (c) => c): Config {
  const c = loadConfig({ env: {}, overrides: { model: model('mobilenet_v2_1.0_224_quant.tflite'), source: 'rpicam' } });
  return change({
    ...c,
    source: { ...c.source, fps: 10 },
    mqtt: { ...c.mqtt, embedded_port: 0, base_topic: BASE },
    gpio: { backend: 'virtual', rules: [{ pin: 17, labels: ['Egyptian cat'], min_score: 0.5, active_low: false, hold_ms: 0 }] },
  });
}

function build(t: Test, options: { config?: Config; source?: ArraySource } & Partial<DaemonOptions> = {}) {
  const { log, lines } = capturingLogger('debug');
  const source = options.source ?? new ArraySource([CAT, HOTDOG]);
  const backend = new VirtualBackend({ log });
  const daemon = new Daemon({
    config: options.config ?? config(),
    log,
    createSource: () => source,
    gpioBackend: backend,
    deviceId: '0123456789ab',
    ...options,
  });
  t.teardown(() => daemon.stop().catch(() => {}));
  const messages = (prefix: string) =>
    lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith(prefix)).map((l) => String(l.msg).slice(prefix.length));
  return { daemon, source, backend, lines, started: () => messages('started '), stopped: () => messages('stopped ') };
}

const until = async (what: string, cond: () => boolean, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

const PARTS = ['classifier', 'embedded broker', 'mqtt publisher', 'gpio', 'frame pipeline', 'source', 'status timer', 'stall timer', 'stats timer'];

t.test('parts start in order, frames flow to MQTT and GPIO, parts stop in reverse', async (t) => {
  const { daemon, source, backend, started, stopped } = build(t);
  await daemon.start();
  t.same(started(), PARTS, 'start order');
  t.match(daemon.brokerUrl, /^mqtt:\/\/127\.0\.0\.1:\d+$/, 'the embedded broker on a free port');
  t.equal(daemon.baseTopic, BASE);
  const rec = await recordMqtt(t, daemon.brokerUrl, `${BASE}/#`);
  await rec.waitFor((m) => m.topic === `${BASE}/availability` && m.payload === 'online', 5000, 'online');
  source.push(CAT);
  const prediction = await rec.waitFor((m) => m.topic === `${BASE}/prediction`, 10_000, 'a prediction');
  t.equal(JSON.parse(prediction.payload).classes[0].label, 'Egyptian cat');
  await rec.waitFor((m) => m.topic === `${BASE}/gpio/17` && m.payload === '1', 5000, 'gpio/17 = 1');
  t.equal(backend.level(17), 1, 'the pin follows the cat');
  await daemon.stop();
  t.same(stopped(), [...PARTS].reverse(), 'stop order: the reverse');
  t.equal(backend.level(17), undefined, 'the pin is released');
  t.same(source.calls, ['start', 'stop']);
  t.ok(
    rec.on(`${BASE}/availability`).some((m) => m.payload === 'offline'),
    'offline published before the broker went',
  );
  await daemon.stop();
  t.same(source.calls, ['start', 'stop'], 'stop is idempotent');
});

t.test('a part that fails to stop: the others still stop, the first failure is thrown', async (t) => {
  const boom = new Error('the camera would not let go');
  const { daemon, backend, lines, stopped } = build(t, { source: new ArraySource([CAT], { failStop: boom }) });
  await daemon.start();
  t.equal(backend.level(17), 0, 'opened at its safe level');
  await t.rejects(daemon.stop(), boom);
  t.same(
    stopped(),
    ['stats timer', 'stall timer', 'status timer', 'frame pipeline', 'gpio', 'mqtt publisher', 'embedded broker', 'classifier'],
    'every other part stopped',
  );
  t.equal(backend.level(17), undefined, 'GPIO released although the source failed');
  t.ok(
    lines.some((l) => l.level === 50 && l.msg === 'stopping source failed: the camera would not let go'),
    'the failure is logged',
  );
});

t.test('stop during start cancels the start between parts and stops what had started', async (t) => {
  const { daemon, source, started, stopped } = build(t);
  const starting = daemon.start();
  const stopping = daemon.stop();
  await t.rejects(starting, CancelledError, 'the start rejects as cancelled');
  await stopping;
  t.same(started(), ['classifier'], 'the model load under way was finished, nothing after it started');
  t.same(stopped(), ['classifier'], 'and it was stopped');
  t.same(source.calls, [], 'the source never started');
});

t.test('once stop has begun, the frame in flight reaches neither GPIO nor MQTT', async (t) => {
  const { daemon, source, backend, lines } = build(t);
  await daemon.start();
  const rec = await recordMqtt(t, daemon.brokerUrl, `${BASE}/#`);
  await rec.waitFor((m) => m.topic === `${BASE}/availability` && m.payload === 'online', 5000, 'online');
  source.push(CAT);
  await new Promise((r) => setImmediate(r)); // the loop has taken the frame: it is being classified
  await daemon.stop();
  t.notOk(
    lines.some((l) => l.msg === 'GPIO 17 on (pin high)'),
    'the output never switched on',
  );
  t.notOk(backend.writes > 0 && lines.some((l) => String(l.msg).includes('→ 1')), 'no write of the on level');
  t.same(rec.on(`${BASE}/prediction`), [], 'no prediction published');
  t.same(
    rec.on(`${BASE}/gpio/17`).map((m) => m.payload),
    ['0'],
    'only the safe level',
  );
});

t.test('a stalled source switches GPIO outputs off; frames coming back are classified again', async (t) => {
  const { daemon, source, lines } = build(t);
  await daemon.start();
  source.push(CAT);
  await until('GPIO 17 on', () => lines.some((l) => l.msg === 'GPIO 17 on (pin high)'));
  const at = Date.now();
  await until('the stall warning', () => lines.some((l) => /^no frame classified for \d+\.\d s: GPIO outputs off/.test(String(l.msg))), 8000);
  t.ok(Date.now() - at >= 2500, `stalled after ${Date.now() - at} ms (3 s at least)`);
  t.ok(
    lines.some((l) => l.msg === 'GPIO 17 off (pin low)'),
    'the output switched off',
  );
  t.match(daemon.problems.list(), [{ id: 'source_stalled', severity: 'error', message: /^no frame classified from array test source for more than 3\.0 s$/ }]);
  source.push(CAT);
  await until('classified again', () => lines.some((l) => l.msg === 'frames are being classified again'));
  t.same(daemon.problems.list(), [], 'the problem is cleared');
  await until('GPIO 17 on again', () => lines.filter((l) => l.msg === 'GPIO 17 on (pin high)').length === 2);
  t.pass('the output follows the frames again');
});

t.test(`${MAX_CONSECUTIVE_FAILURES} classification failures in a row: onFailed once, failures logged at most every 10 s`, async (t) => {
  class DeadInterpreter extends Classifier {
    protected override async infer(): Promise<never> {
      throw new Error('the interpreter for the model is not running: the TFLite worker exited unexpectedly (code 1)');
    }
  }
  const failed: Error[] = [];
  const { daemon, source, lines } = build(t, { createClassifier: (o) => new DeadInterpreter(o), onFailed: (err) => failed.push(err) });
  await daemon.start();
  for (let i = 1; i <= MAX_CONSECUTIVE_FAILURES + 2; i++) {
    source.push(CAT);
    await until(`failure ${i}`, () => daemon.stats().failed === i);
    if (i === MAX_CONSECUTIVE_FAILURES - 1) t.same(failed, [], `nothing after ${i}`);
  }
  t.equal(failed.length, 1, 'onFailed called once, at the limit');
  t.match(failed[0]?.message, /TFLite worker exited/);
  t.equal(lines.filter((l) => String(l.msg).startsWith('classification failed')).length, 1, 'one error line for the burst');
});

t.test('bad frames are dropped and counted, and never count as failures', async (t) => {
  const failed: Error[] = [];
  const { daemon, source, lines } = build(t, { onFailed: (err) => failed.push(err) });
  await daemon.start();
  for (let i = 1; i <= MAX_CONSECUTIVE_FAILURES + 1; i++) {
    source.push(Buffer.from(`not an image ${i}`));
    await until(`bad frame ${i}`, () => (daemon.stats().badFrames['not-an-image'] ?? 0) === i);
  }
  t.same(failed, []);
  t.equal(daemon.stats().failed, 0);
  t.equal(lines.filter((l) => String(l.msg).startsWith('frame dropped')).length, 1, 'logged once per kind');
});

t.test('a finite source that ends is the job done; a looping one that ends is a failure', async (t) => {
  for (const loop of [false, true]) {
    const ended: Array<[string, boolean]> = [];
    const c = config((c) => ({ ...c, source: { ...c.source, loop } }));
    const { daemon, source } = build(t, { config: c, onEnd: (reason, failure) => ended.push([reason, failure]) });
    await daemon.start();
    source.push(CAT);
    source.end('replayed 1 file');
    await until('the end', () => ended.length === 1);
    t.same(ended, [['replayed 1 file', loop]], `loop ${loop}`);
    await daemon.stop();
  }
});

t.test('trigger mode: nothing is classified until the GPIO input fires, then a burst; ready while waiting', async (t) => {
  const { VirtualInputBackend } = await import('../../src/gpio/input.js');
  const { log } = capturingLogger('debug');
  const inputs = new VirtualInputBackend({ log });
  const c = config((c) => ({ ...c, source: { ...c.source, mode: 'trigger', trigger: { ...c.source.trigger, pin: 4, burst: 2, debounce_ms: 0 } } }));
  const { daemon, source, lines } = build(t, { config: c, gpioInputBackend: inputs });
  await daemon.start();
  source.push(CAT);
  source.push(CAT);
  await until('the ready line', () => lines.some((l) => l.msg === 'frames flow, waiting for a trigger: ready'));
  await new Promise((r) => setTimeout(r, 300));
  t.equal(daemon.stats().classified, 0, 'no classification without a trigger');
  inputs.set(4, 1); // the input fires (rising edge)
  for (let n = 1; n <= 3; n++) {
    source.push(CAT);
    if (n <= 2) await until(`classification ${n}`, () => daemon.stats().classified === n);
  }
  await new Promise((r) => setTimeout(r, 300));
  t.equal(daemon.stats().classified, 2, 'a burst of two frames');
  t.ok(daemon.trigger(), 'the API triggers too (for MQTT commands)');
  source.push(HOTDOG);
  await until('classification 3', () => daemon.stats().classified === 3);
  inputs.set(4, 0); // falling edge: not a trigger with edge rising
  source.push(CAT);
  await until('classification 4: the rest of the API burst', () => daemon.stats().classified === 4);
  source.push(CAT);
  await new Promise((r) => setTimeout(r, 500));
  t.equal(daemon.stats().classified, 4, 'no more after the burst; the falling edge triggered nothing');
  await daemon.stop();
  t.notOk(daemon.trigger(), 'no trigger after stop');
});

t.test('a trigger pin the GPIO backend refuses stops the start with its reason', async (t) => {
  const { VirtualInputBackend } = await import('../../src/gpio/input.js');
  const { log } = capturingLogger('debug');
  const inputs = new VirtualInputBackend({ log });
  inputs.openInput(4, { edge: 'rising', debounceMs: 0, pull: 'none' }, () => {}); // held by someone else
  const c = config((c) => ({ ...c, source: { ...c.source, mode: 'trigger', trigger: { ...c.source.trigger, pin: 4 } } }));
  const { daemon } = build(t, { config: c, gpioInputBackend: inputs });
  await t.rejects(daemon.start(), /virtual GPIO BCM 4 is already open/);
});
