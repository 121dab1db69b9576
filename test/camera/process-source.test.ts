import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import sharp from 'sharp';
import t from 'tap';
import { ProcessSource, restartDelayMs } from '../../src/camera/process-source.js';
import { silentLogger } from '../../src/core/log.js';
import type { Frame } from '../../src/core/types.js';
import { image } from '../helpers/assets.js';
import { startWith } from '../helpers/sources.js';

const here = path.dirname(new URL(import.meta.url).pathname);
const tmp = mkdtempSync(path.join(os.tmpdir(), 'process-source-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

/** True while `pid` is a live process (a zombie awaiting its reaper counts as gone). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** A pino logger whose records land in `records`. */
function capturingLogger(records: Record<string, unknown>[]) {
  return pino({ level: 'debug' }, { write: (line: string) => void records.push(JSON.parse(line)) });
}

const testsrc = (rate: number, extra: string[] = []) => [
  '-hide_banner',
  '-loglevel',
  'warning',
  '-nostdin',
  '-re',
  '-f',
  'lavfi',
  '-i',
  `testsrc=size=320x240:rate=${rate}`,
  ...extra,
  '-f',
  'mjpeg',
  '-q:v',
  '5',
  '-',
];

function waitFor(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const poll = setInterval(() => {
      if (predicate()) {
        clearInterval(poll);
        resolve();
      } else if (Date.now() - started > timeoutMs) {
        clearInterval(poll);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }
    }, 10);
  });
}

// A child that writes `count` JPEG frames `everyMs` apart, 25 stderr lines and a last one, then exits with `code`.
const fakeCamera = `
const fs = require('fs');
const [file, count, everyMs, code] = process.argv.slice(1);
const jpeg = fs.readFileSync(file);
for (let i = 1; i <= 25; i++) process.stderr.write('line ' + i + '\\n');
let k = 0;
const tick = () => {
  if (k++ < Number(count)) { process.stdout.write(jpeg); setTimeout(tick, Number(everyMs)); }
  else process.stderr.write('fatal: camera unplugged\\n', () => process.exit(Number(code)));
};
tick();
`;
const smallJpeg = path.join(tmp, 'small.jpg');
writeFileSync(smallJpeg, await sharp(image('cat.png')).resize(64).jpeg().toBuffer());

t.test('restartDelayMs doubles from the initial delay up to the cap', async (t) => {
  t.same(
    [0, 1, 2, 3, 4, 5, 6].map((n) => restartDelayMs(n)),
    [1000, 2000, 4000, 8000, 16000, 30000, 30000],
  );
  t.equal(restartDelayMs(3, 50, 300), 300);
});

t.test('ffmpeg testsrc: decodable JPEGs, increasing seq, ~10 fps, stop() leaves no process', async (t) => {
  const source = new ProcessSource({ command: 'ffmpeg', args: testsrc(10), description: 'testsrc 320x240@10', log: silentLogger() });
  const frames: Frame[] = [];
  source.listen((f) => frames.push(f));
  await source.start();
  const pid = source.pid!;
  t.ok(pid > 0 && alive(pid), 'child running');
  await waitFor(() => frames.length >= 25, 6000, '25 frames');
  const fps = source.stats().fps;
  t.ok(fps > 8 && fps < 12, `measured ${fps.toFixed(2)} fps`);
  t.same(
    frames.map((f) => f.seq),
    frames.map((_, i) => i + 1),
    'seq 1, 2, 3, ...',
  );
  t.ok(
    frames.every((f, i) => i === 0 || f.arrivedAt > frames[i - 1].arrivedAt),
    'arrival times increase',
  );
  for (const f of [frames[0], frames[frames.length - 1]]) {
    const meta = await sharp(f.data).metadata();
    t.same([meta.format, meta.width, meta.height], ['jpeg', 320, 240]);
  }
  const stopping = performance.now();
  await source.stop();
  t.ok(performance.now() - stopping < 1500, 'ffmpeg exits on SIGTERM');
  t.notOk(alive(pid), `pid ${pid} is gone`);
  t.equal(source.pid, undefined);
  const count = frames.length;
  await new Promise((r) => setTimeout(r, 200));
  t.equal(frames.length, count, 'no frame after stop()');
  const stats = source.stats();
  t.equal(stats.frames, count);
  t.equal(stats.restarts, 0);
  t.equal(stats.lastError, undefined);
  await source.stop(); // idempotent
});

t.test('a dying ffmpeg is restarted with backoff; seq continues across restarts', async (t) => {
  const records: Record<string, unknown>[] = [];
  const source = new ProcessSource({
    command: 'ffmpeg',
    args: testsrc(25, ['-frames:v', '5']),
    description: 'short ffmpeg',
    log: capturingLogger(records),
    initialBackoffMs: 50,
  });
  const frames: Frame[] = [];
  source.listen((f) => frames.push(f));
  await source.start();
  await waitFor(() => source.stats().restarts >= 2 && frames.length >= 15, 8000, 'two restarts');
  await source.stop();
  t.same(
    frames.slice(0, 15).map((f) => f.seq),
    Array.from({ length: 15 }, (_, i) => i + 1),
  );
  const meta = await sharp(frames[14].data).metadata();
  t.same([meta.width, meta.height], [320, 240], 'frames after a restart decode');
  const warnings = records.filter((r) => r.level === 40);
  t.match(warnings[0], { msg: /^ffmpeg exited with code 0 after 5 frames; restarting in 50 ms$/, code: 0, restartInMs: 50 });
  t.match(warnings[1], { restartInMs: 100 }, 'the delay doubles');
  // ffmpeg 5.1 always warns "deprecated pixel format used" when it scales to yuvj420p; that is its last stderr line here.
  t.match(source.stats().lastError, /^ffmpeg exited with code 0(: .+)?$/);
});

t.test('the exit warning carries the exit code and the last 20 stderr lines', async (t) => {
  const records: Record<string, unknown>[] = [];
  const source = new ProcessSource({
    command: process.execPath,
    args: ['-e', fakeCamera, smallJpeg, '3', '0', '3'],
    description: 'fake camera',
    log: capturingLogger(records),
    initialBackoffMs: 40,
    maxBackoffMs: 80,
  });
  const frames: Frame[] = [];
  source.listen((f) => frames.push(f));
  await source.start();
  await waitFor(() => frames.length >= 12, 8000, 'four runs of 3 frames');
  await source.stop();
  t.same(
    frames.slice(0, 12).map((f) => f.seq),
    Array.from({ length: 12 }, (_, i) => i + 1),
  );
  t.ok(frames[0].data.equals(readFileSync(smallJpeg)));
  const warnings = records.filter((r) => r.level === 40);
  t.match(warnings[0], { code: 3, signal: null, msg: /^node exited with code 3 after 3 frames; restarting in 40 ms$/ });
  const stderr = warnings[0].stderr as string[];
  t.equal(stderr.length, 20);
  t.equal(stderr[0], 'line 7');
  t.equal(stderr[19], 'fatal: camera unplugged');
  t.same(
    warnings.slice(0, 3).map((w) => w.restartInMs),
    [40, 80, 80],
    'doubling, capped at maxBackoffMs',
  );
  t.ok(
    records.some((r) => r.level === 20 && r.msg === 'node: line 1'),
    'stderr lines logged at debug',
  );
  t.equal(source.stats().lastError, 'node exited with code 3: fatal: camera unplugged');
  t.ok(source.stats().restarts >= 3);
});

t.test('a child that delivered frames long enough resets the backoff', async (t) => {
  const records: Record<string, unknown>[] = [];
  const source = new ProcessSource({
    command: process.execPath,
    args: ['-e', fakeCamera, smallJpeg, '4', '60', '1'],
    description: 'fake camera',
    log: capturingLogger(records),
    initialBackoffMs: 30,
    backoffResetMs: 100, // each run delivers frames over ~180 ms
  });
  await source.start();
  await waitFor(() => source.stats().restarts >= 3, 8000, 'three restarts');
  await source.stop();
  const delays = records.filter((r) => r.level === 40).map((r) => r.restartInMs);
  t.same(delays.slice(0, 3), [30, 30, 30]);
});

t.test('stop() escalates to SIGKILL when the child ignores SIGTERM', async (t) => {
  const records: Record<string, unknown>[] = [];
  const stubborn = "process.on('SIGTERM', () => {}); process.stderr.write('ready\\n'); setInterval(() => {}, 1000);";
  const source = new ProcessSource({
    command: process.execPath,
    args: ['-e', stubborn],
    description: 'stubborn',
    log: capturingLogger(records),
    stopTimeoutMs: 300,
  });
  await source.start();
  const pid = source.pid!;
  await waitFor(() => records.some((r) => r.msg === 'node: ready'), 5000, 'child ready');
  const started = performance.now();
  await source.stop();
  const took = performance.now() - started;
  t.ok(took >= 280 && took < 2000, `stop() took ${took.toFixed(0)} ms`);
  t.notOk(alive(pid), 'child is gone');
  t.ok(records.some((r) => r.level === 40 && /did not exit 300 ms after SIGTERM: sending SIGKILL/.test(String(r.msg))));
  t.equal(records.filter((r) => r.level === 40 && /exited|killed/.test(String(r.msg))).length, 0, 'no restart warning');
});

t.test('a missing program is a clear error naming it and how to install it', async (t) => {
  const source = new ProcessSource({
    command: 'edge-classifier-no-such-camera-app',
    args: [],
    description: 'missing',
    log: silentLogger(),
    installHint: "install it with 'sudo apt install something'",
  });
  await t.rejects(source.start(), {
    message:
      "missing: cannot start the source: 'edge-classifier-no-such-camera-app' was not found on PATH (spawn ENOENT): install it with 'sudo apt install something'",
  });
  t.equal(source.pid, undefined);
  await source.stop();
  const byPath = new ProcessSource({ command: path.join(tmp, 'nope', 'ffmpeg'), args: [], description: 'by path', log: silentLogger() });
  await t.rejects(byPath.start(), { message: `by path: cannot start the source: '${path.join(tmp, 'nope', 'ffmpeg')}' does not exist (spawn ENOENT)` });
  const notExec = new ProcessSource({ command: smallJpeg, args: [], description: 'not exec', log: silentLogger() });
  await t.rejects(notExec.start(), { message: /not exec: cannot start the source: '.*small\.jpg' is not executable \(spawn EACCES\)/ });
});

t.test('start() twice is refused; a resolver error comes out of start()', async (t) => {
  const source = new ProcessSource({ command: 'ffmpeg', args: testsrc(5), description: 'twice', log: silentLogger() });
  await source.start();
  await t.rejects(source.start(), /twice: start\(\) called while the source is already running/);
  await source.stop();
  const resolving = new ProcessSource({
    command: () => {
      throw new Error('no camera program');
    },
    args: [],
    description: 'resolver',
    log: silentLogger(),
  });
  await t.rejects(resolving.start(), /no camera program/);
});

t.test('restart: false ends the source when the child exits 0', async (t) => {
  const source = new ProcessSource({
    command: 'ffmpeg',
    args: testsrc(50, ['-frames:v', '6']),
    description: 'finite',
    log: silentLogger(),
    restart: false,
  });
  const frames: Frame[] = [];
  const ended = new Promise<string>((resolve) => void startWith(source, (f) => frames.push(f), resolve));
  t.equal(await ended, 'ffmpeg exited with code 0 after 6 frames');
  t.equal(frames.length, 6);
  t.equal(source.stats().restarts, 0);
  await source.stop();
});

t.test('the child is killed when the parent process exits without stop()', async (t) => {
  const script = path.join(tmp, 'orphan.mts');
  const moduleUrl = pathToFileURL(path.join(here, '..', '..', 'src', 'camera', 'process-source.ts')).href;
  const logUrl = pathToFileURL(path.join(here, '..', '..', 'src', 'core', 'log.ts')).href;
  writeFileSync(
    script,
    `import { ProcessSource } from '${moduleUrl}';
import { silentLogger } from '${logUrl}';
// A child that never writes (so no broken pipe would end it) and lives in its own process group.
const source = new ProcessSource({ command: process.execPath, args: ['-e', 'setInterval(() => {}, 1000)'], description: 'orphan', log: silentLogger() });
await source.start();
console.log(source.pid);
process.exit(0);
`,
  );
  const parent = spawn(process.execPath, [...process.execArgv, script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  parent.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => parent.on('close', resolve));
  t.equal(code, 0);
  const pid = Number(out.trim().split('\n')[0]);
  t.ok(pid > 0, `child pid ${pid}`);
  await waitFor(() => !alive(pid), 2000, `pid ${pid} to be gone`).catch(() => {});
  t.notOk(alive(pid), 'the child did not outlive its parent');
});
