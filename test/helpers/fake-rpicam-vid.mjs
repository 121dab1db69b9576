#!/usr/bin/env node
// A stand-in for rpicam-vid (Raspberry Pi camera apps) for tests on machines without a Pi camera.
//
// It behaves as `rpicam-vid -t 0 -n --codec yuv420|mjpeg -o - --width W --height H --framerate F` does:
// - the "sensor" is an image (FAKE_RPICAM_IMAGE, default a 4:3 ffmpeg test pattern); like the Pi ISP it
//   crops the sensor to --roi (fractions), then to the output's aspect ratio (centred, square pixels),
//   scales to W×H, applies --hflip/--vflip/--rotation 180;
// - yuv420 frames are I420 in the JPEG colour space (BT.601, full range: what rpicam-vid asks libcamera
//   for with this codec), each row padded to a stride that is a multiple of 64 bytes, chroma rows to half
//   of it; mjpeg frames are JPEG images; a frame is written every 1/F s, and dropped (as a camera does)
//   while the reader does not keep up;
// - every frame carries a little sensor noise (unless FAKE_RPICAM_STATIC=1);
// - libcamera-like log lines go to stderr; an unknown option ends it with rpicam-vid's error and 255.
//
// Faults for tests:
//   FAKE_RPICAM_FAIL=no-camera|busy|permission|dma-heap|symbol   print the real program's stderr and exit as it does
//   FAKE_RPICAM_STALL_AFTER=N      stop writing after N frames but stay alive (a hung camera)
//   FAKE_RPICAM_STALL_ONCE=FILE    stall only when FILE does not exist yet (creates it): the restart works
//   FAKE_RPICAM_IGNORE_TERM=1      ignore SIGTERM (needs SIGKILL)
//   FAKE_RPICAM_GARBAGE=1          print binary garbage on stderr before starting
//   FAKE_RPICAM_ARGS_LOG=FILE      append the argument list (one JSON array per line)
//   FAKE_RPICAM_STARTUP_MS=N       camera start-up time before the first frame (default 100)
//   FAKE_RPICAM_ADJUST_WIDTH=W     deliver frames W wide whatever --width asked (as libcamera may adjust a size)
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const argv = process.argv.slice(2);
const env = process.env;
const log = (line) => process.stderr.write(`[0:00:${(performance.now() / 1000).toFixed(9).padStart(12, '0')}] [${process.pid}]  ${line}\n`);
if (env.FAKE_RPICAM_ARGS_LOG) appendFileSync(env.FAKE_RPICAM_ARGS_LOG, `${JSON.stringify(argv)}\n`);

function die(message, code = 255) {
  process.stderr.write(`ERROR: *** ${message} ***\n`);
  process.exit(code);
}

const withValue = new Map([
  ['-t', 'timeout'],
  ['--timeout', 'timeout'],
  ['--codec', 'codec'],
  ['-o', 'output'],
  ['--output', 'output'],
  ['--width', 'width'],
  ['--height', 'height'],
  ['--framerate', 'framerate'],
  ['--camera', 'camera'],
  ['--rotation', 'rotation'],
  ['-q', 'quality'],
  ['--quality', 'quality'],
  ['--denoise', 'denoise'],
  ['--roi', 'roi'],
]);
const flags = new Map([
  ['-n', 'nopreview'],
  ['--nopreview', 'nopreview'],
  ['--flush', 'flush'],
  ['--hflip', 'hflip'],
  ['--vflip', 'vflip'],
]);
const opt = { timeout: '5000', codec: 'h264', width: '0', height: '0', framerate: '30', camera: '0', rotation: '0', quality: '93' };
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (withValue.has(a)) {
    if (i + 1 >= argv.length) die(`the required argument for option '${a}' is missing`);
    opt[withValue.get(a)] = argv[++i];
  } else if (flags.has(a)) {
    opt[flags.get(a)] = true;
  } else {
    die(`unrecognised option '${a}'`);
  }
}

if (env.FAKE_RPICAM_GARBAGE) process.stderr.write(Buffer.from([0, 0xff, 0xfe, 0x1b, 0x5b, 0x32, 0x4a, 10, 0x80, 0x81, 10]));
if (env.FAKE_RPICAM_FAIL === 'symbol') {
  process.stderr.write(
    'rpicam-vid: symbol lookup error: /lib/aarch64-linux-gnu/libcamera.so.0.3: undefined symbol: _ZN7libpisp22compute_optimal_strideER24pisp_image_format_config\n',
  );
  process.exit(127);
}
log('INFO Camera camera_manager.cpp:325 libcamera v0.3.2+stand-in');
switch (env.FAKE_RPICAM_FAIL) {
  case 'no-camera':
    die('no cameras available');
    break;
  case 'busy':
    log('INFO RPI pisp.cpp:1179 Registered camera /base/axi/pcie@120000/rp1/i2c@88000/imx708@1a to CFE device /dev/media1 and ISP device /dev/media0');
    log('INFO Camera camera.cpp:1011 Pipeline handler in use by another process');
    die('failed to acquire camera /base/axi/pcie@120000/rp1/i2c@88000/imx708@1a');
    break;
  case 'dma-heap':
    log('ERROR RPI dma_heaps.cpp:53 Could not open any dmaHeap device');
    log('ERROR RPI pipeline_base.cpp:811 Failed to register camera imx708 10-001a: -12');
    die('no cameras available');
    break;
  case 'permission':
    log('ERROR DeviceEnumerator device_enumerator.cpp:247 Failed to open media device at /dev/media1: Permission denied');
    die('no cameras available');
    break;
  default:
}

// FAKE_RPICAM_ADJUST_WIDTH: the camera stack adjusts the width it was asked for (and says so).
const width = Number(env.FAKE_RPICAM_ADJUST_WIDTH) || Number(opt.width) || 640;
const height = Number(opt.height) || 480;
const fps = Number(opt.framerate);
if (!(fps > 0)) die(`invalid framerate ${opt.framerate}`);
if (opt.output !== '-') die('this stand-in only writes to stdout (-o -)');
if (!['yuv420', 'mjpeg'].includes(opt.codec)) die(`this stand-in does not encode ${opt.codec}`);
if (Number(opt.camera) !== 0) die('selected camera is not available');
if (!['0', '180'].includes(opt.rotation)) die('transforms requiring transpose not supported');

// The ISP: ROI crop, aspect crop (square pixels), scale, flips; ffmpeg does the pixel work once at start-up.
const filters = [];
if (opt.roi) {
  const [x, y, w, h] = opt.roi.split(',').map(Number);
  if (![x, y, w, h].every((v) => v >= 0 && v <= 1) || !(w > 0 && h > 0)) die(`invalid roi ${opt.roi}`);
  filters.push(`crop=iw*${w}:ih*${h}:iw*${x}:ih*${y}`);
}
filters.push(`crop='min(iw,ih*${width}/${height})':'min(ih,iw*${height}/${width})'`);
filters.push(`scale=${width}:${height}:out_range=full:out_color_matrix=bt601`);
const rot180 = opt.rotation === '180';
if (Boolean(opt.hflip) !== rot180) filters.push('hflip');
if (Boolean(opt.vflip) !== rot180) filters.push('vflip');
filters.push('format=yuv420p');
const input = env.FAKE_RPICAM_IMAGE ? ['-i', env.FAKE_RPICAM_IMAGE] : ['-f', 'lavfi', '-i', 'testsrc=size=1640x1232:rate=1'];
// Rendered once per picture and geometry, then reused from a cache file (starting stays quick on a busy machine).
const ffArgs = ['-hide_banner', '-loglevel', 'error', '-nostdin', ...input, '-frames:v', '1', '-vf', filters.join(','), '-f', 'rawvideo', '-'];
const cacheFile = path.join(tmpdir(), `fake-rpicam-${createHash('sha256').update(JSON.stringify(ffArgs)).digest('hex').slice(0, 16)}.yuv`);
let plain;
try {
  plain = readFileSync(cacheFile);
} catch {
  const ff = spawnSync('ffmpeg', ffArgs, { maxBuffer: 1 << 28 });
  if (ff.status !== 0) die(`stand-in could not render its picture: ${String(ff.stderr).trim()}`);
  plain = ff.stdout;
  writeFileSync(`${cacheFile}.${process.pid}`, plain);
  renameSync(`${cacheFile}.${process.pid}`, cacheFile);
}

const stride = Math.ceil(width / 64) * 64;
const cw = Math.ceil(width / 2);
const ch = Math.ceil(height / 2);
const cStride = stride / 2;

function noisyCopy(seed) {
  const out = Buffer.from(plain);
  if (env.FAKE_RPICAM_STATIC) return out;
  let s = (seed * 2654435761) >>> 0;
  for (let i = 0; i < width * height; i += 7) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    if (s >>> 29 === 0) out[i] = Math.max(0, Math.min(255, out[i] + ((s >>> 28) & 1 ? 2 : -2)));
  }
  return out;
}

function padded(frame) {
  const out = Buffer.alloc(stride * height + 2 * cStride * ch, 0x10);
  for (let y = 0; y < height; y++) frame.copy(out, y * stride, y * width, y * width + width);
  const u0 = width * height;
  const v0 = u0 + cw * ch;
  for (let y = 0; y < ch; y++) {
    frame.copy(out, stride * height + y * cStride, u0 + y * cw, u0 + y * cw + cw);
    frame.copy(out, stride * height + cStride * ch + y * cStride, v0 + y * cw, v0 + y * cw + cw);
  }
  return out;
}

const VARIANTS = 8;
let frames;
if (opt.codec === 'yuv420') {
  frames = Array.from({ length: VARIANTS }, (_, k) => padded(noisyCopy(k + 1)));
} else {
  const q = Math.round(2 + ((100 - Number(opt.quality)) * 29) / 99);
  const raw = Buffer.concat(Array.from({ length: VARIANTS }, (_, k) => noisyCopy(k + 1)));
  const enc = spawnSync(
    'ffmpeg',
    [
      '-hide_banner',
      '-loglevel',
      'error',
      '-nostdin',
      '-f',
      'rawvideo',
      '-pix_fmt',
      'yuv420p',
      '-s',
      `${width}x${height}`,
      '-i',
      '-',
      '-f',
      'mjpeg',
      '-q:v',
      String(q),
      '-',
    ],
    { input: raw, maxBuffer: 1 << 28 },
  );
  if (enc.status !== 0) die('stand-in could not encode JPEG');
  frames = [];
  for (let start = enc.stdout.indexOf(Buffer.from([0xff, 0xd8])); start >= 0; ) {
    const end = enc.stdout.indexOf(Buffer.from([0xff, 0xd9]), start) + 2;
    frames.push(enc.stdout.subarray(start, end));
    start = enc.stdout.indexOf(Buffer.from([0xff, 0xd8]), end);
  }
}

if (env.FAKE_RPICAM_ADJUST_WIDTH) process.stderr.write('Stream configuration adjusted\n');
log(`INFO Camera camera.cpp:1197 configuring streams: (0) ${width}x${height}-YUV420/sYCC (1) 1640x1232-SBGGR10_CSI2P`);

let stallAfter = env.FAKE_RPICAM_STALL_AFTER === undefined ? Infinity : Number(env.FAKE_RPICAM_STALL_AFTER);
if (env.FAKE_RPICAM_STALL_ONCE) {
  if (existsSync(env.FAKE_RPICAM_STALL_ONCE)) stallAfter = Infinity;
  else writeFileSync(env.FAKE_RPICAM_STALL_ONCE, String(process.pid));
}

process.on('SIGTERM', () => {
  if (env.FAKE_RPICAM_IGNORE_TERM) return;
  process.exit(0);
});
process.on('SIGINT', () => process.exit(0));
process.stdout.on('error', () => process.exit(0)); // reader gone (EPIPE)

let written = 0;
let draining = false;
const timeout = Number(opt.timeout);
const started = performance.now();
setTimeout(
  () => {
    const period = 1000 / fps;
    let next = performance.now();
    const tick = () => {
      if (timeout > 0 && performance.now() - started > timeout) process.exit(0);
      if (written >= stallAfter) {
        if (written === stallAfter) {
          written += 1;
          log('WARN RPI stand-in: the camera stopped delivering frames (the process stays alive)');
        }
        setTimeout(tick, 1000);
        return;
      }
      if (!draining) {
        const ok = process.stdout.write(frames[written % frames.length]);
        written += 1;
        if (!ok) {
          draining = true;
          process.stdout.once('drain', () => {
            draining = false;
          });
        }
      }
      next += period;
      setTimeout(tick, Math.max(0, next - performance.now()));
    };
    tick();
  },
  Number(env.FAKE_RPICAM_STARTUP_MS ?? 100),
);
