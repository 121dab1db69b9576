import t from 'tap';
import type { DType, TensorDetails } from '../../src/core/types.js';
import { formatNested, jsonToTensor, matchInputs, parseInputSpec, shortestFloat32, TensorValueError, tensorToJson } from '../../src/inference/tensor-json.js';

const tensor = (name: string, shape: number[], dtype: DType, scale = 0, zp = 0, index = 0): TensorDetails => ({
  name,
  index,
  shape,
  shape_signature: shape,
  dtype,
  quantization: [scale, zp],
  quantization_parameters: scale ? { scales: [scale], zero_points: [zp], quantized_dimension: 0 } : { scales: [], zero_points: [], quantized_dimension: 0 },
});

t.test('float32 [1,1]: nested arrays in and out', async (t) => {
  const x = tensor('dense_input', [1, 1], 'float32');
  const a = jsonToTensor([[10]], x);
  t.ok(a instanceof Float32Array);
  t.same([...a], [10]);
  const out = tensorToJson(new Float32Array([18.982643127441406]), { ...x, name: 'Identity' });
  t.same(out.values, [[18.982643]], 'shortest float32 form, nested in the shape');
  t.equal(out.dequantized, undefined, 'no dequantized values for a float tensor');
});

t.test('shape errors name the tensor, the expected shape and what came', async (t) => {
  const x = tensor('dense_input', [1, 1], 'float32');
  t.throws(() => jsonToTensor([10], x), {
    name: 'TensorValueError',
    message:
      /input 'dense_input' \(#0, \[1,1\] float32\): expected nested arrays of shape \[1,1\], e\.g\. \[\[0\.5\]\]; at \[0\] expected an array of 1, got a number/,
  });
  t.throws(() => jsonToTensor([[1, 2]], x), { message: /at \[0\] expected an array of 1, got an array of 2/ });
  t.throws(() => jsonToTensor([[[1]]], x), { message: /\[0\]\[0\] must be a finite number, got an array/ });
  t.throws(() => jsonToTensor([['a']], x), { message: /\[0\]\[0\] must be a finite number, got "a"/ });
  t.throws(() => jsonToTensor([[null]], x), TensorValueError);
});

t.test('quantized uint8 and int8: real values quantized with scale and zero point', async (t) => {
  // The MobileNet quant input: scale 1/128, zero point 128, so real r ↦ round(128 r) + 128.
  const u8 = tensor('input', [1, 3], 'uint8', 0.0078125, 128);
  t.same([...jsonToTensor([[0, 0.5, -1]], u8)], [128, 192, 0]);
  t.throws(() => jsonToTensor([[1.5, 0, 0]], u8), {
    message: /\[0\]\[0\] = 1\.5 is outside the range the tensor can hold, \[-1, 0\.992188\] \(uint8, scale 0\.0078125, zero point 128\)/,
  });
  t.same([...jsonToTensor([[255, 0, 7]], u8, { raw: true })], [255, 0, 7], '--raw takes stored values');
  t.throws(() => jsonToTensor([[256, 0, 0]], u8, { raw: true }), { message: /= 256 is not a uint8 value: expected a whole number in \[0, 255\]/ });
  t.throws(() => jsonToTensor([[1.5, 0, 0]], u8, { raw: true }), { message: /= 1\.5 is not a uint8 value/ });

  // The full-integer variant's input: int8, scale 0.00784314, zero point -1.
  const i8 = tensor('input', [2], 'int8', 0.007843137718737125, -1);
  const q = jsonToTensor([0, 1], i8);
  t.ok(q instanceof Int8Array);
  t.same([...q], [-1, 126]);
  const back = tensorToJson(new Int8Array([-1, 126]), i8);
  t.same(back.values, [-1, 126]);
  const real = back.dequantized as number[];
  t.equal(real[0], 0, 'dequantized beside the raw values: (q − zero point) × scale');
  t.ok(Math.abs(real[1]! - 127 * 0.007843137718737125) < 1e-6, `(126 + 1) × scale, got ${real[1]}`);
});

t.test('int32, bool and int64 tensors; unsupported dtypes', async (t) => {
  t.same([...jsonToTensor([1, -2], tensor('i', [2], 'int32'))], [1, -2]);
  t.throws(() => jsonToTensor([1.5, 2], tensor('i', [2], 'int32')), { message: /is not a int32 value/ });
  t.same([...jsonToTensor([true, 0], tensor('b', [2], 'bool'))], [1, 0]);
  t.same(tensorToJson(new Uint8Array([1, 0]), tensor('b', [2], 'bool')).values, [true, false]);
  t.same([...jsonToTensor([5], tensor('l', [1], 'int64'))], [5n]);
  t.same(jsonToTensor(3, tensor('s', [], 'float32')).length, 1, 'a scalar for shape []');
  t.throws(() => jsonToTensor(['x'], tensor('s', [1], 'string')), { message: /dtype string cannot be given as JSON/ });
});

t.test('per-channel quantization uses the scale of each channel', async (t) => {
  const x: TensorDetails = {
    ...tensor('w', [2, 2], 'int8'),
    quantization_parameters: { scales: [0.5, 0.25], zero_points: [0, 0], quantized_dimension: 1 },
  };
  t.same(
    [
      ...jsonToTensor(
        [
          [1, 1],
          [2, 2],
        ],
        x,
      ),
    ],
    [2, 4, 4, 8],
  );
  t.same(tensorToJson(new Int8Array([2, 4, 4, 8]), x).dequantized, [
    [1, 1],
    [2, 2],
  ]);
});

t.test('shortestFloat32 and formatNested', async (t) => {
  t.equal(shortestFloat32(Math.fround(0.1)), 0.1);
  t.equal(shortestFloat32(Math.fround(18.982643)), 18.982643);
  t.equal(
    formatNested([
      [1, 2],
      [3, 4],
    ]),
    '[[1, 2], [3, 4]]',
  );
  const long = Array.from({ length: 1001 }, (_, i) => i);
  t.equal(formatNested([long]), '[[0, 1, 2, ..., 998, 999, 1000]]', 'numpy-style summary over 1000 elements');
});

t.test('--input parsing and matching to the model inputs', async (t) => {
  t.same(parseInputSpec('[[10.0]]'), { arg: '[[10.0]]', json: '[[10.0]]' });
  t.same(parseInputSpec('x=@in.json'), { arg: 'x=@in.json', tensor: 'x', file: 'in.json' });
  t.same(parseInputSpec('#3=[1]'), { arg: '#3=[1]', tensor: '#3', json: '[1]' });
  t.same(parseInputSpec('0=[1]'), { arg: '0=[1]', tensor: '0', json: '[1]' });
  t.same(parseInputSpec('serving_default_x:0=[1]'), { arg: 'serving_default_x:0=[1]', tensor: 'serving_default_x:0', json: '[1]' });
  t.throws(() => parseInputSpec('x='), { message: /--input 'x=': no value/ });

  const a = tensor('a', [1], 'float32', 0, 0, 4);
  const b = tensor('b', [1], 'float32', 0, 0, 7);
  t.same(
    matchInputs([parseInputSpec('[1]'), parseInputSpec('[2]')], [a, b]).map((x) => x.name),
    ['a', 'b'],
    'in order',
  );
  t.same(
    matchInputs([parseInputSpec('[1]'), parseInputSpec('a=[2]')], [a, b]).map((x) => x.name),
    ['b', 'a'],
    'named first, the rest in order',
  );
  t.same(
    matchInputs([parseInputSpec('#7=[1]'), parseInputSpec('4=[2]')], [a, b]).map((x) => x.name),
    ['b', 'a'],
    'by tensor index',
  );
  t.throws(() => matchInputs([parseInputSpec('c=[1]')], [a, b]), {
    message: /no input named or numbered 'c'; its inputs are input 'a' \(#4, \[1\] float32\); input 'b'/,
  });
  t.throws(() => matchInputs([parseInputSpec('[1]')], [a, b]), { message: /no value for input 'b'/ });
  t.throws(() => matchInputs([parseInputSpec('[1]'), parseInputSpec('[1]'), parseInputSpec('[1]')], [a, b]), { message: /only 2 input\(s\)/ });
  t.throws(() => matchInputs([parseInputSpec('a=[1]'), parseInputSpec('#4=[1]')], [a, b]), { message: /given twice/ });
});
