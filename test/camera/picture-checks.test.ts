import sharp from 'sharp';
import t from 'tap';
import { FrozenDetector, lumaThumbnail, MotionGate, pictureFingerprint } from '../../src/camera/picture-checks.js';
import { i420Layout, RPICAM_YUV420_COLORSPACE } from '../../src/camera/raw-format.js';
import type { RawPictureFormat } from '../../src/core/types.js';
import { image } from '../helpers/assets.js';
import { ffmpegBytes, i420Frame } from '../helpers/raw-frames.js';

const W = 320;
const H = 240;
// 320 wide: a multiple of 64, so no row padding (some tests below rely on it).
const picture: RawPictureFormat = { format: 'i420', width: W, height: H, layout: i420Layout(W, H, 64), colorSpace: RPICAM_YUV420_COLORSPACE };

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** The frame with sensor-like noise: every luma sample moved by up to ±3 levels. */
function noisy(frame: Buffer, seed: number): Buffer {
  const out = Buffer.from(frame);
  const rnd = prng(seed);
  const l = picture.format === 'i420' ? picture.layout : i420Layout(W, H);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const o = y * l.yStride + x;
      out[o] = Math.max(0, Math.min(255, out[o]! + Math.round((rnd() - 0.5) * 6)));
    }
  }
  return out;
}

const cat = i420Frame(image('cat.png'), W, H, RPICAM_YUV420_COLORSPACE);
// The same scene with a bird in the lower right (about 1/16 of the picture).
const bird = await sharp(image('bird.png')).resize(80, 60).toBuffer();
const withBird = await sharp(image('cat.png'))
  .resize(W, H, { fit: 'fill' })
  .composite([{ input: bird, left: 220, top: 160 }])
  .png()
  .toBuffer();
const catBirdFile = `${process.env.TMPDIR ?? '/tmp'}/cat-bird-${process.pid}.png`;
await sharp(withBird).toFile(catBirdFile);
t.teardown(async () => (await import('node:fs')).rmSync(catBirdFile, { force: true }));
const catBird = i420Frame(catBirdFile, W, H, RPICAM_YUV420_COLORSPACE);

t.test('fingerprint: a live camera changes it every frame, a repeated frame keeps it', async (t) => {
  const prints = new Set<number>();
  for (let i = 0; i < 20; i++) prints.add(pictureFingerprint(picture, noisy(cat, i)));
  t.equal(prints.size, 20, 'noise alone gives a new fingerprint per frame');
  const f = noisy(cat, 99);
  t.equal(pictureFingerprint(picture, f), pictureFingerprint(picture, Buffer.from(f)), 'same pixels, same fingerprint');
  // Padding bytes are never read.
  const padded = Buffer.from(f);
  padded[W + 5] = padded[W + 5]! ^ 0xff;
  t.equal(pictureFingerprint(picture, padded), pictureFingerprint(picture, f), 'stride padding ignored');
  // Encoded frames: two JPEG encodings of different noisy frames differ, the same bytes match.
  // 320 is a multiple of 64, so these frames have no row padding and ffmpeg can read them as yuv420p.
  const toJpeg = (frame: Buffer) =>
    ffmpegBytes(['-f', 'rawvideo', '-pix_fmt', 'yuv420p', '-s', `${W}x${H}`, '-i', '-', '-frames:v', '1', '-f', 'mjpeg', '-'], frame);
  const j1 = toJpeg(noisy(cat, 1));
  const j2 = toJpeg(noisy(cat, 2));
  t.not(pictureFingerprint(undefined, j1), pictureFingerprint(undefined, j2), 'different JPEG frames');
  t.equal(pictureFingerprint(undefined, j1), pictureFingerprint(undefined, Buffer.from(j1)), 'identical JPEG frames');
});

t.test('frozen picture: reported after the time without change, cleared by the next change', async (t) => {
  const det = new FrozenDetector(5000);
  let now = 0;
  const events: string[] = [];
  const feed = (frame: Buffer) => {
    const e = det.update(pictureFingerprint(picture, frame), now);
    if (e) events.push(`${e}@${now}`);
    now += 500;
  };
  for (let i = 0; i < 20; i++) feed(noisy(cat, i)); // 10 s of a live camera
  t.same(events, [], 'a live picture is never frozen');
  const stuck = noisy(cat, 1234);
  for (let i = 0; i < 14; i++) feed(stuck); // the same frame for 7 s
  t.same(events, ['frozen@15000'], 'frozen once, 5 s after the picture stopped changing');
  t.ok(det.frozen);
  feed(noisy(cat, 77));
  t.same(events, ['frozen@15000', 'live@17000'], 'live again at the next changed frame');
  t.throws(() => new FrozenDetector(0), /positive number of ms/);
});

t.test('motion gate on real frames: noise and small light changes skip, a bird arriving passes, a bird that stays is absorbed', async (t) => {
  const gate = new MotionGate();
  const thumb = (frame: Buffer) => lumaThumbnail(picture, frame);
  t.ok(gate.check(thumb(noisy(cat, 0))).motion, 'the first frame is always classified');
  let skipped = 0;
  for (let i = 1; i <= 30; i++) if (!gate.check(thumb(noisy(cat, i))).motion) skipped++;
  t.equal(skipped, 30, 'sensor noise alone: every frame skipped');
  // Slightly brighter (+6 levels): a cloud, not motion.
  const brighter = Buffer.from(noisy(cat, 31));
  for (let i = 0; i < W * H; i++) brighter[i] = Math.min(255, brighter[i]! + 6); // the Y plane (no row padding at 320 wide)
  t.notOk(gate.check(thumb(brighter)).motion, 'a small light change is not motion');
  const arrival = gate.check(thumb(noisy(catBird, 40)));
  t.ok(arrival.motion, `a bird arriving is motion (${(arrival.changed * 100).toFixed(1)} % of cells)`);
  let frames = 0;
  while (gate.check(thumb(noisy(catBird, 41 + frames))).motion && frames < 500) frames++;
  t.ok(frames > 5 && frames < 100, `the bird that stays becomes background after ${frames} frames`);
  const gone = gate.check(thumb(noisy(cat, 999)));
  t.ok(gone.motion, 'the bird leaving is motion again');
  t.throws(() => new MotionGate({ threshold: 2 }), /motion threshold must be a fraction from 0 to 1, got 2/);
});

t.test('thumbnails of I420 and RGB frames of the same picture agree', async (t) => {
  const rgb = ffmpegBytes(['-i', image('cat.png'), '-vf', `scale=${W}:${H},format=rgb24`, '-f', 'rawvideo', '-']);
  const a = lumaThumbnail(picture, cat);
  const b = lumaThumbnail({ format: 'rgb24', width: W, height: H }, rgb);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  t.equal(a.length, 32 * 24);
  t.ok(max <= 6, `cells within ${max} levels`);
});
