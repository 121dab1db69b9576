import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connectAsync } from 'mqtt';
import t from 'tap';
import { silentLogger } from '../../src/core/log.js';
import { isLiveOtherInstance, probeBaseTopic, thisInstance } from '../../src/mqtt/instance.js';
import { InstanceConflictError, MqttPublisher } from '../../src/mqtt/publisher.js';
import { startMosquitto } from '../helpers/mosquitto.js';

t.test('a live other daemon on this machine is told apart from leftovers', async (t) => {
  const self = thisInstance(new Date());
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  t.teardown(() => child.kill());
  const other = { ...self, pid: child.pid! };
  t.equal(isLiveOtherInstance(other, self), true, 'same boot, live pid');
  t.equal(isLiveOtherInstance(self, self), false, 'ourselves');
  t.equal(isLiveOtherInstance({ ...other, boot_id: 'an-earlier-boot' }, self), false, 'earlier boot');
  t.equal(isLiveOtherInstance({ ...other, hostname: 'other-pi' }, self), false, 'another host');
  child.kill();
  await once(child, 'exit');
  t.equal(isLiveOtherInstance(other, self), false, 'exited');
});

t.test('probe reads the retained availability and stats instance without taking a session over', async (t) => {
  const broker = await startMosquitto(t);
  const base = 'edge-classifier/probe-test';
  const holder = await connectAsync(broker.url, { clientId: 'edge-classifier-x', reconnectPeriod: 0 });
  t.teardown(() => holder.end(true));
  const instance = { hostname: 'h', boot_id: 'b', pid: 42, started: '2026-12-01T08:00:00.000Z' };
  await holder.publishAsync(`${base}/availability`, 'online', { retain: true, qos: 1 });
  await holder.publishAsync(`${base}/stats`, JSON.stringify({ instance }), { retain: true, qos: 1 });
  const found = await probeBaseTopic(broker.url, { clientId: 'edge-classifier-x' }, base);
  t.same(found, { availability: 'online', instance });
  t.equal(holder.connected, true, 'the holder of the client id was not kicked');
  t.same(await probeBaseTopic(broker.url, { clientId: 'y' }, 'edge-classifier/empty', 500), { availability: undefined, instance: undefined });
  await broker.stop();
  const started = Date.now();
  t.same(await probeBaseTopic(broker.url, { clientId: 'y' }, base, 1000), { availability: undefined, instance: undefined }, 'no broker: empty');
  t.ok(Date.now() - started < 1500);
});

t.test('a publisher refuses to start next to a live daemon on the same base topic, naming it', async (t) => {
  const broker = await startMosquitto(t);
  const base = 'edge-classifier/twin';
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  t.teardown(() => child.kill());
  const self = thisInstance(new Date());
  const other = { ...self, pid: child.pid!, started: '2026-12-01T08:00:00.000Z' };
  const holder = await connectAsync(broker.url, { clientId: 'the-other-daemon', reconnectPeriod: 0 });
  t.teardown(() => holder.end(true));
  await holder.publishAsync(`${base}/availability`, 'online', { retain: true, qos: 1 });
  await holder.publishAsync(`${base}/stats`, JSON.stringify({ instance: other }), { retain: true, qos: 1 });
  const options = {
    url: broker.url,
    clientId: 'edge-classifier-twin',
    baseTopic: base,
    keepalive: 30,
    qos: 1 as const,
    predictionMinIntervalMs: 0,
    reconnectPeriodMs: 200,
    connectTimeoutMs: 2000,
    log: silentLogger(),
    instance: self,
  };
  const pub = new MqttPublisher(options);
  t.teardown(() => pub.stop());
  const err = await pub.start().then(
    () => undefined,
    (e: Error) => e,
  );
  t.ok(err instanceof InstanceConflictError);
  t.equal(
    err?.message,
    `another edge-classifier (pid ${child.pid} on ${self.hostname}, started 2026-12-01T08:00:00.000Z) is publishing on base topic '${base}' ` +
      `at ${broker.url}: stop it, or give this one another base topic (--base-topic or mqtt.base_topic)`,
  );
  t.equal((err as InstanceConflictError).exitCode, 78);
  t.equal(holder.connected, true, 'the other one keeps its session');
  // Once it is gone (offline), starting works.
  await holder.publishAsync(`${base}/availability`, 'offline', { retain: true, qos: 1 });
  const next = new MqttPublisher(options);
  t.teardown(() => next.stop());
  await next.start();
  t.equal(next.connected, true);
});
