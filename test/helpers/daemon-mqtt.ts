/**
 * A Daemon in process for MQTT contract tests: the real classifier (V2
 * model, one thread), the broker at `url`, virtual GPIO 17 on a hot dog, an
 * array-backed source, and a recorder (MQTT 5) on the base topic.
 *
 *   const b = await buildDaemon(t, daemonConfig(broker.url));
 *   await b.frame(HOTDOG);                  // pushes a frame, waits for its prediction
 *   validateAll(t, b.rec, b.base);          // every payload against its JSON Schema
 */
import { readFileSync } from 'node:fs';
import type { Test } from 'tap';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { VirtualBackend } from '../../src/gpio/backends.js';
import { Daemon, type DaemonOptions } from '../../src/service/daemon.js';
import { image, model } from './assets.js';
import { type MqttRecorder, recordMqtt } from './mqtt-recorder.js';
import { capturingLogger } from './recording.js';
import { payloadErrors, type SchemaName } from './schemas.js';
import { ArraySource } from './sources.js';

export const CAT = readFileSync(image('cat_720p.jpg'));
export const HOTDOG = readFileSync(image('hot_dog.jpg'));
export const BIRD = readFileSync(image('bird.png'));
export const HOTDOG_LABEL = 'hotdog, hot dog, red hot';
let n = 0;

/** The defaults with the V2 model, `url` as broker, a unique base topic and discovery prefix, virtual GPIO 17 on a hot dog, stats every second. */
export function daemonConfig(url: string | null, change: (c: Config) => Config = (c) => c): Config {
  const c = loadConfig({ env: {}, overrides: { model: model('mobilenet_v2_1.0_224_quant.tflite'), source: 'rpicam' } });
  n += 1;
  return change({
    ...c,
    inference: { ...c.inference, engine: 'tflite', threads: 1 },
    mqtt: {
      ...c.mqtt,
      url,
      embedded_port: 0,
      base_topic: `ec-test/contract-${process.pid}-${n}`,
      client_id: `ec-contract-${process.pid}-${n}`,
      stats_interval_s: 1,
    },
    gpio: { backend: 'virtual', rules: [{ pin: 17, labels: ['hotdog'], min_score: 0.5, active_low: false, hold_ms: 0 }] },
    homeassistant: { ...c.homeassistant, prefix: `ha-test-${process.pid}-${n}` },
  });
}

export interface Built {
  daemon: Daemon;
  source: ArraySource;
  lines: Array<Record<string, unknown>>;
  base: string;
  rec: MqttRecorder;
  /** Pushes a frame and waits for its prediction. */
  frame(img: Buffer): Promise<void>;
}

export async function buildDaemon(t: Test, c: Config, extra: Partial<DaemonOptions> = {}): Promise<Built> {
  const { log, lines } = capturingLogger('debug');
  const source = new ArraySource([CAT]);
  const base = c.mqtt.base_topic!;
  const daemon = new Daemon({ config: c, log, createSource: () => source, gpioBackend: new VirtualBackend({ log }), deviceId: '0123456789ab', ...extra });
  t.teardown(() => daemon.stop().catch(() => {}));
  // With a broker URL the recorder can listen before the daemon connects; the embedded broker exists only after start.
  let rec = c.mqtt.url === null ? undefined : await recordMqtt(t, c.mqtt.url, `${base}/#`, { protocolVersion: 5 });
  await daemon.start();
  rec ??= await recordMqtt(t, daemon.brokerUrl, `${base}/#`);
  const r = rec;
  await r.waitFor((m) => m.topic === `${base}/availability` && m.payload === 'online', 5000, 'online');
  let pushed = 0;
  const frame = async (img: Buffer) => {
    pushed += 1;
    const seq = pushed;
    source.push(img);
    await r.waitFor((m) => m.topic === `${base}/prediction` && JSON.parse(m.payload).seq === seq, 15_000, `prediction ${seq}`);
  };
  return { daemon, source, lines, base, rec: r, frame };
}

export const json = (m: { payload: string }) => JSON.parse(m.payload) as Record<string, unknown>;
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Validates every message recorded under `base` against its topic's schema. */
export function validateAll(t: Test, rec: MqttRecorder, base: string): void {
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
    if (!m.topic.startsWith(`${base}/`)) continue;
    // Commands are what others send (set, set/<key>, request/<command>); `settings` is the daemon's own.
    const rest = m.topic.slice(base.length + 1);
    if (rest === 'set' || rest.startsWith('set/') || rest.startsWith('request/')) continue;
    const kind = kinds.find(([re]) => re.test(m.topic));
    if (kind === undefined) continue;
    const errors = payloadErrors(kind[1], kind[2] ? JSON.parse(m.payload) : m.payload);
    checked += 1;
    if (errors) bad.push(`${m.topic}: ${errors}`);
  }
  t.same(bad, [], `${checked} messages match their JSON Schemas`);
}
