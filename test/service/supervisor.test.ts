/**
 * The supervisor in process, around real daemons (real classifier, embedded
 * broker, virtual GPIO, array-backed sources): reload with rollback to the
 * last working configuration, a rejected reload, reload and shutdown during
 * start-up, the exit code of a failing classifier, the shutdown deadline.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import t, { type Test } from 'tap';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { VirtualBackend } from '../../src/gpio/backends.js';
import { Classifier } from '../../src/inference/classifier.js';
import { Daemon, type DaemonOptions, MAX_CONSECUTIVE_FAILURES } from '../../src/service/daemon.js';
import { SdNotifier } from '../../src/service/sd-notify.js';
import { Supervisor, type SupervisorOptions } from '../../src/service/supervisor.js';
import { image, model } from '../helpers/assets.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { recordMqtt } from '../helpers/mqtt-recorder.js';
import { capturingLogger } from '../helpers/recording.js';
import { ArraySource } from '../helpers/sources.js';

const CAT = readFileSync(image('cat_720p.jpg'));

function config(base: string, change: (c: Config) => Config = (c) => c): Config {
  const c = loadConfig({ env: {}, overrides: { model: model('mobilenet_v2_1.0_224_quant.tflite'), source: 'rpicam' } });
  return change({ ...c, mqtt: { ...c.mqtt, embedded_port: 0, base_topic: base }, gpio: { backend: 'virtual', rules: [] } });
}

/** A supervisor whose daemons use array sources (kept in `daemons`); `load` answers reloads. */
function build(
  t: Test,
  initial: Config,
  load: () => Promise<Config>,
  extra: Partial<SupervisorOptions> & { daemon?: Partial<DaemonOptions>; source?: () => ArraySource } = {},
) {
  const { log, lines } = capturingLogger('debug');
  const daemons: Array<{ config: Config; source: ArraySource }> = [];
  const supervisor = new Supervisor({
    config: initial,
    load,
    log,
    notifier: new SdNotifier({ log, env: {} }),
    createDaemon: (options) => {
      const source = extra.source?.() ?? new ArraySource([CAT]);
      daemons.push({ config: options.config, source });
      return new Daemon({ ...options, createSource: () => source, gpioBackend: new VirtualBackend({ log }), deviceId: '0123456789ab', ...extra.daemon });
    },
    ...extra,
  });
  t.teardown(() => supervisor.shutdown('test over', 0));
  const logged = (msg: string | RegExp) => lines.some((l) => (typeof msg === 'string' ? l.msg === msg : msg.test(String(l.msg))));
  return { supervisor, daemons, lines, logged };
}

/** A TCP port in use for the test's length: a configuration asking the embedded broker for it fails to start. */
async function takenPort(t: Test): Promise<number> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as { port: number }).port;
}

t.test('SIGHUP: a working configuration replaces the running one; one that fails to start is rolled back', async (t) => {
  const a = config('ec-test/a');
  const b = config('ec-test/b');
  const broken = config('ec-test/broken', (c) => ({ ...c, mqtt: { ...c.mqtt, embedded_port: 0 } }));
  const port = await takenPort(t);
  const next: Config[] = [b, { ...broken, mqtt: { ...broken.mqtt, embedded_port: port } }];
  const { supervisor, daemons, logged } = build(t, a, async () => next.shift() as Config);
  await supervisor.start();
  t.equal(supervisor.current, a);

  await supervisor.reload();
  t.equal(supervisor.current, b, 'the new configuration runs');
  t.same(supervisor.stats(), { reloads: 1, rejected: 0, rollbacks: 0, starts: 2 });
  t.same(
    daemons.map((d) => d.source.calls),
    [['start', 'stop'], ['start']],
    'the old daemon stopped before the new one started',
  );

  await supervisor.reload();
  t.ok(
    logged(
      new RegExp(`^SIGHUP: the new configuration failed to start \\(cannot start the embedded MQTT broker on 127\\.0\\.0\\.1:${port}: the port is in use`),
    ),
  );
  t.equal(supervisor.current, b, 'the last working configuration is kept');
  t.same(supervisor.stats(), { reloads: 1, rejected: 0, rollbacks: 1, starts: 4 });
  t.equal(daemons[3]?.config, b, 'and started again');
  t.same(daemons[3]?.source.calls, ['start'], 'it runs');
  daemons[3]?.source.push(CAT);

  void supervisor.shutdown('SIGTERM', 0);
  t.equal(await supervisor.exited, 0);
  t.same(daemons[3]?.source.calls, ['start', 'stop']);
});

t.test('SIGHUP: a configuration that does not load is refused and the running daemon kept', async (t) => {
  const a = config('ec-test/kept');
  const { supervisor, daemons, logged } = build(t, a, async () => {
    throw new ConfigError(['mqtt.qos: expected 0, 1 or 2, but received 5 (line 2)'], 'c.yaml');
  });
  await supervisor.start();
  await supervisor.reload();
  t.ok(logged('SIGHUP: invalid configuration in c.yaml: mqtt.qos: expected 0, 1 or 2, but received 5 (line 2); keeping the running configuration'));
  t.same(supervisor.stats(), { reloads: 0, rejected: 1, rollbacks: 0, starts: 1 });
  t.same(daemons[0]?.source.calls, ['start'], 'never stopped');
});

t.test('SIGHUP during start-up waits for the start, then reloads; a second one during the reload is ignored', async (t) => {
  const a = config('ec-test/early-a');
  const b = config('ec-test/early-b');
  const { supervisor, logged } = build(t, a, async () => b);
  const starting = supervisor.start();
  await supervisor.reload();
  t.ok(logged('SIGHUP during start-up: reloading once the start is done'));
  t.equal(supervisor.current, a, 'nothing replaced during the start');
  await starting;
  t.equal(supervisor.current, b, 'reloaded after the start');
  t.same(supervisor.stats(), { reloads: 1, rejected: 0, rollbacks: 0, starts: 2 });
  const first = supervisor.reload();
  await supervisor.reload();
  t.ok(logged('SIGHUP: a reload is already under way; ignored'));
  await first;
  t.equal(supervisor.stats().reloads, 2);
});

t.test("SIGTERM during start-up cancels the start and exits with the signal's code", async (t) => {
  // A deadline long enough for a slow model load on a busy machine: the deadline has its own test below.
  const { supervisor, daemons } = build(t, config('ec-test/term'), async () => config('x'), { shutdownDeadlineMs: 60_000 });
  const starting = supervisor.start();
  void supervisor.shutdown('SIGTERM', 0);
  await starting;
  t.equal(await supervisor.exited, 0, 'exit 0');
  t.same(daemons[0]?.source.calls, [], 'the source was never started');
  await supervisor.reload();
  t.equal(daemons.length, 1, 'no reload after a shutdown');
});

t.test(`a classifier failing ${MAX_CONSECUTIVE_FAILURES} frames in a row exits 1 so systemd restarts the service`, async (t) => {
  class DeadInterpreter extends Classifier {
    protected override async infer(): Promise<never> {
      throw new Error('the TFLite worker exited unexpectedly (code 1)');
    }
  }
  const { supervisor, daemons, logged } = build(t, config('ec-test/dead'), async () => config('x'), {
    daemon: { createClassifier: (o) => new DeadInterpreter(o) },
  });
  await supervisor.start();
  const source = daemons[0]!.source;
  // Frames keep coming (a frame that arrives while one is being decoded replaces the waiting one, so more
  // than the limit are pushed) until the supervisor gives up.
  let exited = false;
  const failing = (async () => {
    for (let i = 0; i < 50 * MAX_CONSECUTIVE_FAILURES && !exited; i++) {
      source.push(CAT);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  t.equal(await supervisor.exited, 1);
  exited = true;
  await failing;
  t.ok(logged(/^classification keeps failing \(the TFLite worker exited unexpectedly \(code 1\)\): stopping so the service manager can restart$/));
});

t.test('a shutdown that takes longer than the deadline exits 1 anyway', async (t) => {
  const stuck = new ArraySource([CAT], { hangStop: true });
  t.teardown(() => stuck.release()); // let the daemon finish stopping, so its worker ends with the test
  const { supervisor, logged } = build(t, config('ec-test/slow'), async () => config('x'), { shutdownDeadlineMs: 300, source: () => stuck });
  await supervisor.start();
  const at = Date.now();
  void supervisor.shutdown('SIGTERM', 0);
  t.equal(await supervisor.exited, 1);
  t.ok(Date.now() - at < 2000, `after ${Date.now() - at} ms`);
  t.ok(logged('shutdown took longer than 300 ms: exiting anyway'));
});

t.test('request/reload over MQTT: reloads as SIGHUP does, answered by the daemon running afterwards', async (t) => {
  const broker = await startMosquitto(t);
  const base = `ec-test/reload-${process.pid}`;
  const onBroker = (c: Config): Config => ({
    ...c,
    mqtt: { ...c.mqtt, url: broker.url, base_topic: base },
    homeassistant: { ...c.homeassistant, enabled: false },
  });
  const a = config(base, onBroker);
  const b = config(base, (c) => onBroker({ ...c, inference: { ...c.inference, threshold: 0.3 } }));
  const answers: Array<() => Promise<Config>> = [
    async () => b,
    async () => Promise.reject(new ConfigError(['inference.top_k: expected more than 0, but received 0 (line 3)'], '/etc/x.yaml')),
  ];
  const { supervisor } = build(t, a, () => answers.shift()!());
  await supervisor.start();
  const rec = await recordMqtt(t, broker.url, `${base}/#`);
  await rec.waitFor((m) => m.topic === `${base}/availability` && m.payload === 'online');
  await rec.client.publishAsync(`${base}/request/reload`, '{"id":"r1"}', { qos: 1 });
  const ok = await rec.waitFor((m) => m.topic === `${base}/response/reload`, 20_000, 'the response to the reload');
  t.match(JSON.parse(ok.payload), { command: 'reload', id: 'r1', ok: true, result: { reloaded: true } });
  t.equal(supervisor.current.inference.threshold, 0.3, 'the reloaded configuration runs');
  await rec.waitFor((m) => m.topic === `${base}/settings` && JSON.parse(m.payload).threshold === 0.3, 5000, 'settings of the new configuration');
  rec.clear();
  await rec.client.publishAsync(`${base}/request/reload`, '{"id":"r2"}', { qos: 1 });
  const refused = await rec.waitFor((m) => m.topic === `${base}/response/reload`, 20_000, 'the second response');
  t.match(JSON.parse(refused.payload), {
    id: 'r2',
    ok: false,
    error: /inference\.top_k: expected more than 0, but received 0 \(line 3\); the running configuration is kept/,
  });
});
