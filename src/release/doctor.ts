import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { connect } from 'node:net';
import path from 'node:path';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { raspberryPiModel } from '../gpio/access.js';
import { EdgeTpuUnavailableError, edgeTpuDelegate } from '../inference/delegate.js';
import { execCapture } from './exec.js';
import type { Layout } from './layout.js';
import { type ReleaseManifest, readManifest } from './manifest.js';
import { execStartProgram, type NodeIdentity, nodeIdentity, readInstalledUnit } from './unit-file.js';

/** One line of `doctor`. */
export interface DoctorCheck {
  /** Short name: `node`, `arch`, `tflite`, `camera`, `gpio`, `edgetpu`, `disk`, `clock`, `broker`, `unit`, ... */
  readonly name: string;
  readonly status: 'ok' | 'warn' | 'fail';
  /** What was found. */
  readonly detail: string;
  /** What to do, for warn and fail. */
  readonly fix?: string;
}

/** What `doctor --json` prints. */
export interface DoctorReport {
  /** No check failed (warnings allowed). */
  readonly ok: boolean;
  readonly checks: DoctorCheck[];
}

/** Options of {@link doctor}. */
export interface DoctorOptions {
  readonly layout: Layout;
  /** `--node`: the Node.js to check instead of the unit's ExecStart. */
  readonly node?: string;
  /** Root of /sys, /dev and /proc (a fake tree in tests). Default `/`. */
  readonly sysRoot?: string;
  /** Bound on the broker connection attempt, ms. Default 3000. */
  readonly brokerTimeoutMs?: number;
  readonly env?: NodeJS.ProcessEnv;
}

/** Least free space in the state folder, bytes, below which doctor fails (a release unpacks to ~150 MB). */
const DISK_FAIL_BYTES = 200 * 1024 * 1024;
/** Free space below which doctor warns, bytes. */
const DISK_WARN_BYTES = 600 * 1024 * 1024;
/** Oldest Node.js the program supports (package.json engines). */
const MIN_NODE_MAJOR = 20;

const ok = (name: string, detail: string): DoctorCheck => ({ name, status: 'ok', detail });
const warn = (name: string, detail: string, fix: string): DoctorCheck => ({ name, status: 'warn', detail, fix });
const fail = (name: string, detail: string, fix: string): DoctorCheck => ({ name, status: 'fail', detail, fix });

/** Groups of `user` (from `id -nG`), or null when the user does not exist. */
async function groupsOf(user: string): Promise<string[] | null> {
  const r = await execCapture('id', ['-nG', user], { timeoutMs: 5_000 });
  return r.code === 0 ? r.stdout.trim().split(/\s+/) : null;
}

/** The gid of group `name` from /etc/group, or null. */
function groupId(name: string): number | null {
  try {
    for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
      const [g, , gid] = line.split(':');
      if (g === name) return Number(gid);
    }
  } catch {
    // no /etc/group
  }
  return null;
}

function nodeChecks(node: NodeIdentity | Error, nodeSource: string, release: ReleaseManifest | null, current: string | null): DoctorCheck[] {
  if (node instanceof Error) return [fail('node', node.message, `install Node.js ${MIN_NODE_MAJOR} or later and point the unit's ExecStart at it`)];
  const checks: DoctorCheck[] = [];
  const major = Number(node.version.replace(/^v/, '').split('.')[0]);
  const what = `${node.path} ${node.version} (ABI ${node.abi}, ${nodeSource})`;
  if (major < MIN_NODE_MAJOR)
    checks.push(
      fail(
        'node',
        `${what} is older than Node.js ${MIN_NODE_MAJOR}`,
        `install Node.js ${MIN_NODE_MAJOR} or later (Raspberry Pi OS's own nodejs is 18: use NodeSource's arm64 packages)`,
      ),
    );
  else if (release === null) checks.push(warn('node', `${what}; no current release to compare with`, 'activate a release'));
  else if (release.node_abi !== node.abi)
    checks.push(
      fail(
        'node',
        `${what}, but release ${release.version} was built with ${release.node_version} (ABI ${release.node_abi}): its native modules will not load`,
        `install a release packed with Node.js ${release.node_version.split('.')[0]}, or run npm rebuild in ${current}`,
      ),
    );
  else checks.push(ok('node', `${what} matches release ${release.version}`));
  if (node.arch === 'arm')
    checks.push(fail('arch', 'linux-arm (32-bit): the TFLite library ships for linux x64 and arm64 only', 'install 64-bit Raspberry Pi OS'));
  else if (release !== null && release.arch !== node.arch)
    checks.push(
      fail(
        'arch',
        `this Node.js runs on linux-${node.arch}, release ${release.version} is for linux-${release.arch}`,
        `install the linux-${node.arch} archive`,
      ),
    );
  else checks.push(ok('arch', `linux-${node.arch}${release ? ` (release ${release.version}: linux-${release.arch})` : ''}`));
  return checks;
}

/**
 * Runs the current release's own self-test (`run --check-config
 * --self-test`) with the live configuration, and files each problem it
 * names under `config`, `tflite`, `sharp`, `gpio` or `release`.
 */
async function selfTestChecks(o: DoctorOptions, node: string, programDir: string, hasConfig: boolean): Promise<DoctorCheck[]> {
  const cli = path.join(programDir, 'dist', 'cli.js');
  const r = await execCapture(node, [cli, 'run', '--check-config', '--self-test', ...(hasConfig ? ['--config', o.layout.configFile] : [])], {
    cwd: programDir,
    timeoutMs: 180_000,
    env: { ...(o.env ?? process.env), NOTIFY_SOCKET: '', RUNTIME_DIRECTORY: '' },
  });
  const names = ['config', 'tflite', 'sharp', 'gpio', 'release'] as const;
  const found = new Map<string, string[]>(names.map((n) => [n, []]));
  if (r.code !== 0) {
    const lines = r.stderr
      .split('\n')
      .map((l) =>
        l
          .replace(/^\s*-\s*/, '')
          .replace(/^edge-classifier: (invalid configuration[^:]*: ?)?/, '')
          .trim(),
      )
      .filter((l) => l !== '');
    for (const line of lines) {
      const kind =
        line.startsWith('inference') || /tflite/i.test(line)
          ? 'tflite'
          : line.startsWith('sharp')
            ? 'sharp'
            : line.startsWith('gpio')
              ? 'gpio'
              : line.startsWith('release')
                ? 'release'
                : 'config';
      found.get(kind)!.push(line);
    }
    if (lines.length === 0) found.get('config')!.push(`the self-test exited ${r.code ?? r.signal} without a message`);
  }
  const fixes: Record<(typeof names)[number], string> = {
    config: `fix ${o.layout.configFile} (edge-classifier run --check-config --config ${o.layout.configFile} lists the problems)`,
    tflite: `install the release packed for this machine (the TFLite C library and koffi come prebuilt for linux x64 and arm64), or set inference.library to a libtensorflowlite_c.so built for linux-${process.arch}`,
    sharp: `install the release packed for this machine, or run npm rebuild sharp in ${programDir}`,
    gpio: `run npm rebuild epoll onoff in ${programDir} (onoff's native part), and add the service user to the gpio group`,
    release: 'install the release again from its archive',
  };
  const okText: Record<(typeof names)[number], string> = {
    config: `${hasConfig ? o.layout.configFile : 'the default configuration'} is valid`,
    tflite: 'the TFLite library loads the configured model on the configured engine',
    sharp: 'sharp (libvips) loads and decodes',
    gpio: 'the configured GPIO backend loads',
    release: 'the program files are as packed',
  };
  return names.map((n) => (found.get(n)!.length > 0 ? fail(n, found.get(n)!.join('; '), fixes[n]) : ok(n, okText[n])));
}

async function cameraChecks(config: Config | null, user: string | null, sysRoot: string, env: NodeJS.ProcessEnv): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  const spec = config?.source.spec ?? 'rpicam';
  const onPath = async (name: string) => (await execCapture('sh', ['-c', 'command -v "$1"', 'sh', name], { env, timeoutMs: 5_000 })).stdout.trim();
  const camera = spec.startsWith('rpicam');
  const v4l2 = spec.startsWith('/dev/video');
  if (camera) {
    const prog = (await onPath('rpicam-vid')) || (await onPath('libcamera-vid'));
    checks.push(
      prog
        ? ok('camera', `Pi camera source: ${prog}`)
        : fail('camera', 'the source is the Pi camera, but neither rpicam-vid nor libcamera-vid is on PATH', 'sudo apt install rpicam-apps'),
    );
  } else if (/^[a-z]+:\/\//.test(spec) || v4l2 || (existsSync(spec) && statSync(spec).isFile())) {
    const prog = await onPath('ffmpeg');
    checks.push(
      prog
        ? ok('camera', `source ${spec.replace(/\/\/[^@/]*@/, '//***@')} through ${prog}`)
        : fail('camera', `the source ${spec} needs ffmpeg, which is not on PATH`, 'sudo apt install ffmpeg'),
    );
  } else {
    checks.push(ok('camera', `source ${spec}: a folder of images (no camera)`));
  }
  if (camera || v4l2) {
    const groups = user ? await groupsOf(user) : null;
    if (user && groups === null)
      checks.push(fail('video-group', `the service user ${user} does not exist`, `sudo useradd --system --groups video,gpio ${user}`));
    else if (user && !groups!.includes('video'))
      checks.push(fail('video-group', `the service user ${user} is not in the video group (groups: ${groups!.join(' ')})`, `sudo usermod -aG video ${user}`));
    else if (user) checks.push(ok('video-group', `${user} is in the video group`));
    if (camera) {
      const heapDir = path.join(sysRoot, 'dev', 'dma_heap');
      const videoGid = groupId('video');
      const heaps = existsSync(heapDir) ? readdirSync(heapDir) : [];
      if (heaps.length === 0)
        checks.push(fail('dma_heap', `no ${heapDir}: libcamera allocates frame buffers there`, 'use a Raspberry Pi OS Bookworm kernel (dma_heap is built in)'));
      else {
        const closed = heaps.filter((h) => {
          const st = statSync(path.join(heapDir, h));
          return !(st.mode & 0o006) && !(st.gid === videoGid && st.mode & 0o060);
        });
        checks.push(
          closed.length === 0
            ? ok('dma_heap', `${heaps.map((h) => path.join(heapDir, h)).join(', ')} usable by the video group`)
            : fail(
                'dma_heap',
                `${closed.join(', ')} in ${heapDir} not readable and writable by the video group`,
                'add a udev rule: SUBSYSTEM=="dma_heap", GROUP="video", MODE="0660"',
              ),
        );
      }
    }
  }
  return checks;
}

async function gpioChecks(config: Config | null, user: string | null, sysRoot: string): Promise<DoctorCheck[]> {
  const backend = config?.gpio.backend ?? 'auto';
  const rules = config?.gpio.rules.length ?? 0;
  const board = raspberryPiModel(sysRoot);
  const classDir = path.join(sysRoot, 'sys', 'class', 'gpio');
  if (backend === 'virtual') return [ok('gpio-chip', `gpio.backend is virtual (${rules} rule${rules === 1 ? '' : 's'}): no pin is driven`)];
  if (!existsSync(classDir)) {
    if (board?.startsWith('Raspberry Pi'))
      return [
        fail(
          'gpio-chip',
          `${board} without ${classDir}: the kernel's sysfs GPIO interface is missing`,
          'use the Raspberry Pi OS kernel (CONFIG_GPIO_SYSFS), or set gpio.backend: virtual',
        ),
      ];
    return [
      backend === 'sysfs'
        ? fail('gpio-chip', `gpio.backend is sysfs but this machine has no ${classDir}`, 'set gpio.backend: virtual')
        : ok('gpio-chip', `no GPIO on this machine (${board ?? 'not a Raspberry Pi'}): gpio.backend auto uses virtual GPIO`),
    ];
  }
  const checks: DoctorCheck[] = [];
  const chips = readdirSync(classDir).filter((n) => n.startsWith('gpiochip'));
  const labels = chips.map((c) => {
    try {
      return readFileSync(path.join(classDir, c, 'label'), 'utf8').trim();
    } catch {
      return '?';
    }
  });
  const header = labels.find((l) => l.startsWith('pinctrl-'));
  checks.push(
    header
      ? ok('gpio-chip', `header GPIO chip ${header}${board ? ` on ${board}` : ''}`)
      : warn('gpio-chip', `no Raspberry Pi header GPIO chip among ${labels.join(', ') || 'none'}`, 'check the board; gpio.backend: virtual runs without pins'),
  );
  const exportFile = path.join(classDir, 'export');
  try {
    const st = statSync(exportFile);
    const gpioGid = groupId('gpio');
    const groupWritable = st.gid === gpioGid && (st.mode & 0o020) !== 0;
    const groups = user ? await groupsOf(user) : null;
    if (!groupWritable && !(st.mode & 0o002))
      checks.push(
        fail(
          'gpio-permissions',
          `${exportFile} is not writable by the gpio group`,
          "Raspberry Pi OS's udev rules (99-com.rules) give it to group gpio: install them",
        ),
      );
    else if (user && groups && !groups.includes('gpio'))
      checks.push(fail('gpio-permissions', `the service user ${user} is not in the gpio group`, `sudo usermod -aG gpio ${user}`));
    else checks.push(ok('gpio-permissions', `${exportFile} writable by the gpio group${user ? `, ${user} is in it` : ''}`));
  } catch (err) {
    checks.push(fail('gpio-permissions', `${exportFile}: ${(err as NodeJS.ErrnoException).code}`, 'use the Raspberry Pi OS kernel'));
  }
  return checks;
}

function edgeTpuCheck(config: Config | null, sysRoot: string): DoctorCheck {
  if (config?.inference.delegate !== 'edgetpu') return ok('edgetpu', 'not configured (inference.delegate is cpu)');
  const usb = path.join(sysRoot, 'sys', 'bus', 'usb', 'devices');
  let found: string | null = null;
  for (const d of existsSync(usb) ? readdirSync(usb) : []) {
    try {
      const id = `${readFileSync(path.join(usb, d, 'idVendor'), 'utf8').trim()}:${readFileSync(path.join(usb, d, 'idProduct'), 'utf8').trim()}`;
      // 1a6e:089a before the runtime loads its firmware, 18d1:9302 after.
      if (id === '1a6e:089a' || id === '18d1:9302') found = `USB accelerator ${id}`;
    } catch {
      // not a device with ids
    }
  }
  if (existsSync(path.join(sysRoot, 'dev', 'apex_0'))) found = 'PCIe/M.2 accelerator /dev/apex_0';
  const fallback = config.model.cpu_fallback ? ` (model.cpu_fallback ${path.basename(config.model.cpu_fallback)} runs without it)` : '';
  return found
    ? ok('edgetpu', found)
    : warn(
        'edgetpu',
        `inference.delegate is edgetpu but no Coral accelerator is attached${fallback}`,
        'plug in the accelerator (USB 3 port), or set inference.delegate: cpu',
      );
}

/**
 * The Edge TPU runtime when `inference.delegate` is edgetpu: libedgetpu.so.1
 * (or EDGE_CLASSIFIER_EDGETPU_LIB) found for this CPU, exporting the external
 * delegate entry points, and loading (dlopen in a child process). A fail
 * without `model.cpu_fallback` (the daemon refuses to start), a warning with
 * it (the fallback model runs on the CPU).
 * @returns null when the Edge TPU is not configured.
 */
async function edgeTpuLibraryCheck(config: Config | null, env: NodeJS.ProcessEnv): Promise<DoctorCheck | null> {
  if (config?.inference.delegate !== 'edgetpu') return null;
  try {
    const d = await edgeTpuDelegate({ env, ...(config.inference.edgetpu_device ? { device: config.inference.edgetpu_device } : {}) });
    return ok('edgetpu-library', `${d.path} loads`);
  } catch (err) {
    if (!(err instanceof EdgeTpuUnavailableError)) throw err;
    const fix = "install the Edge TPU runtime (libedgetpu1-std from Coral's apt repository), or set inference.delegate: cpu";
    return config.model.cpu_fallback
      ? warn('edgetpu-library', `${err.message}; model.cpu_fallback ${path.basename(config.model.cpu_fallback)} runs instead`, fix)
      : fail('edgetpu-library', err.message, fix);
  }
}

async function diskCheck(layout: Layout): Promise<DoctorCheck> {
  let dir = layout.stateDir;
  while (!existsSync(dir) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  const s = await statfs(dir);
  const free = s.bavail * s.bsize;
  const text = `${Math.floor(free / 1048576)} MiB free in ${dir}`;
  if (free < DISK_FAIL_BYTES)
    return fail('disk', `${text}: too little for a release (~150 MiB unpacked) and models`, 'edge-classifier release prune --keep 2, or free space');
  if (free < DISK_WARN_BYTES) return warn('disk', `${text}: room for about one more release`, 'edge-classifier release prune --keep 2');
  return ok('disk', text);
}

async function clockCheck(env: NodeJS.ProcessEnv): Promise<DoctorCheck> {
  const r = await execCapture('timedatectl', ['show', '-p', 'NTPSynchronized', '--value'], { timeoutMs: 5_000, env });
  const value = r.stdout.trim();
  if (value === 'yes') return ok('clock', 'synchronised (timedatectl: NTPSynchronized=yes)');
  if (value === 'no')
    return warn(
      'clock',
      'not synchronised (timedatectl: NTPSynchronized=no): prediction times and TLS certificate checks depend on it (a Pi has no battery clock)',
      'sudo timedatectl set-ntp true, and let UDP port 123 out',
    );
  const why = r.spawnError ? `timedatectl not found (${r.spawnError.code})` : `timedatectl failed: ${(r.stderr.trim() || `exit ${r.code}`).split('\n')[0]}`;
  return warn('clock', `cannot tell whether the clock is synchronised: ${why}`, 'run on a systemd machine with systemd-timesyncd');
}

function brokerCheck(config: Config | null, timeoutMs: number): Promise<DoctorCheck> {
  const url = config?.mqtt.url ?? null;
  if (url === null) return Promise.resolve(ok('broker', 'embedded broker on 127.0.0.1 (mqtt.url is null): nothing off the device can subscribe'));
  let host: string;
  let port: number;
  try {
    const u = new URL(url);
    host = u.hostname.replace(/^\[|\]$/g, '');
    const defaults: Record<string, number> = { 'mqtt:': 1883, 'tcp:': 1883, 'mqtts:': 8883, 'ssl:': 8883, 'tls:': 8883, 'ws:': 80, 'wss:': 443 };
    port = u.port ? Number(u.port) : (defaults[u.protocol] ?? 1883);
  } catch {
    return Promise.resolve(fail('broker', `mqtt.url ${url} is not a URL`, 'e.g. mqtt://broker.local:1883'));
  }
  const where = `${host}:${port}`;
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: timeoutMs });
    const done = (c: DoctorCheck) => {
      socket.destroy();
      resolve(c);
    };
    socket.once('connect', () => done(ok('broker', `${where} accepts TCP connections`)));
    socket.once('timeout', () =>
      done(fail('broker', `${where} did not answer within ${timeoutMs} ms`, 'check the broker address, the network and its firewall')),
    );
    socket.once('error', (err: NodeJS.ErrnoException) =>
      done(
        fail(
          'broker',
          `${where}: ${err.code ?? err.message}`,
          err.code === 'ENOTFOUND' ? 'check the host name (DNS, /etc/hosts)' : 'start the broker or fix mqtt.url',
        ),
      ),
    );
  });
}

/**
 * `doctor`: the device's preflight, one check per line, each ok / warn /
 * fail with the fix: the Node.js the unit runs (version, ABI and arch
 * against the current release), the release's own self-test (configuration,
 * TFLite library and model, sharp, GPIO backend, program files), the camera
 * program and the service user's `video` group and `/dev/dma_heap`, the
 * GPIO chip and permissions, the Edge TPU (accelerator and runtime library)
 * when configured, free disk in the
 * state folder, clock synchronisation (`timedatectl`), the broker's TCP
 * port, and the unit (installed, its ExecStart Node.js the one checked).
 */
export async function doctor(o: DoctorOptions): Promise<DoctorReport> {
  const { layout } = o;
  const sysRoot = o.sysRoot ?? '/';
  const env = o.env ?? process.env;
  const checks: DoctorCheck[] = [];
  const unit = readInstalledUnit(layout);
  const unitNode = unit ? execStartProgram(unit) : undefined;
  const user = unit?.get('Service')?.get('User')?.at(-1) ?? null;
  const nodePath = o.node ?? unitNode ?? process.execPath;
  const nodeSource = o.node ? '--node' : unitNode ? "the unit's ExecStart" : 'this process; no unit installed';
  const node = await nodeIdentity(nodePath).catch((err: Error) => err);

  let release: ReleaseManifest | null = null;
  let programDir: string | null = null;
  if (existsSync(layout.current)) {
    programDir = realpathSync(layout.current);
    release = await readManifest(programDir).catch(() => null);
  }
  checks.push(...nodeChecks(node, nodeSource, release, programDir));
  checks.push(
    release
      ? ok('release', `current → ${release.version} (commit ${release.commit.slice(0, 12)}, built ${release.built_at})`)
      : fail('release', `no current release at ${layout.current}`, 'edge-classifier release install ARCHIVE, then release activate VERSION'),
  );

  let config: Config | null = null;
  const hasConfig = existsSync(layout.configFile);
  try {
    config = loadConfig({ file: hasConfig ? layout.configFile : undefined });
  } catch {
    // the self-test below reports it
  }
  if (programDir && !(node instanceof Error)) checks.push(...(await selfTestChecks(o, node.path, programDir, hasConfig)));
  if (!hasConfig)
    checks.push(
      warn(
        'config',
        `no ${layout.configFile}: the daemon runs on defaults (Pi camera, embedded broker)`,
        'copy systemd/config.example.yaml there and set at least mqtt.url',
      ),
    );
  checks.push(...(await cameraChecks(config, user, sysRoot, env)));
  checks.push(...(await gpioChecks(config, user, sysRoot)));
  checks.push(edgeTpuCheck(config, sysRoot));
  const library = await edgeTpuLibraryCheck(config, env);
  if (library) checks.push(library);
  checks.push(await diskCheck(layout));
  checks.push(await clockCheck(env));
  checks.push(await brokerCheck(config, o.brokerTimeoutMs ?? 3_000));

  if (!unit)
    checks.push(
      fail('unit', `${layout.unitFile} is not installed`, `edge-classifier unit --node ${process.execPath} > ${layout.unitFile}, then systemctl daemon-reload`),
    );
  else if (unitNode === undefined) checks.push(fail('unit', `${layout.unitFile} has no ExecStart=`, 'install the unit again'));
  else {
    const real = (p: string) => (existsSync(p) ? realpathSync(p) : p);
    if (real(unitNode) !== real(nodePath))
      checks.push(
        warn('unit', `ExecStart runs ${unitNode}, but the checks above used ${nodePath} (--node)`, "run doctor without --node to check the unit's Node.js"),
      );
    else if (real(unitNode) !== real(process.execPath))
      checks.push(
        warn(
          'unit',
          `ExecStart runs ${unitNode} (checked above), but this shell runs ${process.execPath}: what you rebuild or run by hand uses another Node.js than the service`,
          `use ${unitNode} for npm rebuild and manual runs`,
        ),
      );
    else checks.push(ok('unit', `${layout.unitFile}: ExecStart runs ${unitNode}, the Node.js checked above`));
  }
  return { ok: checks.every((c) => c.status !== 'fail'), checks };
}

/** The report as aligned text lines: `ok   name  detail` and `FAIL name  detail — fix: ...`. */
export function formatDoctor(r: DoctorReport): string {
  const width = Math.max(...r.checks.map((c) => c.name.length));
  return r.checks
    .map((c) => `${c.status === 'ok' ? 'ok  ' : c.status === 'warn' ? 'warn' : 'FAIL'} ${c.name.padEnd(width)}  ${c.detail}${c.fix ? ` — fix: ${c.fix}` : ''}`)
    .join('\n');
}
