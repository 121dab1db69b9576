import sharp from 'sharp';
import t from 'tap';
import { i420Layout, RPICAM_YUV420_COLORSPACE } from '../../../src/camera/raw-format.js';
import type { RawPictureFormat, TensorDetails, YuvColorSpace } from '../../../src/core/types.js';
import { applyPixelMapping, resolvePixelMapping } from '../../../src/inference/preprocess/quantize.js';
import { RawToTensor, rawFrameToRgb } from '../../../src/inference/preprocess/raw-to-tensor.js';
import { image } from '../../helpers/assets.js';
import { ffmpegBytes, ffmpegI420ToRgb, ffmpegI420ToRgbVia444, i420Unpadded, maxAbsDiff, padI420 } from '../../helpers/raw-frames.js';

const i420 = (width: number, height: number, colorSpace: YuvColorSpace, align = 64): RawPictureFormat => ({
  format: 'i420',
  width,
  height,
  layout: i420Layout(width, height, align),
  colorSpace,
});

function input(dtype: 'uint8' | 'int8' | 'float32', quantization: [number, number]): TensorDetails {
  return {
    name: 'input',
    index: 0,
    shape: [1, 224, 224, 3],
    shape_signature: [1, 224, 224, 3],
    dtype,
    quantization,
    quantization_parameters: {
      scales: quantization[0] ? [quantization[0]] : [],
      zero_points: quantization[0] ? [quantization[1]] : [],
      quantized_dimension: 0,
    },
  };
}

function meanAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!);
  return sum / a.length;
}

t.test("rpicam-vid's colour space (BT.601 full range) against ffmpeg's own conversion of the same frame: within ±2", async (t) => {
  for (const [file, w, h] of [
    ['cat.png', 224, 224],
    ['grace_hopper.png', 300, 200],
    ['hot_dog.jpg', 128, 96],
  ] as const) {
    const unpadded = i420Unpadded(image(file), w, h, RPICAM_YUV420_COLORSPACE);
    const picture = i420(w, h, RPICAM_YUV420_COLORSPACE);
    const frame = padI420(unpadded, picture.format === 'i420' ? picture.layout : i420Layout(w, h));
    const ours = new RawToTensor(picture, w, h).fill(frame);
    const reference = ffmpegI420ToRgb(unpadded, w, h, RPICAM_YUV420_COLORSPACE);
    t.ok(maxAbsDiff(ours, reference) <= 2, `${file} ${w}x${h}: max difference ${maxAbsDiff(ours, reference)}`);
  }
});

t.test('every matrix and range against ffmpeg (chroma repeated 2x2 first): within ±2', async (t) => {
  for (const matrix of ['bt601', 'bt709'] as const) {
    for (const range of ['full', 'limited'] as const) {
      const cs = { matrix, range };
      const unpadded = i420Unpadded(image('bird.png'), 224, 224, cs);
      const picture = i420(224, 224, cs);
      const ours = new RawToTensor(picture, 224, 224).fill(padI420(unpadded, i420Layout(224, 224, 64)));
      const diff = maxAbsDiff(ours, ffmpegI420ToRgbVia444(unpadded, 224, 224, cs));
      t.ok(diff <= 2, `${matrix} ${range}: max difference ${diff}`);
    }
  }
  // The matrices really differ: reading BT.709 frames as BT.601 is off by far more than 2.
  const cs709 = { matrix: 'bt709', range: 'limited' } as const;
  const unpadded = i420Unpadded(image('bird.png'), 224, 224, cs709);
  const wrong = new RawToTensor(i420(224, 224, { matrix: 'bt601', range: 'full' }, 1), 224, 224).fill(unpadded);
  t.ok(maxAbsDiff(wrong, ffmpegI420ToRgbVia444(unpadded, 224, 224, cs709)) > 10, 'a wrong colour space is detected by this comparison');
});

t.test('stride padding is skipped whatever it holds', async (t) => {
  const unpadded = i420Unpadded(image('cat.png'), 780, 440, RPICAM_YUV420_COLORSPACE);
  const picture = i420(780, 440, RPICAM_YUV420_COLORSPACE);
  const layout = i420Layout(780, 440, 64);
  t.equal(layout.yStride, 832);
  const a = new RawToTensor(picture, 780, 440).fill(padI420(unpadded, layout, 0x00));
  const b = new RawToTensor(picture, 780, 440).fill(padI420(unpadded, layout, 0xff));
  t.ok(Buffer.from(a.buffer).equals(Buffer.from(b.buffer)), 'identical output for padding 00 and FF');
  const ref = new RawToTensor(i420(780, 440, RPICAM_YUV420_COLORSPACE, 1), 780, 440).fill(unpadded);
  t.equal(maxAbsDiff(a, ref), 0, 'same pixels as the unpadded frame');
});

t.test("straight into the tensor: uint8, int8 and float32 inputs get the mapping's values", async (t) => {
  const picture = i420(224, 224, RPICAM_YUV420_COLORSPACE);
  const frame = padI420(i420Unpadded(image('cat.png'), 224, 224, RPICAM_YUV420_COLORSPACE), i420Layout(224, 224, 64));
  const rgb = new RawToTensor(picture, 224, 224).fill(frame) as Uint8Array;
  const cases = [
    resolvePixelMapping(input('uint8', [0.0078125, 128])).mapping,
    resolvePixelMapping(input('int8', [0.00784314, -1])).mapping,
    resolvePixelMapping(input('float32', [0, 0]), { normalization: { mean: [127.5], std: [127.5] } }).mapping,
    resolvePixelMapping(input('uint8', [1 / 255, 0]), { normalization: { mean: [123.7, 116.3, 103.5], std: [58.4, 57.1, 57.4] } }).mapping,
  ];
  for (const mapping of cases) {
    const conv = new RawToTensor(picture, 224, 224, { mapping });
    const out = conv.allocate();
    t.equal(conv.fill(frame, out), out, 'fills the buffer it is given');
    const expected = applyPixelMapping(rgb, mapping);
    t.same(Array.from(out.subarray(0, 30)), Array.from(expected.subarray(0, 30)), `${mapping.dtype} ${mapping.kind}: first pixels`);
    t.equal(maxAbsDiff(out, expected), 0, `${mapping.dtype} ${mapping.kind}: every element`);
  }
  const floats = new RawToTensor(picture, 224, 224, { mapping: cases[2]! }).fill(frame);
  t.ok(floats instanceof Float32Array && floats.every((v) => v >= -1 && v <= 1), 'float input in [-1, 1]');
});

t.test('wrong buffers and short frames are refused', async (t) => {
  const picture = i420(224, 224, RPICAM_YUV420_COLORSPACE);
  const conv = new RawToTensor(picture, 224, 224);
  t.throws(() => conv.fill(new Uint8Array(1000)), /raw frame has 1000 bytes: expected 86016 for i420 224x224/);
  t.throws(
    () => conv.fill(new Uint8Array(86016), new Float32Array(224 * 224 * 3)),
    /is a Float32Array of 150528 elements: expected a Uint8Array of at least 150528/,
  );
  t.throws(() => conv.fill(new Uint8Array(86016), new Uint8Array(10)), /expected a Uint8Array of at least 150528/);
  t.throws(() => new RawToTensor(picture, 0, 224), /tensor size must be positive/);
  t.throws(
    () => new RawToTensor(picture, 224, 224, { crop: { x: 200, y: 0, width: 100, height: 10 } }),
    /crop 100x10 at \(200,0\) does not lie inside the 224x224 frame/,
  );
  t.throws(() => new RawToTensor(picture, 224, 224, { crop: { x: 0, y: 0, width: 0, height: 10 } }), /does not lie inside/);
});

t.test('rgb24 frames (ffmpeg rawvideo): direct copy, crop, and mapping', async (t) => {
  const rgb = ffmpegBytes(['-i', image('dragonfly.png'), '-vf', 'scale=224:224,format=rgb24', '-f', 'rawvideo', '-']);
  const picture: RawPictureFormat = { format: 'rgb24', width: 224, height: 224 };
  const same = new RawToTensor(picture, 224, 224);
  t.ok(same.direct);
  t.ok(Buffer.from(same.fill(rgb) as Uint8Array).equals(rgb), 'identity');
  const mapping = resolvePixelMapping(input('int8', [0.00784314, -1])).mapping;
  t.equal(maxAbsDiff(new RawToTensor(picture, 224, 224, { mapping }).fill(rgb), applyPixelMapping(rgb, mapping)), 0, 'int8 mapping');
  // A 100x80 crop at (10, 20) of the frame, unscaled: the same bytes as sharp's extract.
  const crop = new RawToTensor(picture, 100, 80, { crop: { x: 10, y: 20, width: 100, height: 80 } });
  t.ok(crop.direct);
  const expected = await sharp(rgb, { raw: { width: 224, height: 224, channels: 3 } })
    .extract({ left: 10, top: 20, width: 100, height: 80 })
    .raw()
    .toBuffer();
  t.ok(Buffer.from(crop.fill(rgb) as Uint8Array).equals(expected), 'crop equals sharp extract');
});

t.test('scaling: a 640x480 frame fitted to 224x224 looks like sharp resizing the same picture', async (t) => {
  const cs = RPICAM_YUV420_COLORSPACE;
  const unpadded = i420Unpadded(image('cat_720p.jpg'), 640, 480, cs);
  const picture = i420(640, 480, cs);
  const frame = padI420(unpadded, i420Layout(640, 480, 64));
  const fullRgb = new RawToTensor(picture, 640, 480).fill(frame) as Uint8Array;
  const raw = { raw: { width: 640, height: 480, channels: 3 as const } };
  for (const [resize, fit] of [
    ['stretch', 'fill'],
    ['crop', 'cover'],
    ['letterbox', 'contain'],
  ] as const) {
    const conv = new RawToTensor(picture, 224, 224, { resize });
    t.notOk(conv.direct);
    const ours = conv.fill(frame);
    // crop: the centred 480x480 square (sharp's cover rounds its crop to whole pixels of the scaled image instead).
    const source =
      resize === 'crop' ? sharp(Buffer.from(fullRgb), raw).extract({ left: 80, top: 0, width: 480, height: 480 }) : sharp(Buffer.from(fullRgb), raw);
    const theirs = await source.resize(224, 224, { fit, background: '#000' }).raw().toBuffer();
    const mad = meanAbsDiff(ours, theirs);
    t.ok(mad < 4, `${resize}: mean difference ${mad.toFixed(2)} levels`);
  }
  // Letterbox bars carry the mapped value of black.
  const mapping = resolvePixelMapping(input('float32', [0, 0]), { normalization: { mean: [127.5], std: [127.5] } }).mapping;
  const boxed = new RawToTensor(picture, 224, 224, { resize: 'letterbox', mapping }).fill(frame);
  t.equal(boxed[0], -1, 'top-left pixel is a bar: black mapped to -1');
  t.not(boxed[(112 * 224 + 112) * 3], -1, 'the centre is picture');
  // 4:3 into a square: the bars are (224 - 168) / 2 = 28 rows each.
  const u8 = new RawToTensor(picture, 224, 224, { resize: 'letterbox' }).fill(frame);
  const rowIsBlack = (r: number) => u8.subarray(r * 672, r * 672 + 672).every((v) => v === 0);
  t.ok(rowIsBlack(27) && !rowIsBlack(28) && !rowIsBlack(195) && rowIsBlack(196), 'bars of 28 rows above and below');
});

t.test('an exact 2:1 downscale samples between the pixels it covers', async (t) => {
  // A 4x2 rgb24 frame into 2x1: each output pixel is the mean of its 2x2 block (bilinear at half-pixel centres).
  const frame = Uint8Array.from([0, 0, 0, 100, 100, 100, 200, 0, 0, 200, 0, 0, 0, 0, 0, 100, 100, 100, 0, 0, 200, 0, 0, 200]);
  const out = new RawToTensor({ format: 'rgb24', width: 4, height: 2 }, 2, 1).fill(frame);
  t.same(Array.from(out), [50, 50, 50, 100, 0, 100]);
});

t.test('rawFrameToRgb gives the whole frame as packed RGB for a snapshot', async (t) => {
  const cs = RPICAM_YUV420_COLORSPACE;
  const unpadded = i420Unpadded(image('cat.png'), 224, 224, cs);
  const rgb = rawFrameToRgb(i420(224, 224, cs), padI420(unpadded, i420Layout(224, 224, 64)));
  t.equal(rgb.length, 224 * 224 * 3);
  const jpeg = await sharp(rgb, { raw: { width: 224, height: 224, channels: 3 } })
    .jpeg()
    .toBuffer();
  t.equal((await sharp(jpeg).metadata()).width, 224);
  const flat = Buffer.alloc(12, 7);
  t.equal(rawFrameToRgb({ format: 'rgb24', width: 2, height: 2 }, flat).length, 12);
});
