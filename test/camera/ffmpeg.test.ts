import { spawnSync } from 'node:child_process';
import t from 'tap';
import { ffmpegArgs, ffmpegDescription, jpegQualityToQscale } from '../../src/camera/ffmpeg.js';
import type { CaptureOptions } from '../../src/camera/frame-source.js';
import { redactUrl, urlRedactor } from '../../src/core/redact.js';

/** What the configuration's defaults ask for, with quality 90 (ffmpeg -q:v 5). */
const capture: CaptureOptions = { width: 640, height: 480, fps: 10, rotation: 0, hflip: false, vflip: false, jpegQuality: 90 };

const head = ['-hide_banner', '-loglevel', 'warning', '-nostdin'];
const tail = (vf: string, fps = '10', q = '5') => [
  '-map',
  '0:v:0',
  '-an',
  '-vf',
  vf,
  '-fps_mode',
  'vfr',
  '-r',
  fps,
  '-f',
  'mjpeg',
  '-q:v',
  q,
  '-flush_packets',
  '1',
  '-',
];

t.test('V4L2 device: asks the webcam for MJPEG at the size and rate, scales to be sure', async (t) => {
  t.same(ffmpegArgs({ kind: 'v4l2', device: '/dev/video0' }, capture), [
    ...head,
    '-f',
    'v4l2',
    '-input_format',
    'mjpeg',
    '-video_size',
    '640x480',
    '-framerate',
    '10',
    '-i',
    '/dev/video0',
    ...tail('scale=640:480'),
  ]);
  t.same(ffmpegArgs({ kind: 'v4l2', device: '/dev/video2', inputFormat: 'yuyv422' }, { ...capture, width: 320, height: 240, fps: 5 }).slice(4, 14), [
    '-f',
    'v4l2',
    '-input_format',
    'yuyv422',
    '-video_size',
    '320x240',
    '-framerate',
    '5',
    '-i',
    '/dev/video2',
  ]);
});

t.test('RTSP over TCP with a socket timeout; HTTP with a read timeout', async (t) => {
  t.same(ffmpegArgs({ kind: 'rtsp', url: 'rtsp://cam.local:554/stream1' }, { ...capture, width: 320, height: 240, fps: 2 }), [
    ...head,
    '-rtsp_transport',
    'tcp',
    '-timeout',
    '10000000',
    '-i',
    'rtsp://cam.local:554/stream1',
    ...tail('scale=320:240', '2'),
  ]);
  // An MJPEG-over-HTTP camera carries no timestamps: its frames are stamped with their arrival time.
  t.same(ffmpegArgs({ kind: 'http', url: 'https://cam.local/video.mjpg' }, capture), [
    ...head,
    '-rw_timeout',
    '10000000',
    '-use_wallclock_as_timestamps',
    '1',
    '-i',
    'https://cam.local/video.mjpg',
    ...tail('scale=640:480'),
  ]);
  const hls = ffmpegArgs({ kind: 'http', url: 'http://nvr.local/live/cam1/index.m3u8' }, capture);
  t.notOk(hls.includes('-use_wallclock_as_timestamps'), 'an HLS playlist keeps its own timestamps');
});

t.test('video file: native rate, looped with -stream_loop -1 when asked', async (t) => {
  t.same(ffmpegArgs({ kind: 'file', path: '/srv/clip.mp4', loop: true }, capture), [
    ...head,
    '-re',
    '-stream_loop',
    '-1',
    '-i',
    '/srv/clip.mp4',
    ...tail('scale=640:480'),
  ]);
  t.same(ffmpegArgs({ kind: 'file', path: 'clip.mkv', loop: false }, capture).slice(4, 7), ['-re', '-i', 'clip.mkv']);
});

t.test('rotation, flips and quality go into the filter chain and -q:v', async (t) => {
  const vf = (o: Partial<CaptureOptions>) => {
    const args = ffmpegArgs({ kind: 'v4l2', device: '/dev/video0' }, { ...capture, ...o });
    return [args[args.indexOf('-vf') + 1], args[args.indexOf('-q:v') + 1]];
  };
  t.same(vf({ rotation: 90 }), ['transpose=clock,scale=640:480', '5']);
  t.same(vf({ rotation: 180 }), ['hflip,vflip,scale=640:480', '5']);
  t.same(vf({ rotation: 270, hflip: true }), ['transpose=cclock,hflip,scale=640:480', '5']);
  t.same(vf({ vflip: true, jpegQuality: 100 }), ['vflip,scale=640:480', '2']);
  t.same([100, 90, 75, 50, 1].map(jpegQualityToQscale), [2, 5, 9, 17, 31]);
  // Rotation, quality and size bounds are the configuration schema's (test/config/load.test.ts).
});

t.test('raw RGB24 at the model size, fitted by the resize mode, after the ROI crop', async (t) => {
  const vf = (raw: { width: number; height: number; resize: 'stretch' | 'crop' | 'letterbox' }, extra: object = {}) => {
    const args = ffmpegArgs({ kind: 'v4l2', device: '/dev/video0' }, { ...capture, raw, ...extra });
    t.same(args.slice(-7), ['-r', '10', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-']);
    return args[args.indexOf('-vf') + 1];
  };
  t.equal(vf({ width: 224, height: 224, resize: 'stretch' }), 'scale=224:224,setsar=1,format=rgb24');
  t.equal(vf({ width: 224, height: 224, resize: 'crop' }), 'scale=224:224:force_original_aspect_ratio=increase,crop=224:224,setsar=1,format=rgb24');
  t.equal(
    vf({ width: 224, height: 224, resize: 'letterbox' }, { roi: { x: 0.5, y: 0, width: 0.5, height: 1 }, rotation: 180 }),
    'hflip,vflip,crop=iw*0.5:ih*1:iw*0.5:ih*0,scale=224:224:force_original_aspect_ratio=decrease,pad=224:224:(ow-iw)/2:(oh-ih)/2:black,setsar=1,format=rgb24',
  );
  t.equal(
    ffmpegDescription({ kind: 'v4l2', device: '/dev/video0' }, { ...capture, raw: { width: 224, height: 224, resize: 'stretch' } }),
    'v4l2 /dev/video0 224x224@10 rgb24',
  );
});

t.test('passwords in URLs never reach descriptions or logs', async (t) => {
  const url = 'rtsp://admin:p%40ss@cam.local/stream';
  t.equal(redactUrl(url), 'rtsp://admin:***@cam.local/stream');
  t.equal(redactUrl('rtsp://cam.local/stream'), 'rtsp://cam.local/stream');
  t.equal(ffmpegDescription({ kind: 'rtsp', url }, capture), 'rtsp rtsp://admin:***@cam.local/stream 640x480@10');
  const redact = urlRedactor(url);
  t.equal(redact(`[rtsp @ 0x1] method DESCRIBE failed for ${url}: 401`), '[rtsp @ 0x1] method DESCRIBE failed for rtsp://admin:***@cam.local/stream: 401');
  t.equal(redact('password p@ss echoed decoded'), 'password *** echoed decoded');
  t.equal(urlRedactor('http://cam.local/')('unchanged'), 'unchanged');
});

t.test('the real ffmpeg accepts every argument array (it fails on the input, not on an option)', async (t) => {
  const cases: [string, string[], RegExp][] = [
    ['rtsp', ffmpegArgs({ kind: 'rtsp', url: 'rtsp://127.0.0.1:9/none' }, capture), /Connection refused/],
    ['http', ffmpegArgs({ kind: 'http', url: 'http://127.0.0.1:9/none' }, capture), /Connection refused/],
    ['v4l2', ffmpegArgs({ kind: 'v4l2', device: '/dev/video-edge-classifier-missing' }, capture), /No such file or directory/],
    ['file', ffmpegArgs({ kind: 'file', path: '/nonexistent/clip.mp4', loop: true }, { ...capture, rotation: 90, hflip: true }), /No such file or directory/],
    [
      'raw',
      ffmpegArgs(
        { kind: 'http', url: 'http://127.0.0.1:9/none' },
        { ...capture, raw: { width: 224, height: 224, resize: 'letterbox' }, roi: { x: 0.1, y: 0.1, width: 0.5, height: 0.5 } },
      ),
      /Connection refused/,
    ],
  ];
  for (const [name, args, expected] of cases) {
    const r = spawnSync('ffmpeg', args, { encoding: 'utf8', timeout: 10_000 });
    t.not(r.status, 0, `${name}: fails without a real input`);
    t.match(r.stderr, expected, `${name}: ${r.stderr.trim().split('\n').pop()}`);
    t.notMatch(r.stderr, /Unrecognized option|Option \S+ not found|Error parsing/, `${name}: options accepted`);
  }
});
