/**
 * The daemon's MQTT contract in process, one daemon against a real
 * mosquitto (MQTT 5), step by step as a subscriber and a controller meet it:
 * every topic and payload (checked against the JSON Schemas), stats, Home
 * Assistant discovery with its templates rendered by Jinja2, each command
 * and each refusal, MQTT 5 response topics, pause, persistence into the
 * config file, a command flood. Real classifier, real model, real images.
 */
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import type { StatsPayload } from '../../src/mqtt/topics.js';
import { repoRoot } from '../helpers/assets.js';
import { buildDaemon, CAT, daemonConfig, HOTDOG, HOTDOG_LABEL, json, sleep, validateAll } from '../helpers/daemon-mqtt.js';
import { renderTemplates } from '../helpers/jinja.js';
import { startMosquitto, tempDir } from '../helpers/mosquitto.js';
import { recordMqtt } from '../helpers/mqtt-recorder.js';
import { assertPayload } from '../helpers/schemas.js';

t.test('one daemon on mosquitto: the whole MQTT contract', async (t) => {
  const broker = await startMosquitto(t);
  const dir = await tempDir(t);
  const configFile = path.join(dir, 'config.yaml');
  await writeFile(configFile, '# front door\ninference:\n  threshold: 0.1 # low on purpose\nstate:\n  min_frames: 1\n');
  const c = daemonConfig(broker.url, (c) => ({ ...c, homeassistant: { ...c.homeassistant, watch: ['Egyptian cat'] } }));
  const prefix = c.homeassistant.prefix;
  const ha = await recordMqtt(t, broker.url, `${prefix}/#`);
  const b = await buildDaemon(t, c, { configFile });
  const { base, rec } = b;
  const client = rec.client;
  const settings = () => json(rec.on(`${base}/settings`).at(-1)!);
  const classifiedStats = (k: number) =>
    rec.waitFor((m) => m.topic === `${base}/stats` && (json(m).frames as { classified: number }).classified === k, 5000, `stats after ${k} frames`);

  t.test('every topic: unknown state at start, the hot dog, its snapshot and relay, all retained', async (t) => {
    await rec.waitFor((m) => m.topic === `${base}/stats`, 5000, 'stats at start');
    t.equal(json(rec.on(`${base}/state`)[0]!).status, 'unknown', 'the state is unknown until a frame decided it');
    await b.frame(HOTDOG);
    const snapshot = await rec.waitFor((m) => m.topic === `${base}/snapshot`, 10_000, 'a snapshot');
    t.same([...snapshot.bytes.subarray(0, 3)], [0xff, 0xd8, 0xff], 'JPEG bytes');
    const meta = await sharp(snapshot.bytes).metadata();
    const original = await sharp(HOTDOG).metadata();
    t.same([meta.format, meta.width], ['jpeg', Math.min(640, original.width!)], `a JPEG at most snapshot.width wide (the frame is ${original.width} px)`);
    t.match(snapshot.properties, { contentType: 'image/jpeg', userProperties: { label: HOTDOG_LABEL, seq: '1' } });
    await rec.waitFor((m) => m.topic === `${base}/gpio/17` && m.payload === '1', 5000, 'gpio/17 on for the hot dog');
    const s = json(rec.on(`${base}/state`).at(-1)!);
    t.match(s, { status: 'detected', label: HOTDOG_LABEL, index: 935 });
    t.ok((s.score as number) > 0.8, `hot dog score ${s.score}`);
    const late = await recordMqtt(t, broker.url, `${base}/#`);
    await late.waitFor((m) => m.topic === `${base}/gpio/17`);
    await sleep(300);
    t.same(
      late.messages
        .filter((m) => m.retain)
        .map((m) => m.topic.slice(base.length))
        .sort(),
      ['/availability', '/gpio/17', '/problems', '/settings', '/snapshot', '/state', '/stats'],
      'a late subscriber gets every retained topic',
    );
    // The late subscriber asked for QoS 1: a retained topic stored at QoS 0 would come at 0.
    t.same(
      late.messages.filter((m) => m.retain && m.qos < 1).map((m) => `${m.topic.slice(base.length)} q${m.qos}`),
      [],
      'every retained topic at QoS ≥ 1',
    );
    // prediction_interval_ms is 0 here: the expiry is the documented least one (the broker counts it down in whole seconds, delivering at once).
    const documented = /expires after max\((\d+) s, 2 × prediction_interval_ms\)/.exec(
      JSON.parse(await readFile(path.join(repoRoot, 'schemas', 'prediction.schema.json'), 'utf8')).description,
    );
    t.ok(documented, 'the prediction schema states the expiry');
    t.equal(rec.on(`${base}/prediction`)[0]!.properties?.messageExpiryInterval, Number(documented?.[1]), 'predictions expire (MQTT 5) as documented');
  });

  t.test('stats: frames, timings, engine, model, uptime, memory, MQTT counters', async (t) => {
    await b.frame(CAT);
    const s = json(await classifiedStats(2)) as unknown as StatsPayload;
    assertPayload(t, 'stats', s);
    t.same(s.frames, { in: 2, classified: 2, dropped: 0, bad: 0, failed: 0 });
    t.match(s, { model: 'mobilenet_v2_1.0_224_quant', engine: 'tflite', delegate: 'cpu', threads: 1, paused: false, source: 'array test source' });
    const { p50, p95 } = s.inference_ms;
    t.ok(p50 !== null && p95 !== null && p50 > 1 && p95 >= p50, `inference p50 ${p50} ms, p95 ${p95} ms`);
    t.ok((s.preprocess_ms.p50 ?? 0) > 0, `preprocess p50 ${s.preprocess_ms.p50} ms`);
    t.ok(s.uptime_s > 0 && s.system.rss_bytes > 50e6, `uptime ${s.uptime_s} s, RSS ${s.system.rss_bytes} bytes`);
    t.equal(s.mqtt.protocol, '5');
    t.ok(s.mqtt.published >= 4);
    t.equal(s.instance.pid, process.pid);
  });

  t.test('Home Assistant: discovery valid, its templates render on the real payloads, re-published on online', async (t) => {
    const objectId = `edge_classifier_0123456789ab_${createHash('sha256').update(base).digest('hex').slice(0, 6)}`;
    const first = await ha.waitFor((m) => m.topic === `${prefix}/device/${objectId}/config`, 5000, 'discovery');
    const d = json(first) as { cmps: Record<string, Record<string, string>>; dev: Record<string, unknown>; availability_topic: string };
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
    t.match(d.dev, { mf: 'edge-classifier', mdl: 'mobilenet_v2_1.0_224_quant', ids: [objectId] });
    t.equal(d.availability_topic, `${base}/availability`);
    // Rendered by Jinja2 (Home Assistant's template engine) on what the daemon published last: the cat state, stats of 2 frames.
    const stats = await classifiedStats(2);
    const latest = (topic: string) => rec.on(topic).at(-1)!.payload;
    const items = Object.entries(d.cmps).flatMap(([id, c]) =>
      (['value_template', 'json_attributes_template'] as const)
        .filter((k) => c[k] !== undefined)
        .map((k) => ({ id, k, template: c[k]!, payload: latest(k === 'value_template' ? c.state_topic! : c.json_attributes_topic!) })),
    );
    const rendered = renderTemplates(items);
    const by = Object.fromEntries(items.map((it, i) => [`${it.id}.${it.k}`, rendered[i]]));
    const s = json(stats) as unknown as StatsPayload;
    t.same(
      {
        top: by['top_label.value_template'],
        watch: by['watch_egyptian_cat.value_template'],
        inference: by['inference_ms.value_template'],
        fps: by['classified_fps.value_template'],
        temperature: by['cpu_temperature.value_template'],
        problems: by['problems.value_template'],
        threshold: by['threshold.value_template'],
        paused: by['paused.value_template'],
      },
      {
        top: 'Egyptian cat',
        watch: 'ON',
        inference: String(s.inference_ms.p50),
        fps: String(s.fps.classified),
        // Without a thermal zone (this machine) 'None' is what Home Assistant shows as unknown.
        temperature: s.system.cpu_temperature_c === null ? 'None' : String(s.system.cpu_temperature_c),
        problems: '0',
        threshold: '0.1',
        paused: 'false',
      },
    );
    const attributes = JSON.parse(String(by['top_label.json_attributes_template'])) as { top_k: { label: string }[] };
    t.equal(attributes.top_k[0]!.label, 'Egyptian cat', 'top-k scores as attributes');
    t.same(JSON.parse(String(by['problems.json_attributes_template'])), { problems: [] });
    const unknown = rec.on(`${base}/state`)[0]!.payload;
    t.same(
      renderTemplates([
        { template: d.cmps.top_label!.value_template!, payload: unknown },
        { template: d.cmps.watch_egyptian_cat!.value_template!, payload: unknown },
      ]),
      ['None', 'None'],
      'the unknown state is unknown in Home Assistant',
    );
    ha.clear();
    await client.publishAsync(`${prefix}/status`, 'online', { qos: 1 });
    const again = await ha.waitFor((m) => m.topic === first.topic, 5000, 'discovery again');
    t.equal(again.payload, first.payload, 'the same payload');
  });

  t.test('commands: each setting live, refusals with the config file messages, nothing changed on a refusal', async (t) => {
    const ask = async (topic: string, payload: string) => {
      const name = topic.replace(/^request\//, '');
      const before = rec.on(`${base}/response/${name}`).length;
      await client.publishAsync(`${base}/${topic}`, payload, { qos: 1 });
      const r = await rec.waitFor((m) => m.topic === `${base}/response/${name}` && rec.on(m.topic).indexOf(m) >= before, 5000, `response to ${topic}`);
      assertPayload(t, 'response', json(r));
      return json(r);
    };
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
    t.ok((json(rec.on(`${base}/prediction`).at(-1)!).classes as unknown[]).length <= 2, 'top_k 2 in force');
    // Retained commands are refused (MQTT 5: retain as published): no response, nothing changes.
    await client.publishAsync(`${base}/set/threshold`, '0.9', { qos: 1, retain: true });
    await sleep(500);
    t.equal(settings().threshold, 0.4);
    t.ok(b.lines.some((l) => typeof l.msg === 'string' && l.msg.includes(`retained message on ${base}/set/threshold ignored`)));
    await client.publishAsync(`${base}/set/threshold`, '', { qos: 1, retain: true });
    const cfg = await ask('request/get_config', '{"id":"c1"}');
    t.match(cfg, { command: 'get_config', id: 'c1', ok: true, result: { inference: { threshold: 0.4, top_k: 2 }, mqtt: { password: null } } });
    const snap = await ask('request/snapshot', '');
    t.match(snap, { ok: true, result: { seq: 3 } });
    t.ok((snap.result as { bytes: number }).bytes > 1000);
    const now = await ask('request/classify_now', '{}');
    t.match(now, { ok: true, result: { seq: 3, classes: [{ label: HOTDOG_LABEL }] } });
    assertPayload(t, 'prediction', now.result);
    t.match(await ask('request/reload', '{}'), { ok: false, error: /reload is not available here/ });
  });

  t.test('MQTT 5 requests: the response goes to the response topic with the correlation data', async (t) => {
    const replies = await recordMqtt(t, broker.url, `app-${process.pid}/replies/#`, { protocolVersion: 5 });
    await client.publishAsync(`${base}/request/get_config`, '{}', {
      qos: 1,
      properties: { responseTopic: `app-${process.pid}/replies/1`, correlationData: Buffer.from('corr-42'), userProperties: { client_id: 'dashboard-3' } },
    });
    const r = await replies.waitFor(() => true, 5000, 'the reply');
    t.equal(r.topic, `app-${process.pid}/replies/1`);
    t.equal(Buffer.from(r.properties?.correlationData as Buffer).toString(), 'corr-42');
    t.match(json(r), { command: 'get_config', ok: true });
    t.ok(
      b.lines.some((l) => l.msg === 'request get_config from dashboard-3'),
      'the sender named by its user property',
    );
  });

  t.test('pause: frames dropped and counted, outputs off; resume', async (t) => {
    await client.publishAsync(`${base}/set/gpio/17/min_score`, '0.5', { qos: 1 });
    await rec.waitFor((m) => m.topic === `${base}/gpio/17` && m.payload === '1', 5000, 'relay on (the hot dog)');
    await client.publishAsync(`${base}/set/paused`, 'true', { qos: 1 });
    await rec.waitFor((m) => m.topic === `${base}/settings` && json(m).paused === true, 5000, 'paused');
    await rec.waitFor((m) => m.topic === `${base}/gpio/17` && m.payload === '0', 5000, 'relay off while paused');
    const predictions = rec.on(`${base}/prediction`).length;
    b.source.push(HOTDOG);
    b.source.push(HOTDOG);
    await sleep(600);
    t.equal(rec.on(`${base}/prediction`).length, predictions, 'no prediction while paused');
    const stats = await rec.waitFor(
      (m) => m.topic === `${base}/stats` && json(m).paused === true && (json(m).frames as { in: number }).in === 5,
      5000,
      'stats while paused',
    );
    t.match(json(stats), { frames: { in: 5, classified: 3, dropped: 2 } });
    await client.publishAsync(`${base}/set/paused`, 'false', { qos: 1 });
    await rec.waitFor((m) => m.topic === `${base}/settings` && json(m).paused === false, 5000, 'resumed');
    b.source.push(HOTDOG);
    await rec.waitFor((m) => m.topic === `${base}/prediction` && json(m).seq === 6, 10_000, 'a prediction after resuming');
  });

  t.test('persist: a live setting written into the config file, comments kept', async (t) => {
    await client.publishAsync(`${base}/set`, '{"threshold":0.35,"state":{"min_frames":3},"persist":true}', { qos: 1 });
    const r = await rec.waitFor(
      (m) => m.topic === `${base}/response/set` && json(m).ok === true && (json(m).result as { persisted: boolean }).persisted,
      5000,
      'response',
    );
    t.ok(r);
    t.equal(await readFile(configFile, 'utf8'), '# front door\ninference:\n  threshold: 0.35 # low on purpose\nstate:\n  min_frames: 3\n');
    await client.publishAsync(`${base}/set/paused`, '{"value":true,"persist":true,"id":"p"}', { qos: 1 });
    const r2 = await rec.waitFor((m) => m.topic === `${base}/response/set/paused` && json(m).id === 'p', 5000, 'response');
    t.match(json(r2), { ok: false, error: /paused is not a config key/ });
  });

  t.test('a command flood is rate-limited and counted; the daemon keeps running', async (t) => {
    for (let i = 0; i < 80; i++) client.publish(`${base}/request/get_config`, '{}', { qos: 0 });
    const stats = await rec.waitFor(
      (m) => m.topic === `${base}/stats` && (json(m).mqtt as { commands_rate_limited: number }).commands_rate_limited > 0,
      10_000,
      'stats counting the flood',
    );
    const mq = json(stats).mqtt as Record<string, number>;
    t.ok(mq.commands_rate_limited! >= 40, `rate-limited ${mq.commands_rate_limited} of 80 (5 per second, bursts of 20)`);
    const problems = await rec.waitFor((m) => m.topic === `${base}/problems` && JSON.stringify(json(m)).includes('commands_flood'), 5000, 'the flood problem');
    t.match((json(problems).problems as unknown[])[0], { id: 'commands_flood', severity: 'warning' });
    await sleep(1500);
    b.source.push(CAT);
    await rec.waitFor((m) => m.topic === `${base}/prediction` && json(m).seq === 7, 10_000, 'still classifying');
  });

  t.test('every payload published in this run matches its JSON Schema', async (t) => {
    validateAll(t, rec, base);
  });
});
