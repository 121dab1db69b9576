/** `predict()` in process: input files and JSON that cannot be used, models it refuses. */

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { predict } from '../../src/inference/predict.js';
import { parseInputSpec } from '../../src/inference/tensor-json.js';
import { model } from '../helpers/assets.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'predict-unit-'));
const DENSE = model('dense_2x_minus_1.tflite');
const run = (...inputs: string[]) => predict({ modelPath: DENSE, inputs: inputs.map(parseInputSpec) });

t.test('inputs that cannot be used name the argument and what is wrong', async (t) => {
  await t.rejects(run('[[10,]]'), {
    name: 'TensorValueError',
    message: /--input '\[\[10,\]\]': not JSON \(.*\): expected nested arrays such as \[\[10\.0\]\]/,
  });
  await t.rejects(run(`@${path.join(tmp, 'missing.json')}`), {
    message: /--input '@.*missing\.json' \(file .*missing\.json\): cannot read the file: no such file/,
  });
  writeFileSync(path.join(tmp, 'text.json'), '[["ten"]]');
  await t.rejects(run(`dense_input=@${path.join(tmp, 'text.json')}`), { message: /\[0\]\[0\] must be a finite number, got "ten"/ });
  await t.rejects(run('x=[[1]]'), { message: /no input named or numbered 'x'; its inputs are input 'dense_input' \(#0, \[1,1\] float32\)/ });
  await t.rejects(run('[[1]]', '[[2]]'), { message: /the model has only 1 input\(s\), all given/ });
});

t.test('models predict refuses', async (t) => {
  await t.rejects(predict({ modelPath: model('mobilenet_v1_0.25_128_quant_edgetpu.tflite'), inputs: [parseInputSpec('[1]')] }), {
    message: /compiled for the Edge TPU/,
  });
  await t.rejects(predict({ modelPath: path.join(tmp, 'none.tflite'), inputs: [parseInputSpec('[1]')] }), {
    message: /cannot read the model file .*none\.tflite: no such file/,
  });
});

t.test('in process: 10 → about 18.98 through the interpreter', async (t) => {
  const r = await predict({ modelPath: DENSE, inputs: [parseInputSpec('[[10]]')] });
  t.same(
    r.outputs.map((o) => o.name),
    ['Identity'],
  );
  t.ok(Math.abs((r.outputs[0]!.values as number[][])[0]![0]! - (1.9974765 * 10 - 0.99217343)) < 1e-4);
  t.ok(r.inference_ms >= 0);
});
