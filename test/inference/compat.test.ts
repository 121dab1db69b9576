/** The one model-compatibility check, used by preflight and the classifier: every problem named. */
import t from 'tap';
import { modelProblems } from '../../src/inference/compat.js';
import { readModelInfo } from '../../src/inference/tflite-model.js';
import { model } from '../helpers/assets.js';

t.test('a model the daemon can run has no problem', async (t) => {
  const info = await readModelInfo(model('mobilenet_v2_1.0_224_quant.tflite'));
  t.same(modelProblems(info, { edgeTpu: false, normalizationConfigured: false }), []);
});

t.test('every problem of a model is named, not only the first', async (t) => {
  const broken = model('model_invoking_error.tflite');
  const problems = modelProblems(await readModelInfo(broken), { edgeTpu: false, normalizationConfigured: false });
  t.equal(problems.length, 3, 'input, output and custom op');
  t.match(problems[0], /^model input '.*' has shape \[1,3\] and dtype uint8: expected an RGB image tensor of shape \[1,H,W,3\]/);
  t.match(problems[1], /^model output '.*' has shape \[\] and dtype float32: expected class scores of shape \[1,N\] or \[N\]/);
  t.equal(
    problems[2],
    `${broken} uses the custom op 'fake-op-double', which this TFLite runtime does not provide (only builtin ops are available): re-convert the model without custom ops`,
  );
});

t.test('the Edge TPU op: allowed with the delegate or a CPU fallback, else the one Edge TPU message', async (t) => {
  const path = model('mobilenet_v1_0.25_128_quant_edgetpu.tflite');
  const info = await readModelInfo(path);
  t.same(modelProblems(info, { edgeTpu: true, normalizationConfigured: false }), []);
  t.same(modelProblems(info, { edgeTpu: false, normalizationConfigured: false }), [
    `${path} is compiled for the Edge TPU and cannot run on the CPU (it holds the custom op edgetpu-custom-op): set inference.delegate to edgetpu, or use the model's CPU version (the .tflite before edgetpu_compiler, usually the same name without _edgetpu)`,
  ]);
});

t.test('a float input needs a normalization: from the metadata or the configuration', async (t) => {
  const bare = model('mobilenet_v1_0.25_224_1_default_1.tflite');
  const info = await readModelInfo(bare);
  t.same(modelProblems(info, { edgeTpu: false, normalizationConfigured: false }), [
    `${bare} has a float32 input and no normalization in its metadata: set preprocess.mean and preprocess.std (e.g. 127.5 and 127.5 for inputs in [-1,1], 0 and 255 for [0,1])`,
  ]);
  t.same(modelProblems(info, { edgeTpu: false, normalizationConfigured: true }), []);
  t.same(modelProblems(await readModelInfo(model('mobilenet_v1_0.25_224_1_metadata_1.tflite')), { edgeTpu: false, normalizationConfigured: false }), []);
});
