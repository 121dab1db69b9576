import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { ProcessSource } from '../../src/camera/process-source.js';
import { configuredStreamSize, createRpicamSource, type RpicamOptions, rpicamArgs, rpicamDescription, rpicamRawFormat } from '../../src/camera/rpicam.js';
import { silentLogger } from '../../src/core/log.js';
import { ProblemRegistry } from '../../src/core/problems.js';
import type { Frame } from '../../src/core/types.js';
import { Classifier } from '../../src/inference/classifier.js';
import { RawToTensor } from '../../src/inference/preprocess/raw-to-tensor.js';
import { image, model } from '../helpers/assets.js';
import { FAKE_RPICAM, fakeRpicamBin } from '../helpers/fake-camera.js';
import { ffmpegBytes } from '../helpers/raw-frames.js';
import { startWith } from '../helpers/sources.js';

const bin = fakeRpicamBin();
const program = path.join(bin, 'rpicam-vid');
const tmp = mkdtempSync(path.join(tmpdir(), 'ec-rpicam-raw-'));
t.teardown(() => {
  rmSync(tmp, { recursive: true, force: true });
  rmSync(bin, { recursive: true, force: true });
});

const capture: RpicamOptions = { width: 640, height: 480, fps: 20, rotation: 0, hflip: false, vflip: false, jpegQuality: 80 };
const model224 = { width: 224, height: 224 };

/** Runs `fn` with FAKE_RPICAM_* variables set in this process's environment (the stand-in inherits it). */
async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const old = { ...process.env };
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const k of Object.keys(vars)) {
      if (old[k] === undefined) delete process.env[k];
      else process.env[k] = old[k];
    }
  }
}

/** Collects frames until `until(frames)` holds; rejects after timeoutMs. */
function collect(source: ProcessSource, until: (frames: Frame[]) => boolean, timeoutMs = 40_000): Promise<Frame[]> {
  const got: Frame[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${source.description}: ${got.length} frames, stats ${JSON.stringify(source.stats())}`)), timeoutMs);
    startWith(source, (f) => {
      got.push(f);
      if (until(got)) {
        clearTimeout(timer);
        resolve(got);
      }
    }).catch(reject);
  });
}

function meanAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!);
  return sum / a.length;
}

t.test('raw arguments: I420 at a size made for the model, ROI by the camera, no JPEG quality', async (t) => {
  const stretch = { ...capture, raw: { ...model224, resize: 'stretch' as const } };
  t.same(rpicamArgs(stretch).slice(0, 13), ['-t', '0', '-n', '--codec', 'yuv420', '-o', '-', '--width', '288', '--height', '224', '--framerate', '20']);
  t.notOk(rpicamArgs(stretch).includes('--quality'));
  t.equal(rpicamDescription(stretch), 'rpicam 288x224@20 yuv420');
  const crop = { ...capture, raw: { ...model224, resize: 'crop' as const }, roi: { x: 0.25, y: 0, width: 0.5, height: 1 } };
  const args = rpicamArgs(crop);
  t.same(args.slice(7, 11), ['--width', '224', '--height', '224']);
  t.same(args.slice(-2), ['--roi', '0.25,0,0.5,1']);
  t.same(rpicamArgs({ ...capture, roi: { x: 0, y: 0, width: 1, height: 1 } }).includes('--roi'), false, 'the whole frame needs no --roi');
  t.same(configuredStreamSize('[0:01.2] [12]  INFO Camera camera.cpp:1197 configuring streams: (0) 304x224-YUV420/sYCC (1) 1640x1232-SBGGR10_CSI2P'), {
    width: 304,
    height: 224,
  });
  t.equal(configuredStreamSize('INFO Camera camera_manager.cpp:325 libcamera v0.3.2'), undefined);
  const f = rpicamRawFormat(288, 224);
  t.same(
    [f.format, f.width, f.height, f.format === 'i420' && f.layout.yStride, f.format === 'i420' && f.layout.frameBytes],
    ['i420', 288, 224, 320, 320 * 224 * 1.5],
  );
});

t.test('the stand-in rpicam-vid: I420 frames at the asked size and rate, the picture the camera sees', async (t) => {
  const problems = new ProblemRegistry();
  const options = { ...capture, raw: { ...model224, resize: 'crop' as const }, rpicamPath: program, problems };
  const frames = await withEnv({ FAKE_RPICAM_IMAGE: image('cat.png') }, async () => {
    const source = createRpicamSource(options, silentLogger());
    const got = await collect(source, (f) => f.length >= 12);
    await source.stop();
    return got;
  });
  const raw = frames[0]!.raw!;
  t.same([raw.format, raw.width, raw.height], ['i420', 224, 224]);
  t.equal(frames[0]!.data.length, 256 * 224 * 1.5, 'stride 256: frames split at 86016 bytes');
  const span = frames[11]!.arrivedAt - frames[1]!.arrivedAt;
  t.ok(span > 300 && span < 2000, `10 frame periods at 20 fps took ${span.toFixed(0)} ms`);
  // The picture: the centre square of cat.png, as ffmpeg renders it straight to RGB.
  const rgb = new RawToTensor(raw, 224, 224).fill(frames[5]!.data);
  const reference = ffmpegBytes(['-i', image('cat.png'), '-vf', "crop='min(iw,ih)':'min(iw,ih)',scale=224:224,format=rgb24", '-f', 'rawvideo', '-']);
  const mad = meanAbsDiff(rgb, reference);
  t.ok(mad < 3, `mean difference from the reference picture ${mad.toFixed(2)} levels`);
  t.same(problems.list(), [], 'no problem raised');
});

t.test('raw frames from the stand-in camera are classified right', async (t) => {
  const classifier = new Classifier({
    modelPath: model('mobilenet_v2_1.0_224_quant.tflite'),
    engine: 'tflite',
    threads: 1,
    delegate: 'cpu',
    resize: 'stretch',
    topK: 3,
    threshold: 0.1,
    log: silentLogger(),
  });
  await classifier.start();
  t.teardown(() => classifier.stop());
  const size = classifier.inputSize!;
  for (const [file, label] of [
    ['cat.png', 'Egyptian cat'],
    ['bird.png', 'chickadee'],
  ] as const) {
    const frames = await withEnv({ FAKE_RPICAM_IMAGE: image(file) }, async () => {
      const source = createRpicamSource({ ...capture, width: 4, height: 3, raw: { ...size, resize: 'stretch' }, rpicamPath: program }, silentLogger());
      const got = await collect(source, (f) => f.length >= 2);
      await source.stop();
      return got;
    });
    t.same([frames[1]!.raw!.width, frames[1]!.raw!.height], [288, 224], 'the 4:3 picture at about the model size');
    const result = await classifier.classify(frames[1]!.data, 'frame', frames[1]!.raw);
    t.equal(result.classes[0]!.label, label, `${file}: ${result.classes[0]!.label} ${result.classes[0]!.score.toFixed(2)}`);
  }
});

t.test('a size the camera adjusts is followed, so frames are still split right', async (t) => {
  const records: { msg: string }[] = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => void records.push(JSON.parse(line)) });
  const frames = await withEnv({ FAKE_RPICAM_IMAGE: image('cat.png'), FAKE_RPICAM_ADJUST_WIDTH: '320' }, async () => {
    const source = createRpicamSource({ ...capture, raw: { ...model224, resize: 'stretch' }, rpicamPath: program }, log);
    const got = await collect(source, (f) => f.length >= 3);
    await source.stop();
    return got;
  });
  t.same([frames[2]!.raw!.width, frames[2]!.raw!.height, frames[2]!.data.length], [320, 224, 320 * 224 * 1.5]);
  t.ok(
    records.some((r) => /adjusted the frame size: splitting i420 320x224/.test(r.msg)),
    'the adjustment is logged',
  );
});

t.test('a camera that stalls while alive is restarted: counted, logged with its stderr, reported, and frames resume', async (t) => {
  const marker = path.join(tmp, 'stalled-once');
  const records: { level: number; msg: string; stderr?: string[] }[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void records.push(JSON.parse(line)) });
  const problems = new ProblemRegistry();
  const seenProblems: string[][] = [];
  problems.onChange((list) => seenProblems.push(list.map((p) => p.id)));
  const frames = await withEnv({ FAKE_RPICAM_IMAGE: image('cat.png'), FAKE_RPICAM_STALL_AFTER: '4', FAKE_RPICAM_STALL_ONCE: marker }, async () => {
    const source = createRpicamSource({ ...capture, raw: { ...model224, resize: 'crop' }, rpicamPath: program, stallTimeoutMs: 3000, problems }, log);
    const got = await collect(source, (f) => f.length >= 8);
    const stats = source.stats();
    await source.stop();
    t.equal(stats.stalls, 1, 'one stall');
    t.equal(stats.restarts, 1, 'one restart');
    return got;
  });
  t.ok(existsSync(marker), 'the first run stalled');
  t.same(
    frames.map((f) => f.seq),
    [1, 2, 3, 4, 5, 6, 7, 8],
    'sequence numbers go on across the restart',
  );
  const gap = frames[4]!.arrivedAt - frames[3]!.arrivedAt;
  t.ok(gap >= 3000, `frames resumed ${gap.toFixed(0)} ms after the last one before the stall`);
  const warning = records.find((r) => /is running but delivered no frame for \d+\.\d s: stopping it and starting it again/.test(r.msg));
  t.ok(warning, 'stall logged');
  t.equal(warning?.level, 40);
  t.match(warning?.stderr?.join('\n'), /configuring streams/, 'with the last stderr lines');
  t.same(seenProblems, [['source_stalled'], []], 'source_stalled raised, then cleared by the next frame');
});

t.test('a stalled camera that ignores SIGTERM gets SIGKILL', async (t) => {
  const records: { msg: string }[] = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => void records.push(JSON.parse(line)) });
  const marker = path.join(tmp, 'stalled-term');
  await withEnv({ FAKE_RPICAM_STALL_AFTER: '2', FAKE_RPICAM_STALL_ONCE: marker, FAKE_RPICAM_IGNORE_TERM: '1' }, async () => {
    const source = new ProcessSource({
      command: program,
      args: rpicamArgs({ ...capture, width: 64, height: 48, raw: { width: 64, height: 48, resize: 'crop' } }),
      description: 'rpicam test',
      log,
      raw: rpicamRawFormat(64, 48),
      stallTimeoutMs: 2500,
      stopTimeoutMs: 300,
      initialBackoffMs: 50,
    });
    const got = await collect(source, (f) => f.length >= 4);
    t.ok(got.length >= 4);
    t.equal(source.stats().stalls, 1);
    await source.stop();
  });
  t.ok(
    records.some((r) => /did not exit 300 ms after SIGTERM: sending SIGKILL/.test(r.msg)),
    'escalated to SIGKILL',
  );
});

t.test('each camera error is recognised from the stand-in, logged once with the fix, and reported', async (t) => {
  const cases = [
    ['no-camera', 'no_camera', /rpicam-vid found no camera: ERROR: \*\*\* no cameras available \*\*\*/],
    ['busy', 'camera_busy', /in use by another process/],
    ['permission', 'permission_denied', /permission denied/],
    ['dma-heap', 'permission_denied', /Could not open any dmaHeap device/],
    ['symbol', 'camera_stack_broken', /symbol lookup error/],
  ] as const;
  for (const [fail, kind, message] of cases) {
    const records: { level: number; msg: string; kind?: string }[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => void records.push(JSON.parse(line)) });
    const problems = new ProblemRegistry();
    await withEnv({ FAKE_RPICAM_FAIL: fail }, async () => {
      const source = new ProcessSource({
        command: program,
        args: rpicamArgs(capture),
        description: 'rpicam 640x480@20',
        log,
        problems,
        device: 'the Pi camera',
        initialBackoffMs: 20,
        maxBackoffMs: 40,
      });
      await startWith(source, () => {});
      const deadline = Date.now() + 10_000;
      while (source.stats().restarts < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await source.stop();
      t.ok(source.stats().restarts >= 2, `${fail}: restarted ${source.stats().restarts} times`);
    });
    const errors = records.filter((r) => r.level === 50);
    t.equal(errors.length, 1, `${fail}: logged once over several restarts`);
    t.equal(errors[0]?.kind, kind, `${fail}: ${kind}`);
    t.match(errors[0]?.msg, message);
    const problem = problems.list().find((p) => p.id === 'camera_error');
    t.ok(problem, `${fail}: camera_error reported`);
    t.equal(problem?.severity, 'error');
    t.match(problem?.message, message);
    t.ok(problem!.hint.length > 20, `${fail}: with a hint`);
  }
});

t.test('garbage on stderr does not disturb the frames', async (t) => {
  const frames = await withEnv({ FAKE_RPICAM_GARBAGE: '1' }, async () => {
    const source = createRpicamSource(
      { ...capture, width: 64, height: 48, raw: { width: 64, height: 48, resize: 'crop' }, rpicamPath: program },
      silentLogger(),
    );
    const got = await collect(source, (f) => f.length >= 3);
    await source.stop();
    return got;
  });
  t.equal(frames.length, 3);
  t.equal(frames[2]!.data.length, 64 * 48 * 1.5);
});

t.test('a raw stream that ends mid-frame: the torn frame is dropped and counted', async (t) => {
  // One whole 64x48 I420 frame (4608 bytes) and half of the next, then exit 0.
  const script = path.join(tmp, 'torn.sh');
  writeFileSync(script, '#!/bin/sh\nhead -c 6912 /dev/zero\n', { mode: 0o755 });
  const got: Frame[] = [];
  const source = new ProcessSource({ command: script, args: [], description: 'torn', log: silentLogger(), raw: rpicamRawFormat(64, 48), restart: false });
  const ended = new Promise<string>((resolve) => {
    startWith(source, (f) => got.push(f), resolve);
  });
  await ended;
  t.equal(got.length, 1, 'the whole frame is delivered');
  t.equal(source.stats().discardedFrames, 1, 'the torn one is counted');
});

t.test('the stand-in refuses options rpicam-vid does not have, as rpicam-vid does', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(process.execPath, [FAKE_RPICAM, '--bogus'], { encoding: 'utf8' });
  t.equal(r.status, 255);
  t.match(r.stderr, /ERROR: \*\*\* unrecognised option '--bogus' \*\*\*/);
});
