/**
 * A live MJPEG-over-HTTP camera (multipart/x-mixed-replace, as IP cameras and
 * ESP32-CAMs serve it) through the ffmpeg source: the rate it really sends is
 * the rate that arrives, and JPEGs that switch chroma subsampling from one
 * frame to the next keep flowing.
 */
import sharp from 'sharp';
import t from 'tap';
import { createFrameSource, type SourceOptions } from '../../src/camera/source-spec.js';
import { silentLogger } from '../../src/core/log.js';
import type { Frame } from '../../src/core/types.js';
import { image } from '../helpers/assets.js';
import { startMjpegHttpServer } from '../helpers/mjpeg-http-server.js';
import { startWith } from '../helpers/sources.js';

const options: SourceOptions = { width: 320, height: 240, fps: 10, rotation: 0, hflip: false, vflip: false, loop: true, jpegQuality: 80, format: 'mjpeg' };
const raw224 = { width: 224, height: 224, resize: 'stretch' as const };

/** Frames arriving from `url` during `ms` after the first one. */
async function framesFor(url: string, opts: SourceOptions, ms: number): Promise<Frame[]> {
  const source = createFrameSource(url, opts, silentLogger());
  const got: Frame[] = [];
  let first = 0;
  await new Promise<void>((resolve, reject) => {
    const giveUp = setTimeout(() => reject(new Error(`no frame from ${url}`)), 30_000);
    startWith(source, (f) => {
      if (got.length === 0) {
        first = f.arrivedAt;
        clearTimeout(giveUp);
        setTimeout(resolve, ms);
      }
      if (f.arrivedAt - first <= ms) got.push(f);
    }).catch(reject);
  });
  await source.stop();
  return got;
}

const cat420 = await sharp(image('cat_720p.jpg')).resize(640, 480, { fit: 'fill' }).jpeg({ quality: 80, chromaSubsampling: '4:2:0' }).toBuffer();
const cat444 = await sharp(image('cat_720p.jpg')).resize(640, 480, { fit: 'fill' }).jpeg({ quality: 80, chromaSubsampling: '4:4:4' }).toBuffer();

t.test('a 5 fps camera asked for 10 fps delivers its 5 fps (not 10/25 of them), in MJPEG and raw', async (t) => {
  const server = await startMjpegHttpServer({ frames: [cat420], fps: 5 });
  t.teardown(() => server.close());
  for (const opts of [options, { ...options, format: 'raw' as const, model: raw224 }]) {
    const got = await framesFor(server.url, opts, 3000);
    // 3 s at 5 fps: 15 frame periods after the first frame. The assumed-25-fps stamping gave 1.6-1.9 fps (6 or so).
    t.ok(got.length >= 12 && got.length <= 17, `${opts.format}: ${got.length} frames in 3 s from a 5 fps camera`);
    t.equal(new Set(got.map((f) => f.seq)).size, got.length, 'no frame twice');
  }
});

t.test('a 25 fps camera asked for 10 fps is cut to 10 fps', async (t) => {
  const server = await startMjpegHttpServer({ frames: [cat420], fps: 25 });
  t.teardown(() => server.close());
  const got = await framesFor(server.url, options, 4000);
  t.ok(got.length >= 32 && got.length <= 44, `${got.length} frames in 4 s`);
});

t.test('frames that switch chroma subsampling keep flowing, with no long gap', async (t) => {
  const server = await startMjpegHttpServer({ frames: [cat420, cat420, cat444], fps: 5 });
  t.teardown(() => server.close());
  for (const opts of [options, { ...options, format: 'raw' as const, model: raw224 }]) {
    const got = await framesFor(server.url, opts, 4000);
    const gaps = got.slice(1).map((f, i) => f.arrivedAt - got[i]!.arrivedAt);
    const longest = Math.max(...gaps);
    t.ok(got.length >= 16, `${opts.format}: ${got.length} frames in 4 s at 5 fps`);
    t.ok(longest < 1500, `${opts.format}: longest gap ${longest.toFixed(0)} ms`);
  }
});

t.test('ffmpeg raw frames from a live camera: RGB24 at the model size, cropped to the ROI', async (t) => {
  // Left half red, right half blue; the ROI is the right half.
  const split = await sharp({ create: { width: 640, height: 480, channels: 3, background: '#ff0000' } })
    .composite([{ input: { create: { width: 320, height: 480, channels: 3, background: '#0000ff' } }, left: 320, top: 0 }])
    .jpeg({ quality: 95 })
    .toBuffer();
  const server = await startMjpegHttpServer({ frames: [split], fps: 10 });
  t.teardown(() => server.close());
  const got = await framesFor(server.url, { ...options, format: 'raw', model: raw224, roi: { x: 0.5, y: 0, width: 0.5, height: 1 } }, 500);
  const f = got[0]!;
  t.same(f.raw, { format: 'rgb24', width: 224, height: 224 });
  t.equal(f.data.length, 224 * 224 * 3);
  const px = (x: number, y: number) => Array.from(f.data.subarray((y * 224 + x) * 3, (y * 224 + x) * 3 + 3));
  for (const [x, y] of [
    [0, 0],
    [5, 200],
    [223, 223],
  ] as const) {
    const [r, g, b] = px(x, y);
    t.ok(r! < 30 && g! < 30 && b! > 220, `pixel (${x},${y}) is blue: ${px(x, y)}`);
  }
});
