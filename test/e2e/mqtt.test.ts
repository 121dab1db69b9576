/**
 * The MQTT side as a user meets it, through the built command line: a
 * second quick start against the first one's broker (the README's tip when
 * port 1883 is taken) is refused naming the first instead of fighting over
 * the client id; `run --remove-discovery` takes the device out of Home
 * Assistant.
 */
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { image, model } from '../helpers/assets.js';
import { runCli, startCli } from '../helpers/cli.js';
import { freePort, startMosquitto } from '../helpers/mosquitto.js';
import { recordMqtt } from '../helpers/mqtt-recorder.js';

const MODEL = model('mobilenet_v2_1.0_224_quant.tflite');

function replay(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'ec-mqtt-e2e-'));
  copyFileSync(image('cat_720p.jpg'), path.join(dir, 'cat.jpg'));
  return dir;
}

t.test("a second daemon on the first one's broker with the same base topic is refused, naming the first (exit 78)", async (t) => {
  const port = await freePort();
  const dir = replay();
  const config = `${dir}.yaml`;
  // Both on the defaults: base topic and client id from this machine's id, as two quick starts.
  writeFileSync(config, ['source:', `  spec: ${dir}`, '  fps: 2', 'mqtt:', `  embedded_port: ${port}`, 'gpio:', '  backend: virtual'].join('\n'));
  const first = startCli(t, ['run', '--config', config, '--model', MODEL]);
  await first.waitForLog((l) => l.msg === 'first frame classified: ready', 60_000, 'the first daemon ready');
  const rec = await recordMqtt(t, `mqtt://127.0.0.1:${port}`, 'edge-classifier/+/availability');
  await rec.waitFor((m) => m.payload === 'online');

  const second = startCli(t, ['run', '--config', config, '--model', MODEL, '--mqtt-url', `mqtt://127.0.0.1:${port}`]);
  const exit = await second.exited;
  t.equal(exit.code, 78, 'EX_CONFIG: systemd does not restart it');
  const why = second.logs.find((l) => l.level === 60);
  t.match(
    why?.msg,
    new RegExp(`^another edge-classifier \\(pid ${first.child.pid} on .+, started .+\\) is publishing on base topic 'edge-classifier/[0-9a-f]{12}'`),
  );
  t.match(why?.msg, /stop it, or give this one another base topic \(--base-topic or mqtt\.base_topic\)$/);
  await new Promise((r) => setTimeout(r, 500));
  t.same(
    rec.messages.map((m) => m.payload),
    ['online'],
    "the first daemon's availability never flapped",
  );
  first.child.kill('SIGTERM');
  t.equal((await first.exited).code, 0);
});

t.test('run --remove-discovery: the device leaves Home Assistant', async (t) => {
  const broker = await startMosquitto(t);
  const dir = replay();
  const config = `${dir}.yaml`;
  writeFileSync(config, ['source:', `  spec: ${dir}`, '  fps: 2', 'gpio:', '  backend: virtual', 'homeassistant:', '  prefix: ha-e2e'].join('\n'));
  const ha = await recordMqtt(t, broker.url, 'ha-e2e/#');
  const d = startCli(t, ['run', '--config', config, '--model', MODEL, '--mqtt-url', broker.url]);
  const discovery = await ha.waitFor((m) => m.topic.startsWith('ha-e2e/device/') && m.payload !== '', 60_000, 'discovery');
  t.match(discovery.topic, /^ha-e2e\/device\/edge_classifier_[0-9a-f]{12}\/config$/);
  d.child.kill('SIGTERM');
  await d.exited;

  const removed = await runCli(['run', '--config', config, '--mqtt-url', broker.url, '--remove-discovery']);
  t.equal(removed.code, 0, removed.stderr);
  t.match(removed.stdout, `"topic":"${discovery.topic}"`);
  const after = await recordMqtt(t, broker.url, 'ha-e2e/#');
  await new Promise((r) => setTimeout(r, 500));
  t.same(after.messages, [], 'no retained discovery message left');
  const withoutBroker = await runCli(['run', '--config', config, '--remove-discovery']);
  t.equal(withoutBroker.code, 1);
  t.match(withoutBroker.stdout, /--remove-discovery needs the broker Home Assistant uses: set mqtt.url \(or --mqtt-url\)/);
});
