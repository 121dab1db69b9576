import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { CaptureSource } from '../../src/camera/capture.js';
import type { EndListener, FrameListener, FrameSource, SourceStats } from '../../src/camera/frame-source.js';
import { i420Layout, RPICAM_YUV420_COLORSPACE } from '../../src/camera/raw-format.js';
import { createRpicamSource } from '../../src/camera/rpicam.js';
import { NEVER_ABORTED } from '../../src/core/lifecycle.js';
import { silentLogger } from '../../src/core/log.js';
import { ProblemRegistry } from '../../src/core/problems.js';
import type { Frame, RawPictureFormat } from '../../src/core/types.js';
import { image } from '../helpers/assets.js';
import { fakeRpicamBin } from '../helpers/fake-camera.js';
import { i420Frame } from '../helpers/raw-frames.js';

/** A source whose frames the test hands in, with their arrival times. */
class ManualSource implements FrameSource {
  readonly name = 'source';
  readonly description = 'manual test source';
  starts = 0;
  stops = 0;
  private onFrame: FrameListener = () => {};
  private seq = 0;
  listen(onFrame: FrameListener, _onEnd?: EndListener): void {
    this.onFrame = onFrame;
  }
  async start(): Promise<void> {
    this.starts += 1;
  }
  async stop(): Promise<void> {
    this.stops += 1;
  }
  emit(data: Buffer, arrivedAt: number, raw?: RawPictureFormat): void {
    this.seq += 1;
    this.onFrame(raw ? { seq: this.seq, data, arrivedAt, raw } : { seq: this.seq, data, arrivedAt });
  }
  stats(): SourceStats {
    return { frames: this.seq, fps: 0, restarts: 0 };
  }
}

const W = 320;
const H = 240;
const picture: RawPictureFormat = { format: 'i420', width: W, height: H, layout: i420Layout(W, H, 64), colorSpace: RPICAM_YUV420_COLORSPACE };
const cat = i420Frame(image('cat.png'), W, H, RPICAM_YUV420_COLORSPACE);
const bird = i420Frame(image('bird.png'), W, H, RPICAM_YUV420_COLORSPACE);

/** The frame with sensor-like noise on its luma (320 wide: no row padding). */
function noisy(frame: Buffer, seed: number): Buffer {
  const out = Buffer.from(frame);
  let s = seed * 2654435761;
  for (let i = 0; i < W * H; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = Math.max(0, Math.min(255, out[i]! + ((s >>> 29) - 4)));
  }
  return out;
}

function build(settings: Partial<ConstructorParameters<typeof CaptureSource>[1]>, inner: FrameSource = new ManualSource()) {
  const problems = new ProblemRegistry();
  const capture = new CaptureSource(inner, { mode: { kind: 'continuous' }, frozenAfterMs: 0, problems, log: silentLogger(), ...settings });
  const got: Frame[] = [];
  let firsts = 0;
  capture.listen(
    (f) => got.push(f),
    undefined,
    () => firsts++,
  );
  return { capture, inner: inner as ManualSource, got, problems, firsts: () => firsts };
}

t.test('continuous passes every frame; interval one per interval; trigger a burst per trigger', async (t) => {
  const c = build({});
  await c.capture.start(NEVER_ABORTED);
  for (let i = 0; i < 5; i++) c.inner.emit(cat, i * 100);
  t.equal(c.got.length, 5);
  t.equal(c.firsts(), 1, 'first-frame callback once');
  t.notOk(c.capture.trigger(), 'no trigger outside trigger mode');

  const iv = build({ mode: { kind: 'interval', everyMs: 1000 } });
  await iv.capture.start(NEVER_ABORTED);
  for (let ms = 0; ms <= 3000; ms += 100) iv.inner.emit(cat, ms);
  t.same(
    iv.got.map((f) => f.arrivedAt),
    [0, 1000, 2000, 3000],
  );
  t.equal(iv.capture.stats().selected, 4);

  const tr = build({ mode: { kind: 'trigger', burst: 2 } });
  await tr.capture.start(NEVER_ABORTED);
  for (let ms = 0; ms < 500; ms += 100) tr.inner.emit(cat, ms);
  t.equal(tr.got.length, 0, 'nothing before a trigger');
  t.ok(tr.capture.trigger());
  for (let ms = 500; ms < 1000; ms += 100) tr.inner.emit(cat, ms);
  t.same(
    tr.got.map((f) => f.arrivedAt),
    [500, 600],
  );
  t.equal(tr.capture.stats().triggers, 1);
  t.equal(tr.firsts(), 1, 'frames flowed before any trigger');
  await tr.capture.stop();
  t.equal(tr.inner.stops, 1);
});

t.test('motion gate on raw frames: a still scene is skipped and counted, a bird arriving is classified', async (t) => {
  const c = build({ motion: { threshold: 0.02, cellDelta: 20 } });
  await c.capture.start(NEVER_ABORTED);
  for (let i = 0; i < 20; i++) c.inner.emit(noisy(cat, i), i * 100, picture);
  t.equal(c.got.length, 1, 'the first frame only');
  t.equal(c.capture.stats().motionSkipped, 19);
  t.ok(c.capture.lastSkippedAt > 0);
  c.inner.emit(noisy(bird, 99), 2000, picture);
  t.equal(c.got.length, 2, 'the changed scene passes');
});

t.test('motion gate on JPEG frames (decoded small by sharp)', async (t) => {
  const c = build({ motion: { threshold: 0.02, cellDelta: 20 } });
  await c.capture.start(NEVER_ABORTED);
  const jpeg = (frame: Buffer) =>
    sharp(frame.subarray(0, W * H), { raw: { width: W, height: H, channels: 1 } })
      .jpeg()
      .toBuffer();
  const still = await Promise.all(Array.from({ length: 8 }, (_, i) => jpeg(noisy(cat, i))));
  for (const [i, f] of still.entries()) {
    c.inner.emit(f, i * 100);
    await new Promise((r) => setTimeout(r, 30));
  }
  const changed = await jpeg(noisy(bird, 5));
  c.inner.emit(changed, 1000);
  const deadline = Date.now() + 5000;
  while (c.got.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.equal(c.got.length, 2, 'the first frame and the changed one');
  t.equal(c.got[1]!.data, changed);
  t.equal(c.capture.stats().motionSkipped, 7);
  // An undecodable frame is not the gate's business: it goes on (the classifier counts it as bad).
  c.inner.emit(Buffer.from('not a jpeg'), 1100);
  const until = Date.now() + 5000;
  while (c.got.length < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  t.equal(c.got.length, 3);
});

t.test('frozen picture: camera_frozen raised after the time without change, cleared when the picture changes', async (t) => {
  const c = build({ frozenAfterMs: 5000 });
  await c.capture.start(NEVER_ABORTED);
  for (let i = 0; i < 10; i++) c.inner.emit(noisy(cat, i), i * 500, picture);
  t.same(c.problems.list(), [], 'a live camera is not frozen');
  const stuck = noisy(cat, 42);
  for (let ms = 5000; ms <= 11_000; ms += 500) c.inner.emit(stuck, ms, picture);
  const problem = c.problems.list()[0];
  t.equal(problem?.id, 'camera_frozen');
  t.match(problem?.message, /the picture of manual test source has not changed for 5 s/);
  t.equal(problem?.severity, 'error');
  t.ok(c.capture.stats().frozen);
  c.inner.emit(noisy(cat, 43), 11_500, picture);
  t.same(c.problems.list(), [], 'cleared by a changed picture');
  t.equal(c.got.length, 24, 'frames still flow while frozen (a stall would stop them)');
});

t.test('interval with power saving: the Pi camera runs only around each capture', async (t) => {
  const bin = fakeRpicamBin();
  const argsLog = path.join(tmpdir(), `ec-capture-args-${process.pid}.log`);
  t.teardown(() => {
    rmSync(bin, { recursive: true, force: true });
    rmSync(argsLog, { force: true });
  });
  process.env.FAKE_RPICAM_ARGS_LOG = argsLog;
  t.teardown(() => delete process.env.FAKE_RPICAM_ARGS_LOG);
  const inner = createRpicamSource(
    {
      width: 64,
      height: 48,
      fps: 20,
      rotation: 0,
      hflip: false,
      vflip: false,
      jpegQuality: 80,
      raw: { width: 64, height: 48, resize: 'crop' },
      rpicamPath: path.join(bin, 'rpicam-vid'),
    },
    silentLogger(),
  );
  const c = build({ mode: { kind: 'interval', everyMs: 2500 }, powerSave: true, settleMs: 300 }, inner);
  const t0 = performance.now();
  await c.capture.start(NEVER_ABORTED);
  const deadline = Date.now() + 40_000;
  while (c.got.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  // Between the captures the camera process is gone, and the capture still counts as alive.
  const offAt = Date.now() + 10_000;
  while (inner.pid !== undefined && Date.now() < offAt) await new Promise((r) => setTimeout(r, 20));
  t.equal(inner.pid, undefined, 'no camera process between captures');
  t.ok(c.capture.alive(performance.now(), 100), 'alive while the camera sleeps on purpose');
  await c.capture.stop();
  t.equal(c.got.length, 2, 'two captures');
  t.ok(c.got[0]!.arrivedAt - t0 >= 300, 'the first frame is taken after the camera settled');
  t.ok(c.got[1]!.arrivedAt - c.got[0]!.arrivedAt >= 2000, `captures ${(c.got[1]!.arrivedAt - c.got[0]!.arrivedAt).toFixed(0)} ms apart`);
  const starts = readFileSync(argsLog, 'utf8').trim().split('\n');
  t.ok(starts.length >= 2 && starts.length <= 3, `rpicam-vid started ${starts.length} times, once per capture`);
});
