/**
 * The health file as the supervisor keeps it around real daemons (real
 * classifier, embedded broker, array-backed source): healthy once a frame is
 * classified; a problem of severity error makes it unhealthy at once and a
 * warning does not; a reload counts; a reload that fails to start says why
 * and keeps the count; a shutdown removes the file. The verdict is the one
 * `edge-classifier health` and the release gates use.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { VirtualBackend } from '../../src/gpio/backends.js';
import { judgeHealth, readHealthRecord } from '../../src/release/health.js';
import { Daemon } from '../../src/service/daemon.js';
import { HealthFile, type HealthRecord } from '../../src/service/health-file.js';
import { SdNotifier } from '../../src/service/sd-notify.js';
import { Supervisor } from '../../src/service/supervisor.js';
import { image, model } from '../helpers/assets.js';
import { capturingLogger } from '../helpers/recording.js';
import { ArraySource } from '../helpers/sources.js';

const CAT = readFileSync(image('cat_720p.jpg'));
const dir = mkdtempSync(path.join(tmpdir(), 'ec-health-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const file = path.join(dir, 'health.json');

function config(port = 0): Config {
  const c = loadConfig({ env: {}, overrides: { model: model('mobilenet_v2_1.0_224_quant.tflite'), source: 'rpicam' } });
  return { ...c, mqtt: { ...c.mqtt, embedded_port: port, base_topic: 'edge-classifier/health-test' }, gpio: { backend: 'virtual', rules: [] } };
}

/** Reads the health file until `accept` holds for the record and its verdict, at most 20 s. */
async function until(
  accept: (r: HealthRecord, v: ReturnType<typeof judgeHealth>) => boolean,
  what: string,
): Promise<{ record: HealthRecord; verdict: ReturnType<typeof judgeHealth> }> {
  let last = 'no file';
  for (let i = 0; i < 400; i++) {
    const record = await readHealthRecord(file);
    if (record) {
      const verdict = judgeHealth(record, file);
      if (accept(record, verdict)) return { record, verdict };
      last = JSON.stringify(verdict.reasons);
    }
    await sleep(50);
  }
  throw new Error(`health file never showed ${what} (last reasons: ${last})`);
}

const { log } = capturingLogger('warn');
let next: () => Config = () => config();
const daemons: Daemon[] = [];
const sources: ArraySource[] = [];
// A camera at 10 fps: each running daemon's source gets a frame every 100 ms.
const camera = setInterval(() => sources.at(-1)?.push(), 100);
t.teardown(() => clearInterval(camera));
const supervisor = new Supervisor({
  config: config(),
  load: async () => next(),
  log,
  notifier: new SdNotifier({ log, env: {} }),
  health: new HealthFile({ file, version: '9.9.9', programDir: '/opt/edge-classifier/releases/9.9.9', log, intervalMs: 200 }),
  createDaemon: (options) => {
    const source = new ArraySource([CAT]);
    sources.push(source);
    const d = new Daemon({ ...options, createSource: () => source, gpioBackend: new VirtualBackend({ log }), deviceId: '0123456789ab' });
    daemons.push(d);
    return d;
  },
});
t.teardown(() => supervisor.shutdown('test over', 0));
await supervisor.start();

t.test('healthy once a frame is classified; an error problem makes it unhealthy at once, a warning does not', async (t) => {
  const { record } = await until((_r, v) => v.healthy, 'healthy');
  t.match(record, { pid: process.pid, version: '9.9.9', reloads: 0, state: 'running', model: { name: 'mobilenet_v2_1.0_224_quant' } });
  const daemon = daemons.at(-1)!;
  daemon.problems.raise('camera_error', 'rpicam-vid exits with status 255', 'check the camera cable', 'error');
  const { verdict } = await until((_r, v) => !v.healthy, 'the error problem');
  t.match(verdict.reasons, ['problem camera_error: rpicam-vid exits with status 255']);
  daemon.problems.clear('camera_error');
  daemon.problems.raise('source_stalled', 'no frame for 12 s', 'check the source', 'warning');
  const warned = await until((r, v) => v.healthy && (r.pipeline?.problems.length ?? 0) === 1, 'healthy with a warning');
  t.match(warned.verdict.problems, [{ id: 'source_stalled', severity: 'warning' }]);
  daemon.problems.clear('source_stalled');
});

t.test('a reload counts; one whose configuration fails to start says why and keeps the count', async (t) => {
  next = () => config();
  await supervisor.reload();
  await until((r, v) => r.reloads === 1 && v.healthy, 'one reload, healthy');
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  next = () => config((server.address() as { port: number }).port);
  const before = new Date().toISOString();
  await supervisor.reload();
  const { record } = await until((r, v) => r.last_reload?.ok === false && v.healthy, 'the failed reload, the previous configuration healthy');
  t.equal(record.reloads, 1, 'the count stays');
  t.ok(record.last_reload!.at >= before);
  t.match(record.last_reload!.error, /the new configuration failed to start/);
});

t.test('shutdown removes the file', async (t) => {
  await supervisor.shutdown('test', 0);
  t.notOk(existsSync(file));
});
