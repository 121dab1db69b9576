import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import sharp from 'sharp';
import t from 'tap';
import type { FrameSource } from '../../src/camera/frame-source.js';
import { ProcessSource } from '../../src/camera/process-source.js';
import { ReplaySource } from '../../src/camera/replay.js';
import { createFrameSource, parseSourceSpec, SOURCE_SPEC_FORMS, type SourceOptions } from '../../src/camera/source-spec.js';
import { silentLogger } from '../../src/core/log.js';
import type { Frame } from '../../src/core/types.js';
import { image } from '../helpers/assets.js';
import { startMjpegHttpServer } from '../helpers/mjpeg-http-server.js';
import { startWith } from '../helpers/sources.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'source-spec-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

const imagesDir = path.join(tmp, 'images');
mkdirSync(imagesDir);
writeFileSync(path.join(imagesDir, '1.jpg'), readFileSync(image('cat_720p.jpg')));
writeFileSync(path.join(imagesDir, '2.jpg'), readFileSync(image('owl.jpg')));

function ffmpeg(args: string[]): void {
  const r = spawnSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y', ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ffmpeg ${args.join(' ')} failed: ${r.stderr}`);
}
// A 1-second 320x240 video at 25 fps.
const clip = path.join(tmp, 'clip.mp4');
ffmpeg(['-f', 'lavfi', '-i', 'testsrc=size=320x240:rate=25', '-t', '1', '-c:v', 'mpeg4', '-q:v', '5', clip]);

/** What the configuration's defaults ask for. */
const defaults: SourceOptions = { width: 640, height: 480, fps: 10, rotation: 0, hflip: false, vflip: false, loop: true, jpegQuality: 80, format: 'mjpeg' };

function frames(source: FrameSource, count: number, timeoutMs = 8000): Promise<Frame[]> {
  const got: Frame[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${source.description}: only ${got.length} of ${count} frames`)), timeoutMs);
    startWith(source, (f) => {
      got.push(f);
      if (got.length === count) {
        clearTimeout(timer);
        resolve(got);
      }
    }).catch(reject);
  });
}

t.test('every spec form', async (t) => {
  t.same(parseSourceSpec('rpicam'), { kind: 'rpicam', camera: 0 });
  t.same(parseSourceSpec(' RPICAM:1 ', 180), { kind: 'rpicam', camera: 1 });
  t.same(parseSourceSpec('/dev/video0'), { kind: 'v4l2', device: '/dev/video0' });
  t.same(parseSourceSpec('/dev/v4l/by-id/usb-Cam-video-index0'), { kind: 'v4l2', device: '/dev/v4l/by-id/usb-Cam-video-index0' });
  t.same(parseSourceSpec('rtsp://cam.local:554/h264'), { kind: 'rtsp', url: 'rtsp://cam.local:554/h264' });
  t.same(parseSourceSpec('rtsps://cam.local/s'), { kind: 'rtsp', url: 'rtsps://cam.local/s' });
  t.same(parseSourceSpec('http://cam.local/video.mjpg'), { kind: 'http', url: 'http://cam.local/video.mjpg' });
  t.same(parseSourceSpec('HTTPS://cam.local/v'), { kind: 'http', url: 'HTTPS://cam.local/v' });
  t.same(parseSourceSpec(clip), { kind: 'video', path: clip });
  t.same(parseSourceSpec(imagesDir), { kind: 'replay', dir: imagesDir });
  const relative = path.relative(process.cwd(), imagesDir);
  t.same(parseSourceSpec(relative), { kind: 'replay', dir: imagesDir }, 'relative paths resolve against the cwd');
});

t.test('unknown specs name the spec and list the accepted forms', async (t) => {
  const missing = path.join(tmp, 'no-such-thing.mp4');
  t.throws(() => parseSourceSpec(missing), {
    message: `source '${missing}' is not a known source name and no file or directory of that name exists; accepted sources: ${SOURCE_SPEC_FORMS}`,
  });
  t.match(SOURCE_SPEC_FORMS, /'rpicam' or 'rpicam:N'.*'\/dev\/video0'.*'rtsp:\/\/'.*'http:\/\/'.*video file.*directory of images/);
  t.throws(() => parseSourceSpec('webcam'), /^source 'webcam' is not a known source name/);
  t.throws(() => parseSourceSpec(''), /source '' is empty; accepted sources/);
  t.throws(() => parseSourceSpec('rpicam:front'), /source 'rpicam:front' names camera 'front': expected a camera index such as rpicam:0 or rpicam:1/);
  t.throws(() => parseSourceSpec('ftp://user:pw@nas/video.mp4'), {
    message: `source 'ftp://user:***@nas/video.mp4' has an unsupported URL scheme 'ftp'; accepted sources: ${SOURCE_SPEC_FORMS}`,
  });
  t.throws(() => parseSourceSpec('rtsp://bad host/'), /source 'rtsp:\/\/bad host\/' is not a valid URL/);
});

t.test('what the named source cannot do is refused with the option name', async (t) => {
  t.throws(() => parseSourceSpec('rpicam', 90), {
    message:
      'source.rotation: expected 0 or 180 for the Pi camera (rpicam-vid rotates only by flipping both axes; for 90 or 270 turn the camera, or use hflip/vflip), but received 90',
  });
  t.equal(parseSourceSpec('/dev/video0', 90).kind, 'v4l2', 'ffmpeg sources rotate by 90');
  t.throws(() => parseSourceSpec('rpicam:16'), { message: "camera index of source 'rpicam:16': expected 0 to 15, but received 16" });
  t.throws(() => createFrameSource('rpicam', { ...defaults, maxFrameBytes: 10 }, silentLogger()), {
    message: 'maxFrameBytes: expected an integer from 1024 to 1073741824 (bytes), but received 10',
  });
  // Sizes, rates, qualities and flips are the configuration schema's (test/config/load.test.ts).
});

t.test('createFrameSource picks the source; nothing runs before start()', async (t) => {
  const log = silentLogger();
  const cases: [string, object, string, typeof ProcessSource | typeof ReplaySource][] = [
    ['rpicam', {}, 'rpicam 640x480@10', ProcessSource],
    ['rpicam:1', { width: 320, height: 240 }, 'rpicam:1 320x240@10', ProcessSource],
    ['/dev/video0', {}, 'v4l2 /dev/video0 640x480@10', ProcessSource],
    ['rtsp://admin:secret@cam/stream', { fps: 5 }, 'rtsp rtsp://admin:***@cam/stream 640x480@5', ProcessSource],
    ['http://cam/video.mjpg', {}, 'http http://cam/video.mjpg 640x480@10', ProcessSource],
    [clip, {}, `video ${clip} (loop) 640x480@10`, ProcessSource],
    [clip, { loop: false }, `video ${clip} 640x480@10`, ProcessSource],
    [imagesDir, { fps: 4 }, `replay ${imagesDir} @4 (loop)`, ReplaySource],
  ];
  for (const [spec, options, description, type] of cases) {
    const source = createFrameSource(spec, { ...defaults, ...options }, log);
    t.equal(source.description, description);
    t.type(source, type);
    t.same(source.stats(), { frames: 0, fps: 0, restarts: 0, ...(type === ProcessSource ? { stalls: 0, discardedFrames: 0 } : {}) });
  }
});

t.test('a directory of images replays its files', async (t) => {
  const source = createFrameSource(imagesDir, { ...defaults, fps: 30 }, silentLogger());
  const got = await frames(source, 3);
  await source.stop();
  t.same(
    got.map((f) => path.basename(f.file!)),
    ['1.jpg', '2.jpg', '1.jpg'],
  );
});

t.test('a video file without loop ends after its frames, at the requested size and rate', async (t) => {
  const source = createFrameSource(clip, { ...defaults, loop: false, width: 160, height: 120, fps: 10 }, silentLogger());
  const got: Frame[] = [];
  const reason = await new Promise<string>((resolve, reject) => {
    startWith(source, (f) => got.push(f), resolve).catch(reject);
  });
  t.equal(reason, `ffmpeg exited with code 0 after ${got.length} frames`);
  t.ok(got.length >= 9 && got.length <= 11, `${got.length} frames from 1 s at 10 fps`);
  const span = got[got.length - 1].arrivedAt - got[0].arrivedAt;
  t.ok(span > 600 && span < 1400, `read at the native rate (-re): ${span.toFixed(0)} ms`);
  const meta = await sharp(got[0].data).metadata();
  t.same([meta.format, meta.width, meta.height], ['jpeg', 160, 120]);
  await source.stop();
});

t.test('a looping video file keeps going past its end without a restart', async (t) => {
  const source = createFrameSource(clip, { ...defaults, width: 160, height: 120, fps: 20 }, silentLogger());
  const got = await frames(source, 30, 8000);
  const stats = source.stats();
  await source.stop();
  t.same(
    got.map((f) => f.seq),
    Array.from({ length: 30 }, (_, i) => i + 1),
  );
  t.equal(stats.restarts, 0, 'looped by ffmpeg (-stream_loop -1), not by restarting it');
});

t.test('a live HTTP MJPEG camera through ffmpeg; the URL password stays out of the logs', async (t) => {
  // A live multipart/x-mixed-replace stream, as IP cameras serve it (not a finite file ffmpeg can read ahead).
  const jpeg = await sharp({ create: { width: 320, height: 240, channels: 3, background: '#3060a0' } })
    .jpeg()
    .toBuffer();
  const server = await startMjpegHttpServer({ frames: [jpeg], fps: 25 });
  t.teardown(() => server.close());
  const records: string[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void records.push(line) });
  const url = server.url.replace('http://', 'http://viewer:s3cret@');
  const source = createFrameSource(url, { ...defaults, width: 200, height: 150, fps: 25 }, log);
  t.equal(source.description, `http ${url.replace('s3cret', '***')} 200x150@25`);
  const got = await frames(source, 20);
  await source.stop();
  const meta = await sharp(got[19]!.data).metadata();
  t.same([meta.format, meta.width, meta.height], ['jpeg', 200, 150]);
  t.ok(records.length > 0, 'something was logged');
  t.notOk(
    records.some((line) => line.includes('s3cret')),
    'no log record holds the password',
  );
});
