/**
 * Devices for fleet tests: each an sshd on loopback (see sshd.ts) whose root
 * folder starts as a fresh Raspberry Pi OS would for what bootstrap touches
 * (/etc/passwd, group, shadow, gshadow with the `pi` user and the `video`
 * and `gpio` groups) and its own MQTT base topic in /etc/edge-classifier/env,
 * with the systemctl stand-in on its PATH; one configuration for all (to
 * give to `fleet bootstrap --config`): a folder of two frames replayed at
 * 2 fps, a small real model, a real Mosquitto broker, virtual GPIO.
 *
 *   const fl = await startFleetLab(t, ['t1', 't2', 't3']);
 *   const r = await fl.fleet(['status']);      // the real CLI, with the lab's inventory
 *   fl.current('t1');                          // the release `current` points to
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { assetsDir, image, model, repoRoot } from './assets.js';
import { type CliRun, runCli, startCli } from './cli.js';
import { type Mosquitto, startMosquitto } from './mosquitto.js';
import { type SshdTarget, type SshLab, startSshLab } from './sshd.js';

interface TeardownTarget {
  teardown(fn: () => unknown): void;
}

/** The small model every device starts with (uint8 [1,128,128,3], 1001 classes). */
const START_MODEL = model('mobilenet_v1_0.25_128_quant.tflite');
/** The systemctl stand-in. */
const SYSTEMCTL = path.join(repoRoot, 'test', 'helpers', 'bin', 'systemctl');

interface FleetDevice {
  readonly name: string;
  readonly target: SshdTarget;
  readonly root: string;
}

export interface FleetLab {
  readonly lab: SshLab;
  readonly broker: Mosquitto;
  readonly devices: readonly FleetDevice[];
  /** The configuration to install with bootstrap (the same for every device). */
  readonly config: string;
  /** The fleet inventory: every device, plus `gone` (a closed port). */
  readonly inventory: string;
  /** Runs `edge-classifier fleet -i INVENTORY ARGS…` to completion. */
  fleet(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** Starts it without waiting. */
  startFleet(t: TeardownTarget, args: readonly string[]): CliRun;
  device(name: string): FleetDevice;
  /** The version `current` points to on a device, or null. */
  current(name: string): string | null;
  /** The daemon's health file on a device, parsed, or null. */
  healthFile(name: string): { pid: number; model?: { sha256: string } } | null;
}

const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

export { sha256 };

function seedPiOs(root: string): void {
  const etc = path.join(root, 'etc');
  mkdirSync(etc, { recursive: true });
  writeFileSync(path.join(etc, 'passwd'), 'root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000:,,,:/home/pi:/bin/bash\n');
  writeFileSync(path.join(etc, 'group'), 'root:x:0:\nvideo:x:44:pi\ngpio:x:997:pi\npi:x:1000:\n');
  writeFileSync(path.join(etc, 'shadow'), 'root:*:19000:0:99999:7:::\npi:*:19000:0:99999:7:::\n', { mode: 0o640 });
  writeFileSync(path.join(etc, 'gshadow'), 'root:*::\nvideo:!::pi\ngpio:!::pi\npi:!::\n', { mode: 0o640 });
}

/** Starts the broker and one device per name; `extra` adds inventory keys per host (groups, builder). */
export async function startFleetLab(t: TeardownTarget, names: readonly string[], extra: Record<string, Record<string, unknown>> = {}): Promise<FleetLab> {
  const broker = await startMosquitto(t);
  // A builder's session gets the test user's npm settings and cache and
  // node-gyp's Node.js headers (the session's HOME is its own folder), and
  // the asset mirror for pack's default model: a build needs no network.
  const lab = await startSshLab(t, names, {
    env: {
      npm_config_userconfig: path.join(homedir(), '.npmrc'),
      npm_config_cache: path.join(homedir(), '.npm'),
      XDG_CACHE_HOME: path.join(homedir(), '.cache'),
      EDGE_CLASSIFIER_MIRROR: assetsDir,
    },
  });
  const frames = path.join(lab.dir, 'frames');
  mkdirSync(frames);
  for (const f of ['cat.png', 'hot_dog.jpg']) copyFileSync(image(f), path.join(frames, f));
  const config = path.join(lab.dir, 'config.yaml');
  writeFileSync(
    config,
    [
      `source: { spec: ${JSON.stringify(frames)}, fps: 2 }`,
      `model: { path: ${JSON.stringify(START_MODEL)} }`,
      'inference: { threads: 1 }',
      `mqtt: { url: ${JSON.stringify(broker.url)} }`,
      'gpio: { backend: virtual }',
      'log: { level: info, format: json }',
      '',
    ].join('\n'),
  );
  const devices: FleetDevice[] = [];
  for (const target of lab.targets) {
    seedPiOs(target.root);
    symlinkSync(SYSTEMCTL, path.join(target.bin, 'systemctl'));
    // One configuration for the fleet; what differs per device (its MQTT
    // base topic: the machine id is the same for all of them here) comes
    // from the unit's environment file, as a fleet would set it.
    mkdirSync(path.join(target.root, 'etc', 'edge-classifier'), { recursive: true });
    writeFileSync(path.join(target.root, 'etc', 'edge-classifier', 'env'), `EDGE_CLASSIFIER_BASE_TOPIC=edge-classifier/${target.name}\n`);
    devices.push({ name: target.name, target, root: target.root });
    lab.onTeardown(() => runStandin(['stop', 'edge-classifier'], { ...process.env, EDGE_CLASSIFIER_ROOT: target.root }).catch(() => undefined));
  }
  const inventory = await lab.writeInventory({ gone: { address: '127.0.0.1', port: 1 }, ...extra });
  const env = { ...process.env, EDGE_CLASSIFIER_INVENTORY: inventory };
  const device = (name: string): FleetDevice => {
    const d = devices.find((x) => x.name === name);
    if (!d) throw new Error(`no device ${name}`);
    return d;
  };
  return {
    lab,
    broker,
    devices,
    config,
    inventory,
    device,
    fleet: (args) => runCli(['fleet', ...args], { env }),
    startFleet: (tt, args) => startCli(tt, ['fleet', ...args], { env }),
    current: (name) => {
      const link = path.join(device(name).root, 'opt', 'edge-classifier', 'current');
      return existsSync(link) ? path.basename(readlinkSync(link)) : null;
    },
    healthFile: (name) => {
      try {
        return JSON.parse(readFileSync(path.join(device(name).root, 'run', 'edge-classifier', 'health.json'), 'utf8')) as {
          pid: number;
          model?: { sha256: string };
        };
      } catch {
        return null;
      }
    },
  };
}

function runStandin(args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve) => execFile(SYSTEMCTL, args, { env, timeout: 20_000 }, () => resolve()));
}
