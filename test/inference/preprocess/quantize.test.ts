import t from 'tap';
import type { DType, TensorDetails } from '../../../src/core/types.js';
import { applyPixelMapping, type PixelMapping, quantize, resolvePixelMapping, roundHalfAwayFromZero } from '../../../src/inference/preprocess/quantize.js';

const tensor = (dtype: DType, scale = 0, zeroPoint = 0, name = 'input'): TensorDetails => ({
  name,
  index: 0,
  shape: [1, 2, 2, 3],
  shape_signature: [1, 2, 2, 3],
  dtype,
  quantization: [scale, zeroPoint],
  quantization_parameters: { scales: scale ? [scale] : [], zero_points: scale ? [zeroPoint] : [], quantized_dimension: 0 },
});

/** Tensor value for pixel value p on channel c. */
const at = (m: PixelMapping, p: number, c = 0): number => (m.kind === 'identity' ? p : m.lut[c * 256 + p]!);

t.test('quantize: q = clamp(round(real / scale) + zero_point), half away from zero', async (t) => {
  t.equal(quantize(0.5, 1 / 128, 128, 'uint8'), 192);
  t.equal(quantize(-2, 1 / 128, 128, 'uint8'), 0, 'clamped at 0');
  t.equal(quantize(3, 1 / 128, 128, 'uint8'), 255, 'clamped at 255');
  t.equal(quantize(2.5, 1, 0, 'int8'), 3);
  t.equal(quantize(-2.5, 1, 0, 'int8'), -3, 'not -2 as Math.round would give');
  t.equal(quantize(100, 0.5, 0, 'int8'), 127, 'int8 clamps at 127');
  t.equal(quantize(-300, 1, 0, 'int8'), -128, 'int8 clamps at -128');
  t.equal(quantize(0.78125, 0.00390625, 0, 'uint8'), 200, 'inverse of the dequantize example');
  t.equal(quantize(40000, 1, 0, 'int16'), 32767);
  t.equal(roundHalfAwayFromZero(-0.5), -1);
  t.throws(() => quantize(1, 0, 0, 'uint8'), { message: 'quantization scale: expected a positive number, but received 0' });
});

t.test('uint8 input without normalization: raw pixel bytes (identity, no table)', async (t) => {
  const { mapping, warnings } = resolvePixelMapping(tensor('uint8', 0.0078125, 128));
  t.equal(mapping.kind, 'identity');
  t.equal(mapping.source, 'quantization');
  t.same(mapping.normalization, { mean: [128, 128, 128], std: [128, 128, 128] }, 'implied mean = zero_point - 0, std = 1/scale');
  t.same(warnings, []);
  const rgb = Uint8Array.from([0, 1, 2, 3, 4, 5]);
  t.equal(applyPixelMapping(rgb, mapping), rgb, 'the pixel buffer itself is the tensor');
  const out = new Uint8Array(6);
  t.equal(applyPixelMapping(rgb, mapping, out), out);
  t.same(Array.from(out), [0, 1, 2, 3, 4, 5]);
});

t.test('int8 input without normalization: q = pixel - 128 whatever the zero point', async (t) => {
  const { mapping } = resolvePixelMapping(tensor('int8', 0.5, -10));
  t.equal(mapping.kind, 'table');
  t.equal(mapping.dtype, 'int8');
  t.same([at(mapping, 0), at(mapping, 128), at(mapping, 255), at(mapping, 7, 2)], [-128, 0, 127, -121]);
  const out = applyPixelMapping(Uint8Array.from([0, 128, 255]), mapping);
  t.ok(out instanceof Int8Array);
  t.same(Array.from(out), [-128, 0, 127]);
});

t.test('MobileNet V2 quant metadata (mean 127.5, std 127.5; scale 1/128, zero point 128): hand-computed table', async (t) => {
  const { mapping, warnings } = resolvePixelMapping(tensor('uint8', 0.0078125, 128), {
    metadataNormalization: { mean: [127.5], std: [127.5] },
  });
  t.same(warnings, []);
  t.equal(mapping.source, 'metadata');
  t.equal(mapping.kind, 'table', 'not exactly the identity');
  // p=0: r=-1 → -128+128 = 0. p=128: r=0.5/127.5 → 0.50196/… → round 1 → 129.
  // p=200: r=72.5/127.5 → 72.78 → 73 → 201. p=255: r=1 → 128+128 = 256 → clamped 255.
  t.same([at(mapping, 0), at(mapping, 127), at(mapping, 128), at(mapping, 200), at(mapping, 255)], [0, 127, 129, 201, 255]);
});

t.test('int8 input with metadata normalization: hand-computed values', async (t) => {
  const { mapping } = resolvePixelMapping(tensor('int8', 0.0078125, 0), { metadataNormalization: { mean: [127.5], std: [127.5] } });
  // p=64: (64-127.5)/127.5 = -0.498039 → /0.0078125 = -63.749 → -64.
  t.same([at(mapping, 0), at(mapping, 64), at(mapping, 255)], [-128, -64, 127]);
});

t.test('a metadata normalization that saturates a quantized input is replaced, with a warning', async (t) => {
  // The AutoML flowers model: metadata mean 0, std 1 on a uint8 input with scale 1/127, zero point 128.
  const { mapping, warnings } = resolvePixelMapping(tensor('uint8', 0.007874015718698502, 128, 'image'), {
    metadataNormalization: { mean: [0], std: [1] },
    model: 'flowers.tflite',
  });
  t.equal(mapping.kind, 'identity');
  t.equal(mapping.source, 'quantization');
  t.equal(warnings.length, 1);
  t.match(
    warnings[0],
    /^flowers\.tflite: the metadata normalization \(mean 0,0,0, std 1,1,1\) maps pixels 0\.\.255 to 0\.\.255, but input 'image' \(uint8, scale 0\.007874, zero point 128\) represents only -1\.008\.\.1: 762 of 768 channel values would saturate\. Feeding the pixels as the input's quantization implies instead \(raw bytes\)/,
  );
});

t.test('a configured normalization wins over metadata; if it saturates it is still used, with a warning', async (t) => {
  const { mapping, warnings } = resolvePixelMapping(tensor('uint8', 0.0078125, 128), {
    normalization: { mean: [0], std: [1] },
    metadataNormalization: { mean: [127.5], std: [127.5] },
  });
  t.equal(mapping.source, 'config');
  t.equal(at(mapping, 2), 255);
  t.match(warnings[0], /Using it as configured$/);
});

t.test('float32 input: (pixel - mean) / std per channel', async (t) => {
  const { mapping } = resolvePixelMapping(tensor('float32'), { metadataNormalization: { mean: [127.5], std: [127.5] } });
  t.equal(mapping.dtype, 'float32');
  t.same([at(mapping, 0), at(mapping, 51), at(mapping, 255)], [-1, Math.fround(-0.6), 1]);
  const imagenet = resolvePixelMapping(tensor('float32'), {
    normalization: { mean: [123.675, 116.28, 103.53], std: [58.395, 57.12, 57.375] },
  }).mapping;
  t.ok(Math.abs(at(imagenet, 0, 0) - -2.117904) < 1e-5, 'R: (0 - 123.675) / 58.395');
  t.ok(Math.abs(at(imagenet, 255, 2) - 2.64) < 1e-5, 'B: (255 - 103.53) / 57.375');
  const out = applyPixelMapping(Uint8Array.from([0, 0, 0, 255, 255, 255]), imagenet);
  t.ok(out instanceof Float32Array);
  t.ok(Math.abs(out[1]! - (0 - 116.28) / 57.12) < 1e-5, 'G channel uses the G mean/std');
});

t.test('errors say what to set', async (t) => {
  t.throws(() => resolvePixelMapping(tensor('float32'), { model: 'm.tflite' }), {
    message:
      'm.tflite has a float32 input and no normalization in its metadata: set preprocess.mean and preprocess.std (e.g. 127.5 and 127.5 for inputs in [-1,1], 0 and 255 for [0,1])',
  });
  t.throws(() => resolvePixelMapping(tensor('int16', 1, 0)), { message: "model input 'input' has dtype int16: expected uint8, int8 or float32" });
  t.throws(() => resolvePixelMapping(tensor('float32'), { normalization: { mean: [1, 2], std: [1] } }), {
    message: 'preprocess.mean/std: mean has 2 values: expected 1 (all channels) or 3 (R, G, B)',
  });
  t.throws(() => resolvePixelMapping(tensor('float32'), { normalization: { mean: [0], std: [0] } }), {
    message: /std holds 0/,
  });
  t.throws(() => applyPixelMapping(new Uint8Array(6), resolvePixelMapping(tensor('int8', 1, 0)).mapping, new Uint8Array(6)), {
    message: 'input tensor buffer is a Uint8Array of 6 elements: expected a Int8Array of at least 6',
  });
});

t.test('an integer input without quantization parameters takes raw pixels; a normalization is ignored with a warning', async (t) => {
  const { mapping, warnings } = resolvePixelMapping(tensor('uint8'), { metadataNormalization: { mean: [127.5], std: [127.5] } });
  t.equal(mapping.kind, 'identity');
  t.match(warnings[0], /without quantization parameters/);
  t.same([at(resolvePixelMapping(tensor('int8')).mapping, 0), at(resolvePixelMapping(tensor('int8')).mapping, 255)], [-128, 127]);
});
