import t from 'tap';
import { silentLogger } from '../../src/core/log.js';
import { MqttPublisher } from '../../src/mqtt/publisher.js';
import type { Prediction } from '../../src/mqtt/topics.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { recordMqtt } from '../helpers/mqtt-recorder.js';

// The defect: a broker that stops answering without closing the connection (kill -STOP, a dead link)
// made mqtt.js pile up QoS 1 messages and re-send them after reconnecting, before `online`:
// predictions 15-21 s old and a GPIO output toggling within milliseconds. Nothing stale may arrive.

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function prediction(seq: number): Prediction {
  return {
    seq,
    source: 'stale test',
    model: 'm',
    classes: [{ index: 1, label: 'goldfish, Carassius auratus', score: 0.9 }],
    timings: { preprocess_ms: 1, inference_ms: 1, postprocess_ms: 0, total_ms: 2 },
    dropped: 0,
  };
}

t.test('a broker stopped for 20 s (keepalive 5 s): after it resumes only fresh predictions and the latest retained values arrive, after online', async (t) => {
  const broker = await startMosquitto(t);
  const base = `edge-classifier/stale-${process.pid}`;
  // The subscriber keeps its connection through the stop (keepalive 60 s), so it sees the order of delivery.
  const rec = await recordMqtt(t, broker.url, `${base}/#`, { keepalive: 60, protocolVersion: 5 });
  const pub = new MqttPublisher({
    url: broker.url,
    clientId: `stale-${process.pid}`,
    baseTopic: base,
    keepalive: 5,
    qos: 1,
    predictionMinIntervalMs: 0,
    reconnectPeriodMs: 500,
    connectTimeoutMs: 2000,
    log: silentLogger(),
  });
  t.teardown(() => pub.stop());
  // Never leave a stopped broker behind, whatever fails.
  t.teardown(() => broker.running && broker.signal('SIGCONT'));
  await pub.start();
  await rec.waitFor((m) => m.topic === `${base}/availability` && m.payload === 'online');

  let seq = 0;
  let level: 0 | 1 = 0;
  // GPIO toggles twice a second until the broker resumes, then stays: exactly one level must follow.
  let toggling = true;
  const traffic = setInterval(() => {
    pub.publishPrediction(prediction(++seq));
    if (toggling && seq % 5 === 0) {
      level = level === 1 ? 0 : 1;
      pub.publishGpio(17, level);
    }
  }, 100);
  t.teardown(() => clearInterval(traffic));
  await sleep(1000);

  const stopped = Date.now();
  broker.signal('SIGSTOP');
  await sleep(20_000);
  rec.clear();
  toggling = false;
  const finalLevel = String(level);
  const resumedAt = Date.now();
  broker.signal('SIGCONT');
  await rec.waitFor((m) => m.topic === `${base}/availability` && m.payload === 'online', 15_000, 'online after the broker resumed');
  await sleep(2000);
  clearInterval(traffic);
  await sleep(300);

  const after = rec.messages;
  const onlineAt = after.findIndex((m) => m.topic === `${base}/availability` && m.payload === 'online');
  const stale = after.filter((m) => m.topic === `${base}/prediction` && Date.parse(JSON.parse(m.payload).time) < resumedAt - 1000);
  t.same(
    stale.map((m) => JSON.parse(m.payload).seq),
    [],
    `no prediction made while the broker was stopped (${Math.round((resumedAt - stopped) / 1000)} s) arrives`,
  );
  t.ok(after.filter((m) => m.topic === `${base}/prediction`).length > 5, 'fresh predictions flow again');
  const beforeOnline = after.slice(0, onlineAt).filter((m) => m.topic !== `${base}/availability`);
  t.same(
    beforeOnline.map((m) => m.topic),
    [],
    'nothing from this publisher before online',
  );
  const gpio = after.filter((m) => m.topic === `${base}/gpio/17`).map((m) => m.payload);
  t.same(gpio, [finalLevel], 'the latest GPIO level once, not the toggles made while the broker was stopped');
  // The final retained availability is online: no late last will from the old connection.
  await sleep(1000);
  const check = await recordMqtt(t, broker.url, `${base}/availability`);
  const retained = await check.waitFor(() => true);
  t.same([retained.payload, retained.retain], ['online', true]);
  t.ok(pub.stats().discardedOnDisconnect > 0, `unconfirmed messages were discarded (${pub.stats().discardedOnDisconnect})`);
});
