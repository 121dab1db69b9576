import t from 'tap';
import { analyzeModel, formatBytes } from '../../src/inference/model-analysis.js';
import { readModelFile } from '../../src/inference/tflite-model.js';
import { model } from '../helpers/assets.js';

// Expected kinds and counts come from how the assets were made (SOURCES.md):
// the float16 variant has 56 FLOAT16 constant tensors, the dynamic-range one
// int8 weights on its 12 CONV_2D + 7 DEPTHWISE_CONV_2D ops, the full-integer
// one int8 I/O; MobileNet V1 0.25 224 has 0.47 M parameters (Howard et al.
// 2017, table 6) and V2 1.0 224 3.4 M (Sandler et al. 2018, table 4), batch
// norm folded into the convolutions by the converter.
const analyze = async (name: string) => {
  const { bytes, info } = await readModelFile(model(name));
  return analyzeModel(bytes, info);
};

t.test('the four variants of MobileNet V1 0.25 224', async (t) => {
  const f32 = await analyze('mobilenet_v1_0.25_224_1_default_1.tflite');
  t.equal(f32.kind, 'float32');
  t.same(f32.weight_tensors, { float32: 56 });
  t.ok(Math.abs(f32.parameters! - 470_000) < 5_000, `about 0.47 M parameters, got ${f32.parameters}`);
  t.equal(f32.weight_bytes.float32, f32.parameters! * 4, 'float32 weights: 4 bytes per parameter');

  const f16 = await analyze('mobilenet_v1_0.25_224_float16.tflite');
  t.equal(f16.kind, 'float16');
  t.equal(f16.weight_tensors.float16, 56);
  t.equal(f16.parameters, f32.parameters, 'same parameters');
  t.equal(f16.weight_bytes.float16, f32.parameters! * 2, 'float16 weights: 2 bytes per parameter');
  t.same(f16.activation_dtypes, ['float32']);

  const dr = await analyze('mobilenet_v1_0.25_224_dynamic_range.tflite');
  t.equal(dr.kind, 'dynamic-range');
  t.equal(dr.weight_tensors.int8, 12 + 7);
  t.ok(dr.per_channel);
  t.same(dr.input_dtypes, ['float32']);
  t.same(dr.output_dtypes, ['float32']);
  t.same(dr.activation_dtypes, ['float32']);
  t.equal(dr.parameters, f32.parameters);

  const int8 = await analyze('mobilenet_v1_0.25_224_full_int8.tflite');
  t.equal(int8.kind, 'full-integer');
  t.same(int8.input_dtypes, ['int8']);
  t.same(int8.output_dtypes, ['int8']);
  t.same(int8.activation_dtypes, ['int8']);
  t.match(int8.summary, /^full-integer: int8 activations, int8 input, int8 output$/);
  t.equal(int8.parameters, f32.parameters);
});

t.test('TF1 quantization-aware uint8, TF2 post-training uint8 I/O, Edge TPU, the one-neuron model', async (t) => {
  const qat = await analyze('mobilenet_v2_1.0_224_quant.tflite');
  t.equal(qat.kind, 'uint8-qat');
  t.equal(qat.label, 'uint8 (TF1 quantization-aware)');
  t.ok(Math.abs(qat.parameters! - 3_470_000) < 60_000, `about 3.47 M parameters, got ${qat.parameters}`);

  const ptq = await analyze('tf2_mobilenet_v2_1.0_224_ptq.tflite');
  t.equal(ptq.kind, 'full-integer');
  t.same(ptq.input_dtypes, ['uint8'], 'uint8 input, quantized to int8 inside');
  t.same(ptq.activation_dtypes, ['int8']);
  t.equal(ptq.parameters, qat.parameters, 'same architecture, same parameter count');

  const tpu = await analyze('mobilenet_v1_0.25_128_quant_edgetpu.tflite');
  t.equal(tpu.kind, 'edgetpu');
  t.equal(tpu.parameters, null, 'weights are inside the compiled op');

  const dense = await analyze('dense_2x_minus_1.tflite');
  t.equal(dense.kind, 'float32');
  t.equal(dense.parameters, 2, 'one weight, one bias');
  t.same(dense.weight_bytes, { float32: 8 });
});

t.test('formatBytes', async (t) => {
  t.equal(formatBytes(640), '640 B');
  t.equal(formatBytes(584208), '584 kB');
  t.equal(formatBytes(1882904), '1.88 MB');
});
