/** `predict`: the interpreter's set_tensor / invoke / get_tensor loop from the command line. */

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { image, model } from '../helpers/assets.js';
import { runCli } from '../helpers/cli.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'predict-'));
const DENSE = model('dense_2x_minus_1.tflite');
const INT8 = model('mobilenet_v1_0.25_224_full_int8.tflite');

t.test('the one-neuron model that learned y = 2x − 1 gives about 18.98 for 10', async (t) => {
  // w and b of its FULLY_CONNECTED op, as SOURCES.md gives them.
  const expected = 1.9974765 * 10 - 0.99217343;
  const r = await runCli(['predict', '--model', DENSE, '--input', '[[10.0]]', '--json']);
  t.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { outputs: { name: string; shape: number[]; dtype: string; values: number[][] }[] };
  t.equal(out.outputs.length, 1);
  t.equal(out.outputs[0]!.name, 'Identity');
  t.same(out.outputs[0]!.shape, [1, 1]);
  t.ok(Math.abs(out.outputs[0]!.values[0]![0]! - expected) < 1e-4, `${out.outputs[0]!.values[0]![0]} ≈ ${expected}`);

  const text = await runCli(['predict', '--model', DENSE, '--input', 'dense_input=[[10.0]]']);
  t.equal(text.code, 0, text.stderr);
  t.match(text.stdout, /^output 'Identity' \(#3, \[1,1\] float32\): \[\[18\.98\d*\]\]\ninvoke [\d.]+ ms\n$/);
});

t.test('predict runs on the engine asked for (the reference, default kernels, unless told)', async (t) => {
  const xnnpack = await runCli(['predict', '--engine', 'tflite-xnnpack', '--model', DENSE, '--input', '[[10.0]]', '--json']);
  t.equal(xnnpack.code, 0, xnnpack.stderr);
  const v = (JSON.parse(xnnpack.stdout) as { outputs: { values: number[][] }[] }).outputs[0]!.values[0]![0]!;
  t.ok(Math.abs(v - (1.9974765 * 10 - 0.99217343)) < 1e-4, `tflite-xnnpack: ${v}`);
  // LiteRT.js 2.5.3 cannot load this model (README, "Inference engines"): asking for it must say so, not fall back.
  const litert = await runCli(['predict', '--engine', 'litert-wasm', '--model', DENSE, '--input', '[[10.0]]']);
  t.not(litert.code, 0);
  t.match(litert.stderr, /litert-wasm cannot run .*dense_2x_minus_1\.tflite/);
  const tpu = await runCli(['predict', '--engine', 'edgetpu', '--model', DENSE, '--input', '[[10.0]]']);
  t.equal(tpu.code, 2);
  t.match(tpu.stderr, /predict runs on tflite, tflite-xnnpack or litert-wasm, not edgetpu/);
});

t.test('quantized tensors: real values in, raw and dequantized values out', async (t) => {
  // A mid-grey image, given as real values in [-1, 1] (the int8 input's range: scale 1/127.5, zero point -1).
  const real = 0.5;
  const grey = Array.from({ length: 224 }, () => Array.from({ length: 224 }, () => [real, real, real]));
  writeFileSync(path.join(tmp, 'grey.json'), JSON.stringify([grey]));
  // The same image as stored int8 values, quantized here: q = round(r / scale) + zero point.
  const scale = 0.007843137718737125;
  const q = Math.round(real / scale) - 1;
  writeFileSync(path.join(tmp, 'grey-raw.json'), JSON.stringify([grey.map((row) => row.map(() => [q, q, q]))]));

  const a = await runCli(['predict', '--model', INT8, '--input', `@${path.join(tmp, 'grey.json')}`, '--json']);
  t.equal(a.code, 0, a.stderr);
  const b = await runCli(['predict', '--model', INT8, '--input', `input=@${path.join(tmp, 'grey-raw.json')}`, '--raw', '--json']);
  t.equal(b.code, 0, b.stderr);
  type Out = { outputs: { dtype: string; quantization: [number, number]; values: number[][]; dequantized: number[][] }[] };
  const oa = (JSON.parse(a.stdout) as Out).outputs[0]!;
  const ob = (JSON.parse(b.stdout) as Out).outputs[0]!;
  t.equal(oa.dtype, 'int8');
  t.same(oa.values, ob.values, 'real values quantized by predict = the values quantized here');
  t.equal(oa.values[0]!.length, 1001);
  const [s, zp] = oa.quantization;
  t.same([s, zp], [1 / 256, -128]);
  const wrong = oa.values[0]!.findIndex((v, i) => Math.abs((v - zp) * s - oa.dequantized[0]![i]!) > 1e-7);
  t.equal(wrong, -1, 'each dequantized value is (raw − zero point) × scale');
  t.ok(
    oa.values[0]!.every((v) => Number.isInteger(v) && v >= -128 && v <= 127),
    'raw values are int8',
  );
});

t.test('bad input: wrong shape, dtype or range; not a model; a bad config', async (t) => {
  const shape = await runCli(['predict', '--model', DENSE, '--input', '[10]']);
  t.equal(shape.code, 2);
  t.match(shape.stderr, /input 'dense_input' \(#0, \[1,1\] float32\): expected nested arrays of shape \[1,1\], e\.g\. \[\[0\.5\]\]/);
  const notModel = await runCli(['predict', '--model', image('cat.png'), '--input', '[[1]]']);
  t.equal(notModel.code, 1);
  t.match(notModel.stderr, /cat\.png is not a TFLite model: expected the identifier TFL3 at byte 4/);
  const badConfig = await runCli(['predict', '--model', DENSE, '--threads', '0', '--input', '[[1]]']);
  t.equal(badConfig.code, 78, badConfig.stderr);
});
