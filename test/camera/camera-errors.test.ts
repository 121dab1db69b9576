import t from 'tap';
import { recogniseCameraError } from '../../src/camera/camera-errors.js';

// stderr as the programs print it (from rpicam-apps, libcamera and ffmpeg sources and user reports).
const NO_CAMERA = ['[0:01:02.123456789] [1234]  INFO Camera camera_manager.cpp:325 libcamera v0.3.2+99-1230f78d', 'ERROR: *** no cameras available ***'];
const BUSY = [
  '[0:03:19.444176880] [3274]  INFO Camera camera_manager.cpp:284 libcamera v0.2.0+120-eb00c13d',
  "[0:03:19.453705709] [3282] ERROR V4L2 v4l2_device.cpp:353 'imx708_noir': Unable to set controls: Device or resource busy",
  '[0:03:19.472244161] [3274]  INFO Camera camera.cpp:990 Pipeline handler in use by another process',
  'ERROR: *** failed to acquire camera /base/axi/pcie@120000/rp1/i2c@88000/imx708@1a ***',
];
const DMA_HEAP = [
  '[0:10:29.031297600] [3202] ERROR RPI dma_heaps.cpp:53 Could not open any dmaHeap device',
  '[0:10:29.031920457] [3202] ERROR RPI raspberrypi.cpp:1278 Failed to register camera imx477 10-001a: -12',
  'ERROR: *** no cameras available ***',
];
const SYMBOL = [
  'rpicam-vid: symbol lookup error: /lib/aarch64-linux-gnu/libcamera.so.0.3: undefined symbol: _ZN7libpisp22compute_optimal_strideER24pisp_image_format_config',
];

t.test('each failure kind from the stderr the camera program prints', async (t) => {
  const opts = { user: 'edge', device: 'the Pi camera' };
  const none = recogniseCameraError('rpicam-vid', NO_CAMERA, { code: 255, signal: null }, opts);
  t.equal(none?.kind, 'no_camera');
  t.equal(none?.message, 'rpicam-vid found no camera: ERROR: *** no cameras available ***');
  t.match(none?.hint, /ribbon cable.*rpicam-hello --list-cameras/);

  const busy = recogniseCameraError('rpicam-vid', BUSY, { code: 255, signal: null }, opts);
  t.equal(busy?.kind, 'camera_busy');
  t.match(busy?.message, /^rpicam-vid cannot open the camera: it is in use by another process: .*Device or resource busy/);
  t.match(busy?.hint, /another process holds the Pi camera.*fuser/);

  const perm = recogniseCameraError('rpicam-vid', DMA_HEAP, { code: 255, signal: null }, opts);
  t.equal(perm?.kind, 'permission_denied', 'the dma-heap cause wins over the "no cameras" that follows it');
  t.match(perm?.hint, /add the user 'edge' to the 'video' group \('sudo usermod -aG video edge'/);
  t.match(perm?.hint, /\/dev\/dma_heap/);

  const broken = recogniseCameraError('rpicam-vid', SYMBOL, { code: 127, signal: null }, opts);
  t.equal(broken?.kind, 'camera_stack_broken');
  t.match(broken?.hint, /sudo apt update && sudo apt full-upgrade/);
  const loader = recogniseCameraError('rpicam-vid', [], { code: 127, signal: null }, opts);
  t.equal(loader?.kind, 'camera_stack_broken', 'exit 127 alone means the loader failed');
  t.equal(loader?.message, 'rpicam-vid cannot start: its camera libraries are broken (exit status 127)');
});

t.test('ffmpeg on a V4L2 device', async (t) => {
  const enoent = recogniseCameraError(
    'ffmpeg',
    ['[video4linux2,v4l2 @ 0x55d5] Cannot open video device /dev/video3: No such file or directory', '/dev/video3: No such file or directory'],
    { code: 1, signal: null },
    { device: '/dev/video3' },
  );
  t.equal(enoent?.kind, 'no_camera');
  t.match(enoent?.hint, /^\/dev\/video3 does not exist/);
  const eacces = recogniseCameraError(
    'ffmpeg',
    ['[video4linux2,v4l2 @ 0x55d5] Cannot open video device /dev/video0: Permission denied', '/dev/video0: Permission denied'],
    { code: 1, signal: null },
  );
  t.equal(eacces?.kind, 'permission_denied');
  const ebusy = recogniseCameraError('ffmpeg', ['[video4linux2,v4l2 @ 0x5581] ioctl(VIDIOC_STREAMON): Device or resource busy'], { code: 1, signal: null });
  t.equal(ebusy?.kind, 'camera_busy');
});

t.test('garbage and ordinary failures are not mistaken for a camera error', async (t) => {
  t.equal(recogniseCameraError('rpicam-vid', ['\u0000\u00ff garbage ###', 'lorem ipsum'], { code: 1, signal: null }), undefined);
  t.equal(recogniseCameraError('ffmpeg', ['http://cam.local/stream: Connection refused'], { code: 1, signal: null }), undefined);
  t.equal(recogniseCameraError('rpicam-vid', [], { code: null, signal: 'SIGKILL' }), undefined);
});
