import t from 'tap';
import { Labels } from '../../src/inference/labels.js';
import { dequantize, topK } from '../../src/inference/postprocess.js';

t.test('dequantize one value: real = (q - zero_point) * scale', async (t) => {
  t.equal(dequantize(Uint8Array.of(200), 0.00390625, 0)[0], 0.78125);
  t.equal(dequantize(Uint8Array.of(0), 0.0078125, 128)[0], -1);
  t.equal(dequantize(Uint8Array.of(255), 0.0078125, 128)[0], 0.9921875);
  t.equal(dequantize(Int8Array.of(-128), 0.5, -128)[0], 0);
});

t.test('dequantize over typed arrays', async (t) => {
  const u8 = dequantize(Uint8Array.from([0, 128, 200, 255]), 0.00390625, 0);
  t.ok(u8 instanceof Float32Array);
  t.same(Array.from(u8), [0, 0.5, 0.78125, 0.99609375]);
  const i8 = dequantize(Int8Array.from([-128, 0, 127]), 0.5, -128);
  t.same(Array.from(i8), [0, 64, 127.5]);
  t.same(Array.from(dequantize(Int16Array.from([-2, 2]), 0.25, 0)), [-0.5, 0.5]);
  t.same(Array.from(dequantize(Int32Array.from([10]), 0.1, 5)), [Math.fround(0.5)]);
  const f = Float32Array.from([0.25, 0.75]);
  t.equal(dequantize(f, 0.5, 3), f, 'float32 outputs are returned untouched');
  t.same(Array.from(dequantize(Uint8Array.from([7, 9]), 0, 0)), [7, 9], 'scale 0 (not quantized) converts as is');
  const out = new Float32Array(3);
  t.equal(dequantize(Uint8Array.from([1, 2, 3]), 1, 1, out), out, 'reuses the output buffer');
  t.same(Array.from(out), [0, 1, 2]);
});

t.test('topK: highest first, ties by lower index, threshold, k > N', async (t) => {
  const scores = [0.1, 0.5, 0.3, 0.5, 0.05, 0.3];
  t.same(topK(scores, 3, 0, ['a', 'b', 'c', 'd', 'e', 'f']), [
    { index: 1, label: 'b', score: 0.5 },
    { index: 3, label: 'd', score: 0.5 },
    { index: 2, label: 'c', score: 0.3 },
  ]);
  t.same(
    topK(scores, 10, 0.3).map((c) => c.index),
    [1, 3, 2, 5],
    'threshold is inclusive; k > N returns all above it',
  );
  t.same(topK(scores, 0, 0), [], 'k = 0');
  t.same(topK(scores, 2, 0.9), [], 'nothing above the threshold');
  t.same(
    topK([NaN, 0.2, NaN], 3, 0).map((c) => c.index),
    [1],
    'NaN never selected',
  );
  t.same(topK(scores, 1, 0)[0]!.label, 'class 1', 'no labels: class <index>');
  t.same(
    topK(scores, 2, 0, ['only']).map((c) => c.label),
    ['class 1', 'class 3'],
    'labels shorter than the output',
  );
  t.same(
    topK(scores, 1, 0, new Labels(['x', 'y'], 'test')).map((c) => c.label),
    ['y'],
    'a Labels object',
  );
});

t.test('topK agrees with a full sort on 1001 random scores', async (t) => {
  let seed = 7;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const scores = new Float32Array(1001);
  for (let i = 0; i < scores.length; i++) scores[i] = Math.floor(rand() * 50) / 50; // many ties
  const expected = Array.from(scores, (s, i) => ({ s, i }))
    .sort((a, b) => b.s - a.s || a.i - b.i)
    .slice(0, 5)
    .map((x) => x.i);
  t.same(
    topK(scores, 5, 0).map((c) => c.index),
    expected,
  );
});
