import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import t from 'tap';
import type { DType, TensorDetails } from '../../../src/core/types.js';
import { checkImageInput, FrameDecodeError, Preprocessor, sniffImageFormat } from '../../../src/inference/preprocess/preprocess.js';
import { image } from '../../helpers/assets.js';

const input = (h: number, w: number, dtype: DType = 'uint8', scale = 0.0078125, zeroPoint = 128, shape?: number[]): TensorDetails => ({
  name: 'input',
  index: 0,
  shape: shape ?? [1, h, w, 3],
  shape_signature: shape ?? [1, h, w, 3],
  dtype,
  quantization: [scale, zeroPoint],
  quantization_parameters: { scales: [scale], zero_points: [zeroPoint], quantized_dimension: 0 },
});

/** A w×h RGB image whose pixel (x, y) has colour f(x, y). */
const raw = (w: number, h: number, f: (x: number, y: number) => [number, number, number]) => {
  const b = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) b.set(f(x, y), (y * w + x) * 3);
  return sharp(b, { raw: { width: w, height: h, channels: 3 } });
};
const px = (tensor: ArrayLike<number>, w: number, x: number, y: number) => {
  const o = (y * w + x) * 3;
  return [tensor[o]!, tensor[o + 1]!, tensor[o + 2]!];
};
const near = (a: number[], b: number[], tol = 40) => a.every((v, i) => Math.abs(v - b[i]!) <= tol);

t.test('format sniffing recognises every magic number', async (t) => {
  const src = raw(8, 8, (x) => [x * 30, 100, 200]);
  for (const format of ['jpeg', 'png', 'gif', 'webp', 'tiff', 'avif'] as const) {
    const bytes = await src.clone().toFormat(format).toBuffer();
    t.equal(sniffImageFormat(bytes), format, `${format} written by sharp`);
  }
  t.equal(sniffImageFormat(readFileSync(image('rgb6X4.bmp'))), 'bmp', 'the BMP asset');
  t.equal(sniffImageFormat(Buffer.from([0x4d, 0x4d, 0x00, 0x2a, 0, 0, 0, 8])), 'tiff', 'big-endian TIFF');
  const ftyp = (...brands: string[]) =>
    Buffer.concat([
      Buffer.from([0, 0, 0, 8 + 4 * (brands.length + 1)]),
      Buffer.from('ftyp'),
      Buffer.from(brands[0]!),
      Buffer.alloc(4),
      Buffer.from(brands.slice(1).join('')),
    ]);
  t.equal(sniffImageFormat(ftyp('heic', 'mif1', 'heic')), 'heic');
  t.equal(sniffImageFormat(ftyp('mif1', 'mif1', 'avif')), 'avif', 'AVIF by compatible brand');
  t.equal(sniffImageFormat(ftyp('mif1', 'mif1')), 'heif');
  t.equal(sniffImageFormat(ftyp('isom', 'mp41')), null, 'an MP4 is not an image');
  t.equal(sniffImageFormat(Buffer.from('GIF89a......')), 'gif');
  t.equal(sniffImageFormat(Buffer.from('hello, world')), null);
  t.equal(sniffImageFormat(new Uint8Array(0)), null);
  t.equal(sniffImageFormat(Buffer.from([0xff, 0xd8])), null, 'too short for a JPEG');
});

t.test('decodes every readable format into a [1,8,8,3] tensor', async (t) => {
  const pre = new Preprocessor(input(8, 8));
  const src = raw(16, 16, () => [200, 100, 50]);
  for (const format of ['jpeg', 'png', 'gif', 'webp', 'tiff', 'avif'] as const) {
    const { tensor, format: found } = await pre.prepare(await src.clone().toFormat(format).toBuffer(), `x.${format}`);
    t.equal(found, format);
    t.equal(tensor.length, 8 * 8 * 3);
    t.ok(near(px(tensor, 8, 4, 4), [200, 100, 50], 12), `${format} colour survives`);
  }
});

t.test('decode failures are FrameDecodeErrors by kind, naming the file', async (t) => {
  const pre = new Preprocessor(input(224, 224));
  await t.rejects(pre.prepare(readFileSync(image('rgb6X4.bmp')), 'rgb6X4.bmp'), {
    name: 'FrameDecodeError',
    kind: 'unsupported-format',
    message: 'rgb6X4.bmp is a BMP image, which this decoder does not read: use JPEG, PNG, WebP, GIF, TIFF or AVIF',
  });
  const jpeg = readFileSync(image('cat_720p.jpg'));
  await t.rejects(pre.prepare(jpeg.subarray(0, jpeg.length >> 1), 'cat_720p.jpg'), {
    kind: 'corrupt',
    message: /^cat_720p\.jpg is a corrupt or truncated JPEG image: .*premature end of JPEG/,
  });
  await t.rejects(pre.prepare(jpeg.subarray(0, jpeg.length - 2), 'frame 9'), { kind: 'corrupt', message: /^frame 9 is a corrupt/ }, 'missing EOI');
  const random = Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 7919 + 13) % 251));
  await t.rejects(pre.prepare(random, 'frame 3'), {
    kind: 'not-an-image',
    message: 'frame 3 is not an image: its first bytes (0d 97 26 b0 3f c9 58 e2) match no image format; expected JPEG, PNG, WebP, GIF, TIFF or AVIF',
  });
  await t.rejects(pre.prepare(Buffer.alloc(0)), {
    kind: 'not-an-image',
    message: 'frame is empty (0 bytes): expected a JPEG, PNG, WebP, GIF, TIFF or AVIF image',
  });
  const heic = Buffer.concat([Buffer.from([0, 0, 0, 20]), Buffer.from('ftypheic'), Buffer.alloc(4), Buffer.from('mif1')]);
  await t.rejects(pre.prepare(heic, 'photo.heic'), { kind: 'unsupported-format', message: /^photo\.heic is a HEIC image/ });
  const err = await pre.prepare(readFileSync(image('rgb6X4.bmp'))).catch((e: unknown) => e);
  t.ok(err instanceof FrameDecodeError);
  t.equal((err as FrameDecodeError).format, 'bmp');
});

t.test('EXIF orientation is applied before resizing', async (t) => {
  // Stored 64x32: left half red, right half blue; orientation 6 = rotate 90° clockwise to display,
  // which puts the left half on top of a 32x64 picture.
  const jpeg = await raw(64, 32, (x) => (x < 32 ? [255, 0, 0] : [0, 0, 255]))
    .jpeg({ quality: 95 })
    .withMetadata({ orientation: 6 })
    .toBuffer();
  const { tensor } = await new Preprocessor(input(16, 8)).prepare(jpeg, 'rotated.jpg');
  t.ok(near(px(tensor, 8, 4, 2), [255, 0, 0]), 'top is red');
  t.ok(near(px(tensor, 8, 4, 13), [0, 0, 255]), 'bottom is blue');
  t.ok(near(px(tensor, 8, 1, 2), px(tensor, 8, 6, 2), 10), 'left and right agree on a row');
});

t.test('resize modes: stretch keeps everything, crop keeps the centre, letterbox adds black bars', async (t) => {
  // 64x32: red band x<16, green 16..47, blue x>=48.
  const png = await raw(64, 32, (x) => (x < 16 ? [255, 0, 0] : x < 48 ? [0, 255, 0] : [0, 0, 255]))
    .png()
    .toBuffer();
  const stretch = (await new Preprocessor(input(16, 16)).prepare(png)).tensor;
  t.same(px(stretch, 16, 0, 8), [255, 0, 0]);
  t.same(px(stretch, 16, 15, 8), [0, 0, 255]);
  const crop = (await new Preprocessor(input(16, 16), { resize: 'crop' }).prepare(png)).tensor;
  t.ok(near(px(crop, 16, 0, 8), [0, 255, 0]), 'the red band is cropped off');
  t.ok(near(px(crop, 16, 15, 8), [0, 255, 0]), 'and the blue one');
  const box = (await new Preprocessor(input(16, 16), { resize: 'letterbox' }).prepare(png)).tensor;
  t.same(px(box, 16, 8, 0), [0, 0, 0], 'black bar on top');
  t.same(px(box, 16, 8, 15), [0, 0, 0], 'black bar at the bottom');
  t.same(px(box, 16, 0, 8), [255, 0, 0], 'whole width kept');
});

t.test('grayscale and alpha become 3-channel RGB', async (t) => {
  const gray = await raw(8, 8, () => [90, 90, 90])
    .toColourspace('b-w')
    .png()
    .toBuffer();
  t.equal((await sharp(gray).metadata()).channels, 1, 'a real 1-channel PNG');
  t.same(px((await new Preprocessor(input(4, 4)).prepare(gray)).tensor, 4, 1, 1), [90, 90, 90]);
  const rgba = Buffer.alloc(8 * 8 * 4);
  for (let i = 0; i < 64; i++) rgba.set([10, 120, 230, 128], i * 4);
  const png = await sharp(rgba, { raw: { width: 8, height: 8, channels: 4 } })
    .png()
    .toBuffer();
  t.ok(near(px((await new Preprocessor(input(4, 4)).prepare(png)).tensor, 4, 2, 2), [10, 120, 230], 2), 'alpha dropped, colour kept');
});

t.test('tensor dtypes and buffer reuse', async (t) => {
  const png = await raw(4, 4, () => [0, 128, 255])
    .png()
    .toBuffer();
  const u8 = await new Preprocessor(input(4, 4)).prepare(png);
  t.ok(u8.tensor instanceof Uint8Array);
  t.same(px(u8.tensor, 4, 0, 0), [0, 128, 255], 'uint8: raw pixel bytes');
  const i8 = await new Preprocessor(input(4, 4, 'int8', 0.0078125, 0)).prepare(png);
  t.ok(i8.tensor instanceof Int8Array);
  t.same(px(i8.tensor, 4, 0, 0), [-128, 0, 127], 'int8: pixel - 128');
  const f32 = await new Preprocessor(input(4, 4, 'float32', 0, 0), { normalization: { mean: [127.5], std: [127.5] } }).prepare(png);
  t.ok(f32.tensor instanceof Float32Array);
  t.same(px(f32.tensor, 4, 0, 0), [-1, Math.fround(0.5 / 127.5), 1]);
  const into = new Uint8Array(48);
  const again = await new Preprocessor(input(4, 4)).prepare(png, 'x.png', into);
  t.equal(again.tensor, into, 'writes into the given buffer');
  t.same(Array.from(into), Array.from(u8.tensor));
});

t.test('the input tensor must be [1,H,W,3] uint8/int8/float32', async (t) => {
  t.same(checkImageInput(input(224, 160)), { height: 224, width: 160, dtype: 'uint8' });
  t.throws(() => new Preprocessor(input(0, 0, 'float32', 0, 0, [1, 3, 224, 224])), {
    message:
      "model input 'input' has shape [1,3,224,224] and dtype float32: expected an RGB image tensor of shape [1,H,W,3] (NHWC) with dtype uint8, int8 or float32",
  });
  t.throws(() => checkImageInput(input(8, 8, 'int16')), { message: /has shape \[1,8,8,3\] and dtype int16: expected/ });
  t.throws(() => checkImageInput(input(0, 0, 'uint8', 1, 0, [1, 3])), { message: /has shape \[1,3\]/ });
  t.throws(() => new Preprocessor(input(8, 8), { resize: 'zoom' as 'crop' }), { message: 'resize mode "zoom" is not one of stretch, crop, letterbox' });
});

t.test('ROI: the region (after EXIF orientation) is what gets fitted', async (t) => {
  // Left half red, right half blue; the ROI is the right half.
  const img = await raw(40, 20, (x) => (x < 20 ? [255, 0, 0] : [0, 0, 255]))
    .png()
    .toBuffer();
  const whole = await new Preprocessor(input(4, 4)).prepare(img);
  t.ok(near(px(whole.tensor, 4, 0, 0), [255, 0, 0]), 'without ROI the left is red');
  const right = await new Preprocessor(input(4, 4), { roi: { x: 0.5, y: 0, width: 0.5, height: 1 } }).prepare(img);
  for (const [x, y] of [
    [0, 0],
    [3, 3],
    [0, 3],
  ] as const)
    t.ok(near(px(right.tensor, 4, x, y), [0, 0, 255]), `ROI pixel (${x},${y}) is blue`);
  // EXIF orientation 6 (rotate 90° clockwise to display): the stored top becomes the right side.
  const topRed = await raw(20, 40, (_x, y) => (y < 20 ? [255, 0, 0] : [0, 255, 0]))
    .jpeg()
    .withMetadata({ orientation: 6 })
    .toBuffer();
  const shown = await new Preprocessor(input(4, 4), { roi: { x: 0.5, y: 0, width: 0.5, height: 1 } }).prepare(topRed);
  t.ok(near(px(shown.tensor, 4, 1, 1), [255, 0, 0]), 'the ROI is taken from the displayed picture');
});

t.test('raw frames go straight into the tensor; a frame of the wrong size is a corrupt frame', async (t) => {
  const pre = new Preprocessor(input(2, 2, 'float32', 0, 0), { normalization: { mean: [0], std: [255] } });
  const frame = Buffer.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]);
  const out = await pre.prepare(frame, 'frame 1', undefined, { format: 'rgb24', width: 2, height: 2 });
  t.equal(out.format, 'rgb24');
  t.same(Array.from(out.tensor), [1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1]);
  await t.rejects(pre.prepare(frame.subarray(0, 9), 'frame 2', undefined, { format: 'rgb24', width: 2, height: 2 }), {
    name: 'FrameDecodeError',
    kind: 'corrupt',
    message: 'frame 2 has 9 bytes: expected 12 for a rgb24 2x2 frame',
  });
});
