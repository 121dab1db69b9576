import t from 'tap';
import { silentLogger } from '../../src/core/log.js';
import { EmbeddedBroker } from '../../src/mqtt/embedded-broker.js';
import { MqttPublisher } from '../../src/mqtt/publisher.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { recordMqtt } from '../helpers/mqtt-recorder.js';
import { capturingLogger } from '../helpers/recording.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

t.test('embedded broker on an ephemeral port: retained availability, last will, clean stop', async (t) => {
  const { log, lines } = capturingLogger();
  const broker = new EmbeddedBroker({ port: 0, log });
  t.teardown(() => broker.stop());
  t.throws(() => broker.url, /embedded MQTT broker is not started/);
  await broker.start();
  t.ok(broker.port > 0 && broker.port !== 1883, `ephemeral port ${broker.port}`);
  t.equal(broker.url, `mqtt://127.0.0.1:${broker.port}`);
  t.ok(
    lines.some((l) => l.msg === `no broker URL configured: started an embedded MQTT broker on mqtt://127.0.0.1:${broker.port}` && l.level === 30),
    'logs the URL at info',
  );

  const base = 'edge-classifier/embedded';
  const pub = new MqttPublisher({
    url: broker.url,
    baseTopic: base,
    clientId: 'edge-classifier-embedded',
    keepalive: 30,
    qos: 1,
    predictionMinIntervalMs: 0,
    reconnectPeriodMs: 100,
    connectTimeoutMs: 3000,
    log: silentLogger(),
  });
  t.teardown(() => pub.stop());
  await pub.start();
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

  const rec = await recordMqtt(t, broker.url, `${base}/#`);
  const avail = await rec.waitFor((m) => m.topic === `${base}/availability`);
  t.same([avail.payload, avail.retain], ['online', true]);
  const state = await rec.waitFor((m) => m.topic === `${base}/state`);
  t.same([JSON.parse(state.payload).label, state.retain], ['Egyptian cat', true]);
  const gpio = await rec.waitFor((m) => m.topic === `${base}/gpio/17`);
  t.same([gpio.payload, gpio.retain], ['1', true]);
  t.equal(broker.clients, 2);

  // Last will through aedes: a raw client that vanishes without DISCONNECT.
  const { connect } = await import('mqtt');
  const dying = connect(broker.url, { will: { topic: `${base}/will-test`, payload: Buffer.from('offline'), qos: 1, retain: true }, reconnectPeriod: 0 });
  dying.on('error', () => {});
  await new Promise((r) => dying.once('connect', r));
  dying.stream.destroy();
  const will = await rec.waitFor((m) => m.topic === `${base}/will-test`, 5000, 'the last will');
  t.equal(will.payload, 'offline');

  await pub.stop();
  await rec.waitFor((m) => m.topic === `${base}/availability` && m.payload === 'offline');

  await broker.stop();
  await broker.stop(); // idempotent
  t.ok(lines.some((l) => l.msg === 'embedded MQTT broker stopped'));
  // The recorder lost its connection: the server is closed.
  await sleep(100);
  t.equal(rec.client.connected, false, 'clients are disconnected on stop');
});

t.test('a port in use gives an error naming the port and the keys to change', async (t) => {
  const mosquitto = await startMosquitto(t);
  const broker = new EmbeddedBroker({ port: mosquitto.port, log: silentLogger() });
  t.teardown(() => broker.stop());
  await t.rejects(broker.start(), {
    message:
      `cannot start the embedded MQTT broker on 127.0.0.1:${mosquitto.port}: the port is in use (EADDRINUSE). ` +
      'Set mqtt.embedded_port to a free port (0 picks one) or mqtt.url to use the broker already running there ' +
      `(command line: --mqtt-url mqtt://127.0.0.1:${mosquitto.port}; quick start: npm start -- --mqtt-url mqtt://127.0.0.1:${mosquitto.port})`,
  });
  // The port's bounds are the configuration schema's (test/config/load.test.ts).
});
