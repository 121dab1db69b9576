/**
 * A whole device in one temporary folder (a "root"), for the release,
 * model, health and doctor tests:
 *
 *   const dev = await makeDevice(t, { mqttUrl: broker.url });
 *   await dev.cli(['release', 'install', archive]);
 *   await dev.cli(['release', 'activate', '1.0.0', '--json']);
 *   const pid = await dev.mainPid();
 *
 * The root holds the unit (`edge-classifier unit --root ROOT --node <this
 * node>`), a drop-in with the test's settings, a configuration whose source
 * replays sample frames from the state folder, and those frames. Commands
 * run with `EDGE_CLASSIFIER_ROOT` set and the systemctl stand-in
 * (`test/helpers/bin/systemctl`) first on PATH. Teardown stops the service
 * and removes the root.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { image, repoRoot } from './assets.js';
import { runCli } from './cli.js';

const run = promisify(execFile);

/** The folder holding the systemctl stand-in. */
export const STANDIN_BIN = path.join(repoRoot, 'test', 'helpers', 'bin');

export interface Device {
  readonly root: string;
  readonly env: NodeJS.ProcessEnv;
  readonly configFile: string;
  readonly stateDir: string;
  readonly samplesDir: string;
  readonly releasesDir: string;
  readonly currentLink: string;
  readonly healthFile: string;
  readonly unitFile: string;
  /** Runs `dist/cli.js ARGS` against this device; `json` is the last stdout line parsed, when it is JSON. */
  // biome-ignore lint/suspicious/noExplicitAny: the JSON a command printed, checked field by field by each test
  cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; json: any }>;
  /** Runs the systemctl stand-in for this device. */
  systemctl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** `systemctl show -p MainPID --value`. */
  mainPid(): Promise<number>;
  /** Writes a drop-in `<unit>.d/<name>.conf`. */
  dropIn(name: string, text: string): Promise<void>;
}

interface TeardownTarget {
  teardown(fn: () => unknown): void;
}

/** Options of {@link makeDevice}. */
export interface DeviceOptions {
  /** Broker URL; default the embedded broker on a free port. */
  readonly mqttUrl?: string;
  /** `mqtt.base_topic`; default the daemon's own. */
  readonly baseTopic?: string;
  /** Frames per second of the replayed samples. Default 4. */
  readonly fps?: number;
  /** Extra YAML appended to the configuration. */
  readonly extraConfig?: string;
  /** `[Service]` lines for the test drop-in (e.g. a shorter TimeoutStartSec). */
  readonly service?: string[];
}

export async function makeDevice(t: TeardownTarget, o: DeviceOptions = {}): Promise<Device> {
  const root = await mkdtemp(path.join(tmpdir(), 'edge-device-'));
  const env: NodeJS.ProcessEnv = { ...process.env, EDGE_CLASSIFIER_ROOT: root, PATH: `${STANDIN_BIN}:${process.env.PATH}` };
  delete env.NOTIFY_SOCKET;
  delete env.RUNTIME_DIRECTORY;
  const stateDir = path.join(root, 'var', 'lib', 'edge-classifier');
  const samplesDir = path.join(stateDir, 'samples');
  const configDir = path.join(root, 'etc', 'edge-classifier');
  const unitFile = path.join(root, 'etc', 'systemd', 'system', 'edge-classifier.service');
  await mkdir(samplesDir, { recursive: true });
  await mkdir(configDir, { recursive: true });
  await mkdir(path.dirname(unitFile), { recursive: true });
  for (const f of ['cat_720p.jpg', 'hot_dog.jpg']) await copyFile(image(f), path.join(samplesDir, f));
  const unit = await runCli(['unit', '--root', root, '--node', process.execPath], { env });
  if (unit.code !== 0) throw new Error(`edge-classifier unit failed: ${unit.stderr}`);
  await writeFile(unitFile, unit.stdout);
  const configFile = path.join(configDir, 'config.yaml');
  await writeFile(
    configFile,
    [
      '# test device configuration',
      'source:',
      `  spec: ${samplesDir}`,
      `  fps: ${o.fps ?? 4}`,
      'mqtt:',
      o.mqttUrl ? `  url: ${o.mqttUrl}` : '  url: null\n  embedded_port: 0',
      ...(o.baseTopic ? [`  base_topic: ${o.baseTopic}`] : []),
      'gpio:',
      '  backend: virtual',
      o.extraConfig ?? '',
    ].join('\n'),
  );
  const dev: Device = {
    root,
    env,
    configFile,
    stateDir,
    samplesDir,
    releasesDir: path.join(root, 'opt', 'edge-classifier', 'releases'),
    currentLink: path.join(root, 'opt', 'edge-classifier', 'current'),
    healthFile: path.join(root, 'run', 'edge-classifier', 'health.json'),
    unitFile,
    async cli(args) {
      const r = await runCli(args, { env });
      const last = r.stdout.trim().split('\n').pop() ?? '';
      let json: unknown;
      try {
        json = JSON.parse(last);
      } catch {
        json = undefined;
      }
      return { code: r.code, stdout: r.stdout, stderr: r.stderr, json };
    },
    async systemctl(args) {
      try {
        const r = await run(path.join(STANDIN_BIN, 'systemctl'), args, { env });
        return { code: 0, stdout: r.stdout, stderr: r.stderr };
      } catch (err) {
        const e = err as { code?: number; stdout?: string; stderr?: string };
        return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
      }
    },
    async mainPid() {
      return Number((await dev.systemctl(['show', '-p', 'MainPID', '--value', 'edge-classifier'])).stdout.trim());
    },
    async dropIn(name, text) {
      await mkdir(`${unitFile}.d`, { recursive: true });
      await writeFile(path.join(`${unitFile}.d`, `${name}.conf`), text);
    },
  };
  await dev.dropIn('test', ['[Service]', 'TimeoutStartSec=60', 'RestartSec=1', ...(o.service ?? [])].join('\n'));
  t.teardown(async () => {
    await dev.systemctl(['stop', 'edge-classifier']);
    await rm(root, { recursive: true, force: true });
  });
  return dev;
}
