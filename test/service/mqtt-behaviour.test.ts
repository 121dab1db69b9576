/**
 * How the daemon's MQTT side behaves over time, in process: state smoothing
 * and expiry on real frames, commands switched off with snapshots kept in a
 * folder and a GPIO rule the model cannot satisfy, a broker restart, and the
 * embedded broker (MQTT 3.1.1).
 */
import { readdir } from 'node:fs/promises';
import t from 'tap';
import { BIRD, buildDaemon, CAT, daemonConfig, HOTDOG, HOTDOG_LABEL, json, sleep, validateAll } from '../helpers/daemon-mqtt.js';
import { startMosquitto, tempDir } from '../helpers/mosquitto.js';
import { recordMqtt } from '../helpers/mqtt-recorder.js';
import { assertPayload } from '../helpers/schemas.js';

t.test('smoothing on real frames: alternating hot dog / chickadee photos do not flap the state or the relay (min_frames 3); expiry to unknown', async (t) => {
  const broker = await startMosquitto(t);
  const b = await buildDaemon(
    t,
    daemonConfig(broker.url, (c) => ({ ...c, state: { ...c.state, min_frames: 3, expire_after_s: 2 } })),
  );
  // The shared assets hold no burger or parrot: a hot dog and a chickadee are the same kind of pair (two confident, different classes).
  for (const img of [HOTDOG, HOTDOG, HOTDOG]) await b.frame(img);
  for (let i = 0; i < 8; i++) await b.frame(i % 2 === 0 ? BIRD : HOTDOG);
  for (const img of [BIRD, BIRD, BIRD]) await b.frame(img);
  const label = (m: { payload: string }) => (json(m).status === 'detected' ? json(m).label : json(m).status);
  await sleep(200);
  t.same(b.rec.on(`${b.base}/state`).map(label), ['unknown', HOTDOG_LABEL, 'chickadee'], 'unknown, the hot dog once, the chickadee once');
  t.same(
    b.rec.on(`${b.base}/gpio/17`).map((m) => m.payload),
    ['0', '1', '0'],
    'the relay: off, on for the hot dogs, off after three chickadees',
  );
  t.equal(b.rec.on(`${b.base}/snapshot`).length, 2, 'one snapshot per state change');
  // Frames stop: after state.expire_after_s the state is unknown, retained.
  const expired = await b.rec.waitFor((m) => m.topic === `${b.base}/state` && b.rec.on(m.topic).indexOf(m) === 3, 5000, 'the expired state');
  t.match(json(expired), { status: 'unknown', label: null, classes: [] });
  validateAll(t, b.rec, b.base);
});

t.test(
  'hysteresis below inference.threshold: a state and a relay that are on hold while the label scores under the threshold but above threshold − hysteresis',
  async (t) => {
    const broker = await startMosquitto(t);
    const b = await buildDaemon(
      t,
      daemonConfig(broker.url, (c) => ({
        ...c,
        state: { ...c.state, hysteresis: 0.15 },
        gpio: { ...c.gpio, rules: [{ pin: 17, labels: ['Egyptian cat'], min_score: 0.5, active_low: false, hold_ms: 0 }] },
      })),
    );
    const label = (m: { payload: string }) => (json(m).status === 'detected' ? json(m).label : json(m).status);
    await b.frame(CAT);
    const on = await b.rec.waitFor((m) => m.topic === `${b.base}/state` && json(m).label === 'Egyptian cat', 5000, 'the cat state');
    const score = json(on).score as number;
    // Raise inference.threshold just above the cat's score: on above it, held down to it − 0.15.
    const threshold = Math.ceil((score + 0.05) * 100) / 100;
    t.ok(threshold - 0.15 < score && threshold <= 1, `threshold ${threshold}, hold from ${threshold - 0.15}, the cat scores ${score}`);
    await b.rec.client.publishAsync(`${b.base}/set/threshold`, String(threshold), { qos: 1 });
    const r = await b.rec.waitFor((m) => m.topic === `${b.base}/response/set/threshold`, 5000, 'the response to set/threshold');
    t.match(json(r), { ok: true });
    await b.frame(CAT);
    await sleep(300);
    t.same(json(b.rec.on(`${b.base}/prediction`).at(-1)!).classes, [], 'the cat is no longer reported (below the threshold)');
    t.same(b.rec.on(`${b.base}/state`).map(label), ['unknown', 'Egyptian cat'], 'the state holds the cat');
    t.same(
      b.rec.on(`${b.base}/gpio/17`).map((m) => m.payload),
      ['0', '1'],
      'the relay stays on',
    );
    await b.frame(BIRD);
    await sleep(300);
    t.same(b.rec.on(`${b.base}/state`).map(label), ['unknown', 'Egyptian cat', 'chickadee'], 'a chickadee above the threshold takes over');
    t.same(
      b.rec.on(`${b.base}/gpio/17`).map((m) => m.payload),
      ['0', '1', '0'],
      'the relay goes off when the cat is gone',
    );
  },
);

t.test('commands off, snapshots in a folder, a GPIO rule naming a label the model lacks', async (t) => {
  const broker = await startMosquitto(t);
  const dir = await tempDir(t);
  const b = await buildDaemon(
    t,
    daemonConfig(broker.url, (c) => ({
      ...c,
      mqtt: { ...c.mqtt, commands: false },
      snapshot: { ...c.snapshot, dir, max_files: 1 },
      gpio: { ...c.gpio, rules: [...c.gpio.rules, { pin: 22, labels: ['parrot'], min_score: 0.5, active_low: false, hold_ms: 0 }] },
    })),
  );
  const m = await b.rec.waitFor((m) => m.topic === `${b.base}/problems` && (json(m).problems as unknown[]).length > 0, 5000, 'a problem');
  assertPayload(t, 'problems', json(m));
  const p = (json(m).problems as Record<string, string>[])[0]!;
  t.match(p, {
    id: 'gpio_labels_missing:22',
    severity: 'warning',
    message: 'GPIO 22: the model has no class named "parrot": that label will never switch the output',
  });
  t.ok(Date.parse(p.since!) > Date.now() - 60_000, 'since when');
  await b.rec.client.publishAsync(`${b.base}/set/threshold`, '0.7', { qos: 1 });
  await b.rec.client.publishAsync(`${b.base}/request/get_config`, '{}', { qos: 1 });
  await b.frame(HOTDOG);
  await b.frame(CAT);
  await b.rec.waitFor(
    (m) => m.topic === `${b.base}/snapshot` && (m.properties?.userProperties as { seq?: string } | undefined)?.seq === '2',
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

t.test(
  'a broker restart: state changes made during the outage arrive after it; every retained topic is back; no stale prediction; commands answered',
  async (t) => {
    const broker = await startMosquitto(t);
    const b = await buildDaemon(t, daemonConfig(broker.url));
    await b.frame(CAT);
    await b.rec.waitFor((m) => m.topic === `${b.base}/state` && json(m).label === 'Egyptian cat', 5000, 'cat state');
    await broker.stop();
    await sleep(300);
    b.source.push(HOTDOG);
    await sleep(1500);
    b.source.push(HOTDOG);
    await sleep(1500);
    await broker.start();
    const fresh = await recordMqtt(t, broker.url, `${b.base}/#`);
    const s = await fresh.waitFor((m) => m.topic === `${b.base}/state`, 10_000, 'state after the restart');
    t.match(json(s), { status: 'detected', label: HOTDOG_LABEL }, 'the state made while the broker was down');
    await fresh.waitFor((m) => m.topic === `${b.base}/gpio/17` && m.payload === '1', 5000, 'the relay level made during the outage');
    // The restarted broker forgot the daemon's subscriptions: a command works only if it subscribed again.
    await fresh.client.publishAsync(`${b.base}/set/threshold`, '0.3', { qos: 1 });
    const response = await fresh.waitFor((m) => m.topic === `${b.base}/response/set/threshold`, 5000, 'the response to a command sent after the restart');
    t.match(json(response), { command: 'set/threshold', ok: true, result: { settings: { threshold: 0.3 } } });
    const after = await recordMqtt(t, broker.url, `${b.base}/#`);
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
  },
);

t.test('the embedded broker (MQTT 3.1.1): responses on <base>/response/<command>, the contract unchanged', async (t) => {
  const b = await buildDaemon(t, daemonConfig(null));
  await b.frame(HOTDOG);
  await b.rec.waitFor((m) => m.topic === `${b.base}/snapshot`, 15_000, 'snapshot');
  await b.rec.client.publishAsync(`${b.base}/request/get_config`, '{"id":7}', { qos: 1 });
  const r = await b.rec.waitFor((m) => m.topic === `${b.base}/response/get_config`, 5000, 'response');
  t.match(json(r), { id: 7, ok: true });
  const stats = await b.rec.waitFor((m) => m.topic === `${b.base}/stats` && (json(m).frames as { classified: number }).classified === 1, 5000, 'stats');
  t.equal((json(stats).mqtt as { protocol: string }).protocol, '3.1.1');
  validateAll(t, b.rec, b.base);
});
