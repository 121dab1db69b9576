/**
 * The daemon's MQTT contract in process, against a real mosquitto (MQTT 5)
 * and, where it matters, the embedded aedes (3.1.1): every payload checked
 * against its JSON Schema, state smoothing on real frames, stats, problems,
 * snapshots, commands and their refusals, Home Assistant discovery, a broker
 * restart. Real classifier, real model, real images; an array-backed source
 * so frames come exactly when the test pushes them.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import t, { type Test } from 'tap';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { VirtualBackend } from '../../src/gpio/backends.js';
import type { StatsPayload } from '../../src/mqtt/topics.js';
import { Daemon, type DaemonOptions } from '../../src/service/daemon.js';
import { image, model } from '../helpers/assets.js';
import { renderTemplates } from '../helpers/jinja.js';
import { startMosquitto, tempDir } from '../helpers/mosquitto.js';
import { type MqttRecorder, recordMqtt } from '../helpers/mqtt-recorder.js';
import { capturingLogger } from '../helpers/recording.js';
import { assertPayload, payloadErrors, type SchemaName } from '../helpers/schemas.js';
import { ArraySource } from '../helpers/sources.js';

const CAT = readFileSync(image('cat_720p.jpg'));
const HOTDOG = readFileSync(image('hot_dog.jpg'));
const BIRD = readFileSync(image('bird.png'));
const HOTDOG_LABEL = 'hotdog, hot dog, red hot';
let n = 0;

/** The defaults with the V2 model, `url` as broker, a unique base topic, virtual GPIO 17 on a hot dog. */
function config(url: string, change: (c: Config) => Config = (c) => c): Config {
  const c = loadConfig({ env: {}, overrides: { model: model('mobilenet_v2_1.0_224_quant.tflite'), source: 'rpicam' } });
  n += 1;
  return change({
    ...c,
    inference: { ...c.inference, threads: 1 },
    mqtt: { ...c.mqtt, url, base_topic: `ec-test/contract-${process.pid}-${n}`, client_id: `ec-contract-${process.pid}-${n}`, stats_interval_s: 1 },
    gpio: { backend: 'virtual', rules: [{ pin: 17, labels: ['hotdog'], min_score: 0.5, active_low: false, hold_ms: 0 }] },
    homeassistant: { ...c.homeassistant, prefix: `ha-test-${process.pid}-${n}` },
  });
}

interface Built {
  daemon: Daemon;
  source: ArraySource;
  backend: VirtualBackend;
  lines: Array<Record<string, unknown>>;
  base: string;
  rec: MqttRecorder;
  /** Pushes a frame and waits for its prediction. */
  frame(img: Buffer): Promise<void>;
}

async function build(t: Test, c: Config, extra: Partial<DaemonOptions> = {}): Promise<Built> {
  const { log, lines } = capturingLogger('debug');
  const source = new ArraySource([CAT]);
  const backend = new VirtualBackend({ log });
  const base = c.mqtt.base_topic!;
  const rec = await recordMqtt(t, c.mqtt.url!, `${base}/#`, { protocolVersion: 5 });
  const daemon = new Daemon({ config: c, log, createSource: () => source, gpioBackend: backend, deviceId: '0123456789ab', ...extra });
  t.teardown(() => daemon.stop().catch(() => {}));
  await daemon.start();
  await rec.waitFor((m) => m.topic === `${base}/availability` && m.payload === 'online', 5000, 'online');
  let pushed = 0;
  const frame = async (img: Buffer) => {
    pushed += 1;
    const seq = pushed;
    source.push(img);
    await rec.waitFor((m) => m.topic === `${base}/prediction` && JSON.parse(m.payload).seq === seq, 15_000, `prediction ${seq}`);
  };
  return { daemon, source, backend, lines, base, rec, frame };
}

const json = (m: { payload: string }) => JSON.parse(m.payload) as Record<string, unknown>;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Validates every message recorded under `base` against its topic's schema. */
function validateAll(t: Test, rec: MqttRecorder, base: string): void {
  const kinds: [RegExp, SchemaName, boolean][] = [
    [/\/availability$/, 'availability', false],
    [/\/prediction$/, 'prediction', true],
    [/\/state$/, 'state', true],
    [/\/gpio\/\d+$/, 'gpio', false],
    [/\/stats$/, 'stats', true],
    [/\/problems$/, 'problems', true],
    [/\/settings$/, 'settings', true],
    [/\/response\//, 'response', true],
  ];
  const bad: string[] = [];
  let checked = 0;
  for (const m of rec.messages) {
    if (!m.topic.startsWith(`${base}/`) || m.topic.includes('/set') || m.topic.includes('/request/')) continue;
    const kind = kinds.find(([re]) => re.test(m.topic));
    if (kind === undefined) continue;
    const errors = payloadErrors(kind[1], kind[2] ? JSON.parse(m.payload) : m.payload);
    checked += 1;
    if (errors) bad.push(`${m.topic}: ${errors}`);
  }
  t.same(bad, [], `${checked} messages match their JSON Schemas`);
}

t.test('against mosquitto', async (t) => {
  const broker = await startMosquitto(t);

  t.test('every topic: payloads valid against the schemas; unknown state at start; snapshot of the change', async (t) => {
    const b = await build(t, config(broker.url));
    const states = () => b.rec.on(`${b.base}/state`).map(json);
    await b.rec.waitFor((m) => m.topic === `${b.base}/stats`, 5000, 'stats at start');
    t.equal(states()[0]?.status, 'unknown', 'the state is unknown until a frame decided it');
    await b.frame(HOTDOG);
    const snapshot = await b.rec.waitFor((m) => m.topic === `${b.base}/snapshot`, 10_000, 'a snapshot');
    t.same([...snapshot.bytes.subarray(0, 3)], [0xff, 0xd8, 0xff], 'JPEG bytes');
    const meta = await sharp(snapshot.bytes).metadata();
    const original = await sharp(HOTDOG).metadata();
    t.same([meta.format, meta.width], ['jpeg', Math.min(640, original.width!)], `a JPEG at most snapshot.width wide (the frame is ${original.width} px)`);
    t.match(snapshot.properties, { contentType: 'image/jpeg', userProperties: { label: HOTDOG_LABEL, seq: '1' } });
    await b.rec.waitFor((m) => m.topic === `${b.base}/gpio/17` && m.payload === '1', 5000, 'gpio/17 on for the hot dog');
    const s = states().at(-1)!;
    t.match(s, { status: 'detected', label: HOTDOG_LABEL, index: 935 });
    t.ok((s.score as number) > 0.8, `hot dog score ${s.score}`);
    // Retained: a late subscriber gets every retained topic.
    const late = await recordMqtt(t, broker.url, `${b.base}/#`);
    await late.waitFor((m) => m.topic === `${b.base}/gpio/17`);
    await sleep(300);
    t.same(
      late.messages
        .filter((m) => m.retain)
        .map((m) => m.topic.slice(b.base.length))
        .sort(),
      ['/availability', '/gpio/17', '/problems', '/settings', '/snapshot', '/state', '/stats'],
    );
    const prediction = b.rec.on(`${b.base}/prediction`)[0]!;
    t.ok((prediction.properties?.messageExpiryInterval as number) >= 1, 'predictions expire (MQTT 5)');
    await b.rec.waitFor((m) => m.topic === `${b.base}/stats` && (json(m).frames as { classified: number }).classified === 1, 5000, 'stats after a frame');
    validateAll(t, b.rec, b.base);
  });

  t.test('mqtt.commands false: nothing is subscribed, a command changes nothing; snapshots also go to snapshot.dir', async (t) => {
    const dir = await tempDir(t);
    const b = await build(
      t,
      config(broker.url, (c) => ({ ...c, mqtt: { ...c.mqtt, commands: false }, snapshot: { ...c.snapshot, dir, max_files: 1 } })),
    );
    await b.rec.client.publishAsync(`${b.base}/set/threshold`, '0.7', { qos: 1 });
    await b.rec.client.publishAsync(`${b.base}/request/get_config`, '{}', { qos: 1 });
    await b.frame(HOTDOG);
    await b.frame(CAT);
    await b.rec.waitFor(
      (m) => m.topic === `${b.base}/snapshot` && m.properties?.userProperties !== undefined && (m.properties.userProperties as { seq: string }).seq === '2',
      10_000,
      'the second snapshot',
    );
    await sleep(300);
    t.same(
      b.rec.messages.filter((m) => m.topic.includes('/response/')),
      [],
      'no response: commands are off',
    );
    t.equal(json(b.rec.on(`${b.base}/settings`).at(-1)!).threshold, 0.1, 'the threshold did not change');
    const files = (await readdir(dir)).filter((f) => f.endsWith('.jpg'));
    t.match(files, [/^\d{8}T\d{6}\.\d{3}Z_Egyptian_cat\.jpg$/], 'the latest snapshot file, max_files 1');
  });

  t.test('stats: frames, timings, engine, model, uptime, memory, MQTT counters', async (t) => {
    const b = await build(t, config(broker.url));
    await b.frame(CAT);
    await b.frame(HOTDOG);
    const m = await b.rec.waitFor((m) => m.topic === `${b.base}/stats` && (json(m).frames as { classified: number }).classified === 2, 5000, 'stats');
    const s = json(m) as unknown as StatsPayload;
    assertPayload(t, 'stats', s);
    t.same(s.frames, { in: 2, classified: 2, dropped: 0, bad: 0, failed: 0 });
    t.match(s, { model: 'mobilenet_v2_1.0_224_quant', engine: 'tflite-cpu', delegate: 'cpu', threads: 1, paused: false, source: 'array test source' });
    const { p50, p95 } = s.inference_ms;
    t.ok(p50 !== null && p95 !== null && p50 > 1 && p95 >= p50, `inference p50 ${p50} ms, p95 ${p95} ms`);
    t.ok((s.preprocess_ms.p50 ?? 0) > 0, `preprocess p50 ${s.preprocess_ms.p50} ms`);
    t.ok(s.uptime_s > 0 && s.system.rss_bytes > 50e6, `uptime ${s.uptime_s} s, RSS ${s.system.rss_bytes} bytes`);
    t.equal(s.mqtt.protocol, '5');
    t.ok(s.mqtt.published >= 4);
    t.equal(s.instance.pid, process.pid);
  });

  t.test('smoothing on real frames: alternating hot dog / chickadee does not flap the state or the relay (min_frames 3)', async (t) => {
    const b = await build(
      t,
      config(broker.url, (c) => ({ ...c, state: { ...c.state, min_frames: 3 } })),
    );
    for (const img of [HOTDOG, HOTDOG, HOTDOG]) await b.frame(img);
    for (let i = 0; i < 8; i++) await b.frame(i % 2 === 0 ? BIRD : HOTDOG);
    for (const img of [BIRD, BIRD, BIRD]) await b.frame(img);
    await sleep(200);
    const labels = b.rec.on(`${b.base}/state`).map((m) => (json(m).status === 'detected' ? json(m).label : json(m).status));
    t.same(labels, ['unknown', HOTDOG_LABEL, 'chickadee'], 'unknown, the hot dog once, the chickadee once');
    t.same(
      b.rec.on(`${b.base}/gpio/17`).map((m) => m.payload),
      ['0', '1', '0'],
      'the relay: off, on for the hot dogs, off after three chickadees',
    );
    t.equal(b.rec.on(`${b.base}/snapshot`).length, 2, 'one snapshot per state change');
  });

  t.test('commands: each setting live, refusals with the config file messages, nothing changed on a refusal', async (t) => {
    const b = await build(t, config(broker.url));
    const client = b.rec.client;
    const ask = async (topic: string, payload: string, name = topic.replace(/^(set|request)\//, (_, k) => (k === 'set' ? 'set/' : ''))) => {
      const before = b.rec.on(`${b.base}/response/${name}`).length;
      await client.publishAsync(`${b.base}/${topic}`, payload, { qos: 1 });
      const r = await b.rec.waitFor((m) => m.topic === `${b.base}/response/${name}` && b.rec.on(m.topic).indexOf(m) >= before, 5000, `response to ${topic}`);
      assertPayload(t, 'response', json(r));
      return json(r);
    };
    const settings = () => json(b.rec.on(`${b.base}/settings`).at(-1)!);

    t.match(await ask('set/threshold', '{"value":0.4,"by":"node-red"}'), {
      command: 'set/threshold',
      ok: true,
      result: { settings: { threshold: 0.4 }, persisted: false },
    });
    t.equal(settings().threshold, 0.4, '<base>/settings follows');
    t.ok(
      b.lines.some((l) => l.msg === 'settings changed by node-red: inference.threshold 0.1 → 0.4'),
      'logged with who and what',
    );
    t.match(
      await ask('set/threshold', '5'),
      { ok: false, error: 'inference.threshold: expected at most 1, but received 5' },
      'the same message as the config file',
    );
    t.match(await ask('set/top_k', '0'), { ok: false, error: 'inference.top_k: expected more than 0, but received 0' });
    t.match(await ask('set/state/min_frames', '"three"'), { ok: false, error: 'state.min_frames: expected a number, but received "three"' });
    t.match(await ask('set/threshold', '0,4'), { ok: false, error: /the payload is not JSON/ });
    t.match(await ask('set', '{"treshold":0.2}'), {
      ok: false,
      error: 'treshold: unknown key (expected one of: threshold, top_k, prediction_interval_ms, paused, state, gpio)',
    });
    t.match(await ask('set', '{"state":{"min_frame":2}}'), {
      ok: false,
      error: /^state\.min_frame: unknown key \(expected one of: min_score, hysteresis, min_frames/,
    });
    t.match(
      await ask('set', '{"threshold":0.3,"top_k":5000}'),
      { ok: false, error: 'inference.top_k: expected at most 1000, but received 5000' },
      'all or nothing',
    );
    t.equal(settings().threshold, 0.4, 'a refused command changed nothing');
    t.match(await ask('set/gpio/17/min_score', '0.7'), { ok: true, result: { settings: { gpio: { '17': { min_score: 0.7, hold_ms: 0 } } } } });
    t.match(await ask('set', '{"gpio":{"17":{"labels":["cat"]}}}'), {
      ok: false,
      error: 'gpio.rules[0].labels: cannot be set while running (expected one of: min_score, hold_ms)',
    });
    t.match(await ask('set', '{"state":{"min_frames":2,"hysteresis":0.05},"top_k":2,"prediction_interval_ms":100}'), { ok: true });
    t.match(settings(), { top_k: 2, prediction_interval_ms: 100, state: { min_frames: 2, window_frames: 2, hysteresis: 0.05 } });
    await b.frame(HOTDOG);
    t.equal((json(b.rec.on(`${b.base}/prediction`).at(-1)!).classes as unknown[]).length <= 2, true, 'top_k 2 in force');
    t.match(
      await ask('set/threshold', '{"value":0.2,"persist":true}'),
      { ok: false, error: /the daemon runs without a config file/ },
      'persist needs a config file',
    );

    // Retained commands are ignored: no response, nothing changes.
    await client.publishAsync(`${b.base}/set/threshold`, '0.9', { qos: 1, retain: true });
    await sleep(500);
    t.equal(settings().threshold, 0.4);
    t.ok(b.lines.some((l) => typeof l.msg === 'string' && l.msg.includes('retained message on') && l.msg.includes('ignored')));
    await client.publishAsync(`${b.base}/set/threshold`, '', { qos: 1, retain: true });

    // get_config: passwords hidden.
    const cfg = await ask('request/get_config', '{"id":"c1"}');
    t.match(cfg, { command: 'get_config', id: 'c1', ok: true, result: { inference: { threshold: 0.4, top_k: 2 }, mqtt: { password: null } } });
    // snapshot on request
    const snap = await ask('request/snapshot', '');
    t.match(snap, { ok: true, result: { seq: 1 } });
    t.ok((snap.result as { bytes: number }).bytes > 1000);
    // classify_now
    const now = await ask('request/classify_now', '{}');
    t.match(now, { ok: true, result: { seq: 1, classes: [{ label: HOTDOG_LABEL }] } });
    assertPayload(t, 'prediction', now.result);
    t.match(await ask('request/reload', '{}'), { ok: false, error: /reload is not available here/ });
    validateAll(t, b.rec, b.base);
  });

  t.test('pause: frames dropped and counted, outputs off; resume', async (t) => {
    const b = await build(t, config(broker.url));
    await b.frame(HOTDOG);
    await b.rec.waitFor((m) => m.topic === `${b.base}/gpio/17` && m.payload === '1', 5000, 'relay on');
    await b.rec.client.publishAsync(`${b.base}/set/paused`, 'true', { qos: 1 });
    await b.rec.waitFor((m) => m.topic === `${b.base}/settings` && json(m).paused === true, 5000, 'paused');
    await b.rec.waitFor((m) => m.topic === `${b.base}/gpio/17` && m.payload === '0', 5000, 'relay off while paused');
    const predictions = b.rec.on(`${b.base}/prediction`).length;
    b.source.push(HOTDOG);
    b.source.push(HOTDOG);
    await sleep(600);
    t.equal(b.rec.on(`${b.base}/prediction`).length, predictions, 'no prediction while paused');
    const stats = await b.rec.waitFor((m) => m.topic === `${b.base}/stats` && json(m).paused === true, 5000, 'stats while paused');
    t.match(json(stats), { frames: { in: 3, classified: 1, dropped: 2 } });
    await b.rec.client.publishAsync(`${b.base}/set/paused`, 'false', { qos: 1 });
    await b.rec.waitFor((m) => m.topic === `${b.base}/settings` && json(m).paused === false, 5000, 'resumed');
    b.source.push(HOTDOG);
    await b.rec.waitFor((m) => m.topic === `${b.base}/prediction` && json(m).seq === 4, 10_000, 'a prediction after resuming');
  });

  t.test('MQTT 5 requests: the response goes to the response topic with the correlation data', async (t) => {
    const b = await build(t, config(broker.url));
    const replies = await recordMqtt(t, broker.url, `app-${n}/replies/#`, { protocolVersion: 5 });
    await b.rec.client.publishAsync(`${b.base}/request/get_config`, '{}', {
      qos: 1,
      properties: { responseTopic: `app-${n}/replies/1`, correlationData: Buffer.from('corr-42'), userProperties: { client_id: 'dashboard-3' } },
    });
    const r = await replies.waitFor(() => true, 5000, 'the reply');
    t.equal(r.topic, `app-${n}/replies/1`);
    t.equal(Buffer.from(r.properties?.correlationData as Buffer).toString(), 'corr-42');
    t.match(json(r), { command: 'get_config', ok: true });
    t.ok(
      b.lines.some((l) => l.msg === 'request get_config from dashboard-3'),
      'the sender named by its user property',
    );
  });

  t.test('a command flood is rate-limited and counted; the daemon keeps running', async (t) => {
    const b = await build(
      t,
      config(broker.url, (c) => ({ ...c, mqtt: { ...c.mqtt, command_rate: 2 } })),
    );
    for (let i = 0; i < 60; i++) b.rec.client.publish(`${b.base}/request/get_config`, '{}', { qos: 0 });
    const stats = await b.rec.waitFor(
      (m) => m.topic === `${b.base}/stats` && (json(m).mqtt as { commands_rate_limited: number }).commands_rate_limited > 0,
      10_000,
      'stats counting the flood',
    );
    const mq = json(stats).mqtt as Record<string, number>;
    t.ok(mq.commands_accepted! <= 25 && mq.commands_rate_limited! >= 30, `accepted ${mq.commands_accepted}, rate-limited ${mq.commands_rate_limited}`);
    const problems = await b.rec.waitFor(
      (m) => m.topic === `${b.base}/problems` && JSON.stringify(json(m)).includes('commands_flood'),
      5000,
      'the flood problem',
    );
    t.match((json(problems).problems as unknown[])[0], { id: 'commands_flood', severity: 'warning' });
    await b.frame(CAT);
  });

  t.test('problems: a GPIO rule naming a label the model lacks', async (t) => {
    const b = await build(
      t,
      config(broker.url, (c) => ({ ...c, gpio: { ...c.gpio, rules: [{ pin: 22, labels: ['parrot'], min_score: 0.5, active_low: false, hold_ms: 0 }] } })),
    );
    const m = await b.rec.waitFor((m) => m.topic === `${b.base}/problems` && (json(m).problems as unknown[]).length > 0, 5000, 'a problem');
    const p = (json(m).problems as Record<string, string>[])[0]!;
    assertPayload(t, 'problems', json(m));
    t.match(p, {
      id: 'gpio_labels_missing:22',
      severity: 'warning',
      message: 'GPIO 22: the model has no class named "parrot": that label will never switch the output',
    });
    t.ok(Date.parse(p.since!) > Date.now() - 60_000);
  });

  t.test('expiry: no frame for state.expire_after_s makes the state unknown, retained', async (t) => {
    const b = await build(
      t,
      config(broker.url, (c) => ({ ...c, state: { ...c.state, expire_after_s: 1 } })),
    );
    await b.frame(CAT);
    const m = await b.rec.waitFor((m) => m.topic === `${b.base}/state` && json(m).status === 'unknown' && b.rec.on(m.topic).indexOf(m) > 1, 5000, 'unknown');
    t.match(json(m), { status: 'unknown', label: null, classes: [] });
  });

  t.test('Home Assistant: discovery valid, re-published when Home Assistant comes online', async (t) => {
    const c = config(broker.url, (c) => ({ ...c, homeassistant: { ...c.homeassistant, watch: ['Egyptian cat'] } }));
    const prefix = c.homeassistant.prefix;
    const ha = await recordMqtt(t, broker.url, `${prefix}/#`);
    const b = await build(t, c);
    const first = await ha.waitFor((m) => m.topic === `${prefix}/device/edge_classifier_0123456789ab_${hash(b.base)}/config`, 5000, 'discovery');
    const d = json(first) as { cmps: Record<string, unknown>; dev: Record<string, unknown>; availability_topic: string };
    assertPayload(t, 'homeassistant-discovery', d);
    t.same(Object.keys(d.cmps), [
      'top_label',
      'gpio_17',
      'watch_egyptian_cat',
      'inference_ms',
      'classified_fps',
      'cpu_temperature',
      'problems',
      'snapshot',
      'threshold',
      'paused',
      'reload',
    ]);
    t.match(d.dev, { mf: 'edge-classifier', mdl: 'mobilenet_v2_1.0_224_quant' });
    t.equal(d.availability_topic, `${b.base}/availability`);
    // The entity templates, rendered by Jinja2 (Home Assistant's template engine) on the payloads the daemon published.
    await b.frame(CAT);
    const stats = await b.rec.waitFor((m) => m.topic === `${b.base}/stats` && (json(m).frames as { classified: number }).classified === 1, 5000, 'stats');
    await b.rec.waitFor((m) => m.topic === `${b.base}/state` && json(m).status === 'detected', 5000, 'the cat state');
    const latest = (topic: string) => b.rec.on(topic).at(-1)!.payload;
    const cmps = d.cmps as Record<string, Record<string, string>>;
    const items = Object.entries(cmps).flatMap(([id, c]) =>
      (['value_template', 'json_attributes_template'] as const)
        .filter((k) => c[k] !== undefined)
        .map((k) => ({ id, k, template: c[k]!, payload: latest(k === 'value_template' ? c.state_topic! : c.json_attributes_topic!) })),
    );
    const rendered = renderTemplates(items);
    const byId = Object.fromEntries(items.map((it, i) => [`${it.id}.${it.k}`, rendered[i]]));
    const s = json(stats) as unknown as StatsPayload;
    t.same(
      {
        top: byId['top_label.value_template'],
        watch: byId['watch_egyptian_cat.value_template'],
        inference: byId['inference_ms.value_template'],
        fps: byId['classified_fps.value_template'],
        temperature: byId['cpu_temperature.value_template'],
        problems: byId['problems.value_template'],
        threshold: byId['threshold.value_template'],
        paused: byId['paused.value_template'],
      },
      {
        top: 'Egyptian cat',
        watch: 'ON',
        inference: String(s.inference_ms.p50),
        fps: String(s.fps.classified),
        // No thermal zone on this machine: 'None' is what Home Assistant shows as unknown.
        temperature: s.system.cpu_temperature_c === null ? 'None' : String(s.system.cpu_temperature_c),
        problems: '0',
        threshold: '0.1',
        paused: 'false',
      },
    );
    const attributes = JSON.parse(String(byId['top_label.json_attributes_template'])) as { score: number; top_k: { label: string }[] };
    t.equal(attributes.top_k[0]!.label, 'Egyptian cat', 'top-k scores as attributes');
    t.same(JSON.parse(String(byId['problems.json_attributes_template'])), { problems: [] });
    // The first state (unknown) renders as Home Assistant's unknown, the watch sensor too.
    const unknown = b.rec.on(`${b.base}/state`)[0]!.payload;
    t.same(
      renderTemplates([
        { template: cmps.top_label!.value_template!, payload: unknown },
        { template: cmps.watch_egyptian_cat!.value_template!, payload: unknown },
      ]),
      ['None', 'None'],
    );
    ha.clear();
    await b.rec.client.publishAsync(`${prefix}/status`, 'online', { qos: 1 });
    const again = await ha.waitFor((m) => m.topic === first.topic, 5000, 'discovery again');
    t.equal(again.payload, first.payload, 'the same payload');
  });

  t.test('a broker restart: state changes made during the outage arrive after it; retained topics are back', async (t) => {
    const restartable = await startMosquitto(t);
    const b = await build(t, config(restartable.url));
    await b.frame(CAT);
    await b.rec.waitFor((m) => m.topic === `${b.base}/state` && json(m).label === 'Egyptian cat', 5000, 'cat state');
    await restartable.stop();
    await sleep(300);
    b.source.push(HOTDOG);
    await sleep(1500);
    b.source.push(HOTDOG);
    await sleep(1500);
    await restartable.start();
    const fresh = await recordMqtt(t, restartable.url, `${b.base}/#`);
    const s = await fresh.waitFor((m) => m.topic === `${b.base}/state`, 10_000, 'state after the restart');
    t.match(json(s), { status: 'detected', label: HOTDOG_LABEL }, 'the state made while the broker was down');
    await fresh.waitFor((m) => m.topic === `${b.base}/gpio/17` && m.payload === '1', 5000, 'the relay level made during the outage');
    const after = await recordMqtt(t, restartable.url, `${b.base}/#`);
    await after.waitFor((m) => m.topic === `${b.base}/stats`, 5000, 'stats');
    await sleep(300);
    t.same(
      [...new Set(after.messages.filter((m) => m.retain).map((m) => m.topic.slice(b.base.length)))].sort(),
      ['/availability', '/gpio/17', '/problems', '/settings', '/snapshot', '/state', '/stats'],
      'every retained topic is on the restarted broker again',
    );
    t.same(
      fresh.messages.filter((m) => m.topic === `${b.base}/prediction` && Date.parse(json(m).time as string) < Date.now() - 2500).map((m) => json(m).seq),
      [],
      'no prediction from the outage',
    );
  });
});

t.test('persist: a live setting written into the config file, comments kept', async (t) => {
  const broker = await startMosquitto(t);
  const dir = await tempDir(t);
  const file = path.join(dir, 'config.yaml');
  await writeFile(file, '# front door\ninference:\n  threshold: 0.1 # low on purpose\nstate:\n  min_frames: 1\n');
  const b = await build(t, config(broker.url), { configFile: file });
  await b.rec.client.publishAsync(`${b.base}/set`, '{"threshold":0.35,"state":{"min_frames":3},"persist":true}', { qos: 1 });
  const r = await b.rec.waitFor((m) => m.topic === `${b.base}/response/set`, 5000, 'response');
  t.match(json(r), { ok: true, result: { persisted: true } });
  t.equal(await readFile(file, 'utf8'), '# front door\ninference:\n  threshold: 0.35 # low on purpose\nstate:\n  min_frames: 3\n');
  await b.rec.client.publishAsync(`${b.base}/set/paused`, '{"value":true,"persist":true}', { qos: 1 });
  const r2 = await b.rec.waitFor((m) => m.topic === `${b.base}/response/set/paused`, 5000, 'response');
  t.match(json(r2), { ok: false, error: /paused is not a config key/ });
});

t.test('against the embedded broker (MQTT 3.1.1): responses on <base>/response/<command>, contract unchanged', async (t) => {
  const c = config('', (c) => ({ ...c, mqtt: { ...c.mqtt, url: null, embedded_port: 0 } }));
  const { log } = capturingLogger('info');
  const source = new ArraySource([CAT]);
  const daemon = new Daemon({ config: c, log, createSource: () => source, gpioBackend: new VirtualBackend({ log }), deviceId: '0123456789ab' });
  t.teardown(() => daemon.stop().catch(() => {}));
  await daemon.start();
  const base = c.mqtt.base_topic!;
  const rec = await recordMqtt(t, daemon.brokerUrl, `${base}/#`);
  await rec.waitFor((m) => m.topic === `${base}/availability` && m.payload === 'online');
  source.push(HOTDOG);
  await rec.waitFor((m) => m.topic === `${base}/snapshot`, 15_000, 'snapshot');
  await rec.client.publishAsync(`${base}/request/get_config`, '{"id":7}', { qos: 1 });
  const r = await rec.waitFor((m) => m.topic === `${base}/response/get_config`, 5000, 'response');
  t.match(json(r), { id: 7, ok: true });
  await rec.waitFor((m) => m.topic === `${base}/stats`, 5000, 'stats');
  t.equal((json(rec.on(`${base}/stats`).at(-1)!).mqtt as { protocol: string }).protocol, '3.1.1');
  validateAll(t, rec, base);
});

/** The 6-hex suffix of a non-default base topic in ids (see `discoveryObjectId`). */
function hash(base: string): string {
  return createHash('sha256').update(base).digest('hex').slice(0, 6);
}
