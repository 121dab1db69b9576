import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { silentLogger } from '../../src/core/log.js';
import { ProblemRegistry } from '../../src/core/problems.js';
import type { IncomingMessage } from '../../src/mqtt/commands.js';
import { MqttPublisher, type MqttPublisherOptions } from '../../src/mqtt/publisher.js';
import type { Prediction, SettingsPayload, StatsPayload } from '../../src/mqtt/topics.js';
import { startAedes, type TestBroker } from '../helpers/aedes.js';
import { freePort, startMosquitto, tempDir, writePasswordFile } from '../helpers/mosquitto.js';
import { recordMqtt } from '../helpers/mqtt-recorder.js';
import { capturingLogger } from '../helpers/recording.js';

const here = path.dirname(fileURLToPath(import.meta.url));
let n = 0;
const uniqueBase = (): string => `edge-classifier/test-${process.pid}-${++n}`;

function prediction(seq: number): Prediction {
  return {
    seq,
    source: 'replay test',
    model: 'mobilenet_v2_1.0_224_quant',
    classes: [{ index: 286, label: 'Egyptian cat', score: 0.75390625 }],
    timings: { preprocess_ms: 4, inference_ms: 45, postprocess_ms: 0.1, total_ms: 50 },
    dropped: 0,
  };
}

function publisher(t: Test, url: string, baseTopic: string, extra: Partial<MqttPublisherOptions> = {}): MqttPublisher {
  const p = new MqttPublisher({
    url,
    baseTopic,
    clientId: `test-${process.pid}-${++n}`,
    keepalive: 30,
    qos: 0,
    predictionMinIntervalMs: 0,
    reconnectPeriodMs: 100,
    connectTimeoutMs: 3000,
    log: silentLogger(),
    ...extra,
  });
  t.teardown(() => p.stop());
  return p;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

t.test('constructor validates options', async (t) => {
  const log = silentLogger();
  const ok = {
    url: 'mqtt://127.0.0.1:1883',
    clientId: 'x',
    baseTopic: 'a/b',
    keepalive: 30,
    qos: 0 as const,
    predictionMinIntervalMs: 0,
    reconnectPeriodMs: 100,
    connectTimeoutMs: 1000,
    log,
  };
  t.throws(() => new MqttPublisher({ ...ok, url: 'localhost:1883' }), /MQTT broker URL 'localhost:1883' has protocol 'localhost:': expected mqtt:/);
  t.throws(() => new MqttPublisher({ ...ok, url: 'broker' }), /MQTT broker URL 'broker' is not a URL/);
  const err = (() => {
    try {
      new MqttPublisher({ ...ok, url: 'http://user:secret@host' });
    } catch (e) {
      return (e as Error).message;
    }
    return 'no error';
  })();
  t.equal(err, "MQTT broker URL 'http://user:***@host' has protocol 'http:': expected mqtt:, mqtts:, ws: or wss: (also tcp:, tls:, ssl:)");
  t.throws(() => new MqttPublisher({ ...ok, baseTopic: 'a/#' }), /base topic "a\/#" contains a wildcard/);
  t.throws(() => new MqttPublisher({ ...ok, clientId: '' }), { message: 'MQTT client id: expected e.g. edge-classifier-<device id>, but received ""' });
  t.throws(() => new MqttPublisher({ ...ok, maxInFlight: 0 }), { message: 'MQTT option maxInFlight: expected a positive number, but received 0' });
  // qos, keepalive, the intervals and timeouts are bounded by the configuration schema (test/config/load.test.ts).
});

/** One behavioural suite, two brokers: Debian's mosquitto and the embedded aedes the daemon ships. */
const BROKERS: Record<string, (t: Test, port?: number) => Promise<TestBroker>> = {
  mosquitto: (t, port) => startMosquitto(t, port),
  aedes: (t, port) => startAedes(t, port),
};

for (const [name, startBroker] of Object.entries(BROKERS))
  t.test(`against ${name}`, async (t) => {
    const broker = await startBroker(t);

    t.test('online retained on connect, state and gpio retained, offline on clean stop', async (t) => {
      const base = uniqueBase();
      const pub = publisher(t, broker.url, base, { qos: 1 });
      await pub.start();
      t.equal(pub.connected, true);
      pub.publishState({
        status: 'detected' as const,
        label: 'Egyptian cat',
        index: 286,
        score: 0.754,
        since: '2026-11-29T20:00:00.000Z',
        time: '2026-11-29T20:00:00.000Z',
        classes: [],
      });
      pub.publishGpio(17, 1);
      t.equal(pub.publishPrediction(prediction(1)), true);
      await until('3 messages confirmed', () => pub.stats().published >= 4);

      // A subscriber that arrives later gets the retained ones, not the prediction.
      const late = await recordMqtt(t, broker.url, `${base}/#`);
      const online = await late.waitFor((m) => m.topic === `${base}/availability`);
      t.same([online.payload, online.retain], ['online', true]);
      const state = await late.waitFor((m) => m.topic === `${base}/state`);
      t.equal(state.retain, true);
      t.same(JSON.parse(state.payload), {
        status: 'detected',
        label: 'Egyptian cat',
        index: 286,
        score: 0.754,
        since: '2026-11-29T20:00:00.000Z',
        time: '2026-11-29T20:00:00.000Z',
        classes: [],
      });
      const gpio = await late.waitFor((m) => m.topic === `${base}/gpio/17`);
      t.same([gpio.payload, gpio.retain], ['1', true]);
      t.same(late.on(`${base}/prediction`), [], 'predictions are not retained');

      await pub.stop();
      const offline = await late.waitFor((m) => m.topic === `${base}/availability` && m.payload === 'offline');
      t.equal(offline.qos, 1);
      t.equal(pub.connected, false);
      await pub.stop(); // idempotent
      const after = await recordMqtt(t, broker.url, `${base}/availability`);
      const retained = await after.waitFor(() => true);
      t.same([retained.payload, retained.retain], ['offline', true], 'offline stays retained after a clean stop');
      t.equal(pub.publishPrediction(prediction(2)), false, 'nothing is published after stop');
    });

    t.test('predictions: JSON on <base>/prediction, rate limit drops and counts', async (t) => {
      const base = uniqueBase();
      const rec = await recordMqtt(t, broker.url, `${base}/prediction`);
      const pub = publisher(t, broker.url, base, { predictionMinIntervalMs: 200 });
      await pub.start();
      const sent: boolean[] = [];
      for (let i = 1; i <= 5; i++) sent.push(pub.publishPrediction(prediction(i)));
      t.same(sent, [true, false, false, false, false], 'only the first of a burst within 200 ms');
      await sleep(230);
      t.equal(pub.publishPrediction(prediction(6)), true, 'allowed again after the interval');
      await until('2 predictions', () => rec.messages.length >= 2);
      t.same(
        rec.messages.map((m) => JSON.parse(m.payload).seq),
        [1, 6],
      );
      const first = JSON.parse(rec.messages[0]!.payload);
      t.same(first.classes, [{ index: 286, label: 'Egyptian cat', score: 0.7539 }]);
      t.equal(first.model, 'mobilenet_v2_1.0_224_quant');
      t.match(first.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      t.equal(rec.messages[0]!.retain, false);
      t.equal(pub.stats().droppedRateLimited, 4);
    });

    t.test('maxInFlight bounds unconfirmed messages: extra predictions are dropped and counted', async (t) => {
      const base = uniqueBase();
      const rec = await recordMqtt(t, broker.url, `${base}/prediction`);
      const pub = publisher(t, broker.url, base, { qos: 1, maxInFlight: 1 });
      await pub.start();
      await until('online acknowledged', () => pub.stats().published >= 1);
      // PUBACKs arrive asynchronously, so within one tick only the first is in flight.
      t.same(
        [1, 2, 3].map((i) => pub.publishPrediction(prediction(i))),
        [true, false, false],
      );
      t.equal(pub.stats().droppedBackpressure, 2);
      await rec.waitFor(() => true);
      await until('PUBACK', () => pub.stats().published >= 2);
      t.equal(pub.publishPrediction(prediction(4)), true, 'accepted again once acknowledged');
      await until('second prediction', () => rec.messages.length >= 2);
      t.same(
        rec.messages.map((m) => [JSON.parse(m.payload).seq, m.qos]),
        [
          [1, 1],
          [4, 1],
        ],
      );
    });

    t.test('maxInFlight: a retained value set at the bound is sent once an acknowledgement makes room', async (t) => {
      const base = uniqueBase();
      const pub = publisher(t, broker.url, base, { qos: 1, maxInFlight: 1 });
      await pub.start();
      await until('online acknowledged', () => pub.stats().published >= 1);
      const rec = await recordMqtt(t, broker.url, `${base}/#`);
      t.equal(pub.publishPrediction(prediction(1)), true, 'the prediction takes the one slot');
      pub.publishGpio(17, 1);
      const gpio = await rec.waitFor((m) => m.topic === `${base}/gpio/17`, 3000, 'gpio/17 after the PUBACK of the prediction');
      t.equal(gpio.payload, '1');
      t.same(
        rec.messages.filter((m) => !m.retain).map((m) => m.topic.slice(base.length)),
        ['/prediction', '/gpio/17'],
      );
    });

    t.test('last will: offline when the client dies without DISCONNECT', async (t) => {
      const base = uniqueBase();
      const rec = await recordMqtt(t, broker.url, `${base}/availability`);
      const loader = process.execArgv.filter((a) => a.includes('typescript'));
      const child = spawn(
        process.execPath,
        [...(loader.length > 0 ? loader : process.execArgv), path.join(here, 'fixtures', 'publisher-child.ts'), broker.url, base],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      t.teardown(() => {
        if (child.exitCode === null) child.kill('SIGKILL');
      });
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const [line] = (await Promise.race([
        once(child.stdout!, 'data'),
        once(child, 'exit').then(() => {
          throw new Error(`publisher child exited: ${stderr}`);
        }),
      ])) as [Buffer];
      t.equal(line.toString().trim(), 'connected');
      await rec.waitFor((m) => m.payload === 'online', 5000, 'online from the child');
      child.kill('SIGKILL');
      const will = await rec.waitFor((m) => m.payload === 'offline', 5000, 'the last will');
      t.equal(will.topic, `${base}/availability`);
      const later = await recordMqtt(t, broker.url, `${base}/availability`);
      const retained = await later.waitFor(() => true);
      t.same([retained.payload, retained.retain], ['offline', true], 'the last will is retained');
    });

    t.test('broker restart: predictions dropped while offline, latest state and gpio sent on reconnect, online again', async (t) => {
      const restartable = await startBroker(t);
      const base = uniqueBase();
      const pub = publisher(t, restartable.url, base, { qos: 1 });
      await pub.start();
      const rec = await recordMqtt(t, restartable.url, `${base}/#`);
      await rec.waitFor((m) => m.topic === `${base}/availability` && m.payload === 'online');
      pub.publishGpio(4, 1);
      await rec.waitFor((m) => m.topic === `${base}/gpio/4`);

      await restartable.stop();
      await until('publisher to notice the disconnect', () => !pub.connected);
      for (let i = 1; i <= 7; i++) t.equal(pub.publishPrediction(prediction(i)), false);
      t.equal(pub.stats().droppedOffline, 7, 'dropped predictions are counted');
      const s = (label: string) => ({
        status: 'detected' as const,
        label,
        index: 1,
        score: 0.9,
        since: '2026-11-29T20:00:00.000Z',
        time: '2026-11-29T20:00:00.000Z',
        classes: [],
      });
      pub.publishState(s('goldfish, Carassius auratus'));
      pub.publishState(s('tench, Tinca tinca'));
      pub.publishGpio(4, 0);
      pub.publishGpio(17, 1);

      rec.clear();
      await restartable.start();
      await until('publisher to reconnect', () => pub.connected, 5000);
      t.equal(pub.stats().reconnects, 1);
      const online = await rec.waitFor((m) => m.topic === `${base}/availability` && m.payload === 'online', 5000, 'online after reconnect');
      t.ok(online);
      await rec.waitFor((m) => m.topic === `${base}/gpio/17`, 5000, 'gpio/17 after reconnect');
      await sleep(200);
      t.same(
        rec.on(`${base}/state`).map((m) => JSON.parse(m.payload).label),
        ['tench, Tinca tinca'],
        'only the latest state made while offline is sent',
      );
      t.same(
        rec.on(`${base}/gpio/4`).map((m) => m.payload),
        ['0'],
      );
      t.same(rec.on(`${base}/prediction`), [], 'no prediction from the offline period arrives');

      // The restarted broker had lost every retained message; they are back.
      const fresh = await recordMqtt(t, restartable.url, `${base}/#`);
      await fresh.waitFor((m) => m.topic === `${base}/gpio/17`);
      t.same(
        fresh.messages
          .filter((m) => m.retain)
          .map((m) => `${m.topic.slice(base.length)}=${m.payload.startsWith('{') ? JSON.parse(m.payload).label : m.payload}`)
          .sort(),
        ['/availability=online', '/gpio/17=1', '/gpio/4=0', '/state=tench, Tinca tinca'],
      );
    });

    t.test('waitForConnect false: start resolves offline and connects when the broker appears', async (t) => {
      const port = await freePort();
      const base = uniqueBase();
      const pub = publisher(t, `mqtt://127.0.0.1:${port}`, base, { waitForConnect: false });
      await pub.start();
      t.equal(pub.connected, false);
      pub.publishState({
        status: 'detected' as const,
        label: 'Egyptian cat',
        index: 286,
        score: 0.7,
        since: '2026-11-29T20:00:00.000Z',
        time: '2026-11-29T20:00:00.000Z',
        classes: [],
      });
      t.equal(pub.publishPrediction(prediction(1)), false);
      const late = await startBroker(t, port);
      await until('publisher to connect', () => pub.connected, 5000);
      t.equal(pub.stats().reconnects, 0, 'the first connection is not a reconnect');
      const rec = await recordMqtt(t, late.url, `${base}/state`);
      const state = await rec.waitFor(() => true);
      t.equal(JSON.parse(state.payload).label, 'Egyptian cat');
    });

    t.test('protocol: MQTT 5 where the broker speaks it, else 3.1.1 (auto)', async (t) => {
      const pub = publisher(t, broker.url, uniqueBase());
      await pub.start();
      t.equal(pub.stats().protocol, name === 'mosquitto' ? '5' : '3.1.1');
    });

    t.test('every retained topic is back after a broker restart, after online; nothing else is', async (t) => {
      const restartable = await startBroker(t);
      const base = uniqueBase();
      const pub = publisher(t, restartable.url, base, { qos: 1 });
      const discoveryTopic = `homeassistant-test-${n}/device/x/config`;
      await pub.publishExternalRetained(discoveryTopic, '{"dev":{}}');
      pub.publishStats({ time: 't' } as unknown as StatsPayload);
      pub.publishProblems({ time: 't', problems: [] });
      pub.publishSettings({ time: 't' } as unknown as SettingsPayload);
      pub.publishSnapshot(Buffer.from([0xff, 0xd8, 0xff, 0xd9]), { time: new Date(0), seq: 3, label: 'Egyptian cat' });
      pub.publishGpio(17, 1);
      await pub.start();
      await restartable.stop();
      await until('the publisher to notice', () => !pub.connected);
      pub.publishProblems({ time: 't2', problems: [{ id: 'source_stalled', message: 'm', hint: 'h', severity: 'error', since: 's' }] });
      await restartable.start();
      await until('reconnect', () => pub.connected, 5000);
      const rec = await recordMqtt(t, restartable.url, '#');
      await rec.waitFor((m) => m.topic === `${base}/gpio/17`, 5000, 'the last retained topic');
      t.same(
        rec.messages
          .filter((m) => m.retain)
          .map((m) => m.topic.replace(base, '<base>'))
          .sort(),
        ['<base>/availability', discoveryTopic, '<base>/stats', '<base>/problems', '<base>/settings', '<base>/snapshot', '<base>/gpio/17'].sort(),
        'availability, discovery, stats, problems, settings, snapshot and gpio',
      );
      t.equal(JSON.parse(rec.on(`${base}/problems`)[0]!.payload).time, 't2', 'the latest problems');
      t.same([...rec.on(`${base}/snapshot`)[0]!.bytes], [0xff, 0xd8, 0xff, 0xd9], 'snapshot bytes as published');
      await pub.publishExternalRetained(discoveryTopic, '');
      const after = await recordMqtt(t, restartable.url, '#');
      await after.waitFor((m) => m.topic === `${base}/gpio/17`);
      t.same(after.on(discoveryTopic), [], 'an empty payload removes the discovery message');
    });

    t.test('subscriptions: messages reach onMessage with their retain flag; responses go to the reply topic', async (t) => {
      const base = uniqueBase();
      const got: IncomingMessage[] = [];
      const topic = `${base}/request/get_config`;
      const sender = await recordMqtt(t, broker.url, `${base}/response/#`);
      await sender.client.publishAsync(`${base}/set/threshold`, '0.9', { retain: true, qos: 1 });
      const pub = publisher(t, broker.url, base, { subscriptions: [topic, `${base}/set/threshold`], onMessage: (m) => got.push(m) });
      await pub.start();
      await until('the retained command', () => got.length >= 1);
      t.match(got[0], { topic: `${base}/set/threshold`, retain: true }, 'a retained command is marked so');
      await sender.client.publishAsync(topic, '{"id":1}', { qos: 1 });
      await until('the command', () => got.length >= 2);
      t.match(got[1], { topic, retain: false });
      t.equal(got[1]!.payload.toString(), '{"id":1}');
      pub.respond({ topic: `${base}/response/get_config` }, { command: 'get_config', id: 1, ok: true, result: {}, time: 't' });
      const r = await sender.waitFor((m) => m.topic === `${base}/response/get_config`);
      t.same([JSON.parse(r.payload).id, r.retain], [1, false]);
      t.throws(() => publisher(t, broker.url, base, { subscriptions: [`${base}/set/#`] }), /contains a wildcard/, 'never a wildcard subscription');
    });
  });

t.test('after a broker restart nothing is sent before online: the problem list the reconnect clears follows it, once', async (t) => {
  // Mosquitto logs every PUBLISH it receives, in order: what the publisher sent, whoever subscribed when.
  const broker = await startMosquitto(t, { config: ['allow_anonymous true', 'log_type all'] });
  const base = uniqueBase();
  const clientId = `test-order-${process.pid}-${++n}`;
  const problems = new ProblemRegistry();
  // Predictions at QoS 0: retained topics still go at QoS 1.
  const pub = publisher(t, broker.url, base, { qos: 0, problems, clientId });
  // Wired as the daemon wires it.
  pub.publishProblems({ time: new Date().toISOString(), problems: problems.list() });
  problems.onChange((list) => pub.publishProblems({ time: new Date().toISOString(), problems: list }));
  await pub.start();
  pub.publishGpio(4, 1);
  await until('gpio acknowledged', () => pub.stats().published >= 3);

  await broker.stop();
  await until('broker_unreachable raised', () => problems.has('broker_unreachable'), 5000);
  pub.publishGpio(4, 0);
  const before = broker.output.length;
  await broker.start();
  await until('publisher to reconnect', () => pub.connected && !problems.has('broker_unreachable'), 5000);
  await until('gpio/4 after the restart', () => broker.output.slice(before).includes(`'${base}/gpio/4'`), 3000);
  await sleep(200);
  const received = [...broker.output.slice(before).matchAll(/Received PUBLISH from (\S+) \(d\d, q(\d), r(\d), m\d+, '([^']+)'/g)]
    .filter((m) => m[1] === clientId)
    .map((m) => `${m[4]!.slice(base.length)} q${m[2]} r${m[3]}`);
  t.same(received, ['/availability q1 r1', '/problems q1 r1', '/gpio/4 q1 r1'], 'online first, then each retained topic once, at QoS 1');
  t.same(problems.list(), [], 'broker_unreachable cleared');
});

t.test('start() rejects after connectTimeout naming the URL', async (t) => {
  const port = await freePort();
  const pub = publisher(t, `mqtt://user:secret@127.0.0.1:${port}`, uniqueBase(), { connectTimeoutMs: 400 });
  const started = Date.now();
  const message = await pub.start().then(
    () => 'resolved',
    (err: Error) => err.message,
  );
  t.equal(
    message,
    `cannot connect to MQTT broker mqtt://user:***@127.0.0.1:${port} within 400 ms: nothing listens there (connect ECONNREFUSED 127.0.0.1:${port}) ` +
      '(start the broker, or check the host and port of mqtt.url)',
  );
  t.ok(Date.now() - started < 2000);
  t.equal(pub.connected, false);
});

t.test('start() names an unreadable TLS file', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'edge-tls-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const missing = path.join(dir, 'ca.pem');
  const pub = publisher(t, 'mqtts://127.0.0.1:8883', uniqueBase(), { tls: { ca: missing } });
  await t.rejects(pub.start(), { message: `mqtt.tls.ca: cannot read the PEM file ${missing}: no such file` });
});

t.test('stop() returns at once when the broker is unreachable', async (t) => {
  const port = await freePort();
  const pub = publisher(t, `mqtt://127.0.0.1:${port}`, uniqueBase(), { waitForConnect: false, stopTimeoutMs: 5000 });
  await pub.start();
  await sleep(150);
  const started = Date.now();
  await pub.stop();
  t.ok(Date.now() - started < 500, `stopped in ${Date.now() - started} ms`);
  t.same(pub.stats(), {
    connected: false,
    protocol: '5',
    published: 0,
    droppedOffline: 0,
    droppedRateLimited: 0,
    droppedBackpressure: 0,
    discardedOnDisconnect: 0,
    reconnects: 0,
  });
});

t.test('broker refuses the credentials: retries every reconnectPeriodMs, warns once with a hint, connects once the password file is fixed', async (t) => {
  const passwords = path.join(await tempDir(t), 'passwd');
  await writePasswordFile(passwords, { edge: 'old-secret', recorder: 'rec-secret' });
  const broker = await startMosquitto(t, { config: ['allow_anonymous false', `password_file ${passwords}`] });
  const refusals = (): number => broker.output.split('disconnected, not authorised.').length - 1;
  const { log, lines } = capturingLogger('debug');
  const base = uniqueBase();
  const pub = publisher(t, broker.url, base, { username: 'edge', password: 'new-secret', reconnectPeriodMs: 200, waitForConnect: false, log });
  await pub.start();

  await until('the publisher to be refused 4 times', () => refusals() >= 4, 5000);
  t.equal(pub.connected, false);
  const refused = lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith(`MQTT broker ${broker.url}: the connection was refused`));
  t.ok(refused.length >= 4, `every refusal is logged (${refused.length})`);
  const warnings = refused.filter((l) => l.level === 40);
  t.equal(warnings.length, 1, 'one warning for one reason; the retries at debug');
  t.equal(
    warnings[0]?.msg,
    `MQTT broker ${broker.url}: the connection was refused (Connection refused: Not authorized): ` +
      "check mqtt.username / EDGE_CLASSIFIER_MQTT_PASSWORD (or mqtt.password) against the broker's users; retrying every 200 ms",
  );
  // MQTT 5 reason code 0x87 "Not authorized" (3.1.1 would say 5).
  t.match(warnings[0], { username: 'edge', code: 0x87, err: 'Connection refused: Not authorized' });
  t.notOk(JSON.stringify(lines).includes('new-secret'), 'the password is never logged');

  // The user fixes the password file and reloads the broker; no restart of the publisher.
  await writePasswordFile(passwords, { edge: 'new-secret', recorder: 'rec-secret' });
  await broker.reload();
  const reloadedAt = Date.now();
  await until('the publisher to connect', () => pub.connected, 3000);
  t.ok(Date.now() - reloadedAt < 1500, `connected ${Date.now() - reloadedAt} ms after the reload (reconnectPeriodMs 200)`);
  t.equal(pub.stats().reconnects, 0, 'the first successful connection');
  const rec = await recordMqtt(t, `mqtt://recorder:rec-secret@127.0.0.1:${broker.port}`, `${base}/availability`);
  const online = await rec.waitFor(() => true);
  t.same([online.payload, online.retain], ['online', true]);

  // start() with waitForConnect keeps retrying until connectTimeoutMs, then names the refusal with its hint
  // (here for a publisher without user name, refused as anonymous).
  const waiting = publisher(t, broker.url, uniqueBase(), { reconnectPeriodMs: 100, connectTimeoutMs: 700 });
  const before = refusals();
  const message = await waiting.start().then(
    () => 'resolved',
    (err: Error) => err.message,
  );
  t.equal(
    message,
    `cannot connect to MQTT broker ${broker.url} within 700 ms: the connection was refused (Connection refused: Not authorized) ` +
      '(no mqtt.username is set and the broker may require one: set mqtt.username and EDGE_CLASSIFIER_MQTT_PASSWORD (or mqtt.password))',
  );
  t.ok(refusals() - before >= 3, `retried while waiting (${refusals() - before} attempts)`);
});

t.test('two publishers with the same client id: a warning naming the client id, then ever longer waits, and a problem', async (t) => {
  const broker = await startMosquitto(t);
  const clientId = `edge-classifier-twin-${process.pid}`;
  const a = capturingLogger('info');
  const b = capturingLogger('info');
  const problems = new ProblemRegistry();
  const about = (lines: Array<Record<string, unknown>>) => lines.filter((l) => typeof l.msg === 'string' && l.msg.includes(`uses the client id '${clientId}'`));
  const first = publisher(t, broker.url, uniqueBase(), { clientId, log: a.log, problems });
  await first.start();
  const second = publisher(t, broker.url, uniqueBase(), { clientId, log: b.log });
  await second.start();
  await until('a duplicate client id warning', () => about(a.lines).length + about(b.lines).length > 0, 10_000);
  const taken = (): number => broker.output.split(`Client ${clientId} already connected, closing old connection.`).length - 1;
  // Without backoff the two would take over every ~100 ms (reconnectPeriodMs): ~40 times in 4 s.
  await sleep(4000);
  const before = taken();
  await sleep(4000);
  const later = taken() - before;
  t.ok(later < 10, `${later} take-overs in the 4 s after the first 4 s of backoff`);
  for (const [name, lines] of [
    ['first', a.lines],
    ['second', b.lines],
  ] as const) {
    const steps = about(lines);
    t.ok(steps.filter((l) => l.level === 40).length <= 1, `${name}: one warning, the longer waits at info`);
    const waits = steps.map((l) => l.backoff_ms as number);
    t.same(
      waits,
      [...waits].sort((x, y) => x - y),
      `${name}: the waits grow (${waits.join(', ')} ms)`,
    );
  }
  const [w] = [...about(a.lines), ...about(b.lines)].filter((l) => l.level === 40);
  t.match(w?.msg, `the MQTT broker closed the connection soon after connecting 3 times in a row: another client uses the client id '${clientId}'`);
  t.match(w, { client_id: clientId, url: broker.url, backoff_ms: 200 });
  await until('the problem to be raised', () => problems.has('client_id_conflict'), 10_000);
  t.match(problems.list()[0], { id: 'client_id_conflict', severity: 'error', hint: /set mqtt\.client_id/ });
});

t.test('two broker restarts in a row do not make a duplicate client id warning (it takes 3 short connections)', async (t) => {
  const broker = await startMosquitto(t);
  const { log, lines } = capturingLogger();
  const pub = publisher(t, broker.url, uniqueBase(), { log, reconnectPeriodMs: 50 });
  await pub.start();
  for (let i = 0; i < 2; i++) {
    await broker.stop();
    await until('the publisher to notice the disconnect', () => !pub.connected);
    await broker.start();
    await until('the publisher to reconnect', () => pub.connected);
  }
  t.equal(pub.stats().reconnects, 2);
  const warnings = lines.filter((l) => l.level === 40).map((l) => String(l.msg));
  t.equal(warnings.filter((m) => m === 'MQTT broker disconnected: reconnecting').length, 2, 'each disconnect is logged');
  t.same(
    warnings.filter((m) => m.includes('client id')),
    [],
    'no duplicate client id warning',
  );
});
