import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { parseModel, readModelInfo } from '../../src/inference/tflite-model.js';
import { model } from '../helpers/assets.js';

// Expected values were read independently of this code: tensor facts with
// `flatc --json --raw-binary schema.fbs -- <model>` (the FlatBuffers compiler
// computing vtable slots itself), metadata the same way with
// metadata_schema.fbs, associated files with `unzip -l`, and names, shapes and
// dtypes again from the TFLite runtime (see classifier.test.ts). The MobileNet
// quant values match the published ones (input scale 1/128, zero point 128;
// softmax output scale 1/256, zero point 0).
const dir = mkdtempSync(path.join(tmpdir(), 'tflite-model-'));

t.test('mobilenet_v2_1.0_224_quant: tensors, quantization, metadata', async (t) => {
  const info = await readModelInfo(model('mobilenet_v2_1.0_224_quant.tflite'));
  t.equal(info.version, 3);
  t.equal(info.description, 'MLIR Converted.');
  t.equal(info.size_bytes, 3610798);
  t.equal(info.min_runtime_version, '1.5.0');
  t.same(info.inputs, [
    {
      name: 'input',
      index: 0,
      shape: [1, 224, 224, 3],
      shape_signature: [1, 224, 224, 3],
      dtype: 'uint8',
      quantization: [0.0078125, 128],
      quantization_parameters: { scales: [0.0078125], zero_points: [128], quantized_dimension: 0 },
      sparsity_parameters: {},
    },
  ]);
  t.same(info.outputs, [
    {
      name: 'MobilenetV2/Predictions/Softmax',
      index: 173,
      shape: [1, 1001],
      shape_signature: [1, 1001],
      dtype: 'uint8',
      quantization: [0.00390625, 0],
      quantization_parameters: { scales: [0.00390625], zero_points: [0], quantized_dimension: 0 },
      sparsity_parameters: {},
    },
  ]);
  t.same(info.custom_ops, []);
  t.equal(info.requires_edgetpu, false);
  t.same(info.problems, []);
  const m = info.metadata!;
  t.equal(m.name, 'ImageClassifier');
  t.equal(m.description, 'Identify the most prominent object in the image from a known set of categories.');
  t.same(m.normalization, { mean: [127.5], std: [127.5] });
  t.equal(m.labels_file, 'imagenet_labels.txt');
  t.same(m.associated_files, ['imagenet_labels.txt']);
  t.equal(m.labels!.length, 1001);
  t.same(m.labels!.slice(0, 2), ['background', 'tench, Tinca tinca']);
  t.equal(m.labels![286], 'Egyptian cat');
});

t.test('tf2 post-training quantized model: zero point 127, scale 1/127.5', async (t) => {
  const info = await readModelInfo(model('tf2_mobilenet_v2_1.0_224_ptq.tflite'));
  t.same(info.inputs[0]!.quantization, [Math.fround(1 / 127.5), 127]);
  t.equal(info.outputs[0]!.name, 'Identity');
  t.equal(info.outputs[0]!.index, 176);
  t.equal(info.min_runtime_version, '1.14.0');
});

t.test('float model with metadata: normalization 127.5/127.5, labels.txt, author and license', async (t) => {
  const info = await readModelInfo(model('mobilenet_v1_0.25_224_1_metadata_1.tflite'));
  t.same(
    info.inputs.map((i) => [i.name, i.index, i.dtype, i.quantization]),
    [['input', 87, 'float32', [0, 0]]],
  );
  t.same(info.inputs[0]!.quantization_parameters, { scales: [], zero_points: [], quantized_dimension: 0 });
  t.same(
    info.outputs.map((o) => [o.name, o.index, o.shape]),
    [['MobilenetV1/Predictions/Reshape_1', 86, [1, 1001]]],
  );
  const m = info.metadata!;
  t.equal(m.name, 'MobileNetV1 image classifier');
  t.equal(m.version, 'v1');
  t.equal(m.author, 'TensorFlow');
  t.equal(m.license, 'Apache License. Version 2.0 http://www.apache.org/licenses/LICENSE-2.0.');
  t.same(m.normalization, { mean: [127.5], std: [127.5] });
  t.equal(m.labels_file, 'labels.txt');
  t.equal(m.labels!.length, 1001);
  t.equal(m.labels![286], 'Egyptian cat');
});

t.test('the same float model without metadata has metadata null', async (t) => {
  const info = await readModelInfo(model('mobilenet_v1_0.25_224_1_default_1.tflite'));
  t.equal(info.metadata, null);
  t.same(info.problems, []);
  t.equal(info.inputs[0]!.dtype, 'float32');
});

t.test('AutoML flowers model: 5 labels from the embedded labels.txt', async (t) => {
  const info = await readModelInfo(model('automl_labeler_model.tflite'));
  t.same(info.metadata!.labels, ['daisy', 'dandelion', 'roses', 'sunflowers', 'tulips']);
  t.same(info.metadata!.normalization, { mean: [0], std: [1] });
  t.same(
    info.inputs.map((i) => [i.name, i.index, i.shape, i.dtype, i.quantization]),
    [['image', 172, [1, 224, 224, 3], 'uint8', [Math.fround(1 / 127), 128]]],
  );
  t.same(
    info.outputs.map((o) => [o.name, o.index, o.shape, o.quantization]),
    [['scores', 173, [1, 5], [0.00390625, 0]]],
  );
});

t.test('Edge TPU model: custom op edgetpu-custom-op, requires_edgetpu', async (t) => {
  const info = await readModelInfo(model('mobilenet_v1_0.25_128_quant_edgetpu.tflite'));
  t.same(info.custom_ops, ['edgetpu-custom-op']);
  t.equal(info.requires_edgetpu, true);
  t.equal(info.description, 'Exported from Subgraph.');
  t.same(info.inputs[0]!.shape, [1, 128, 128, 3]);
  t.equal(info.metadata!.labels!.length, 1001);
});

t.test('broken model: its only op is the custom op fake-op-double', async (t) => {
  const info = await readModelInfo(model('model_invoking_error.tflite'));
  t.same(info.custom_ops, ['fake-op-double']);
  t.equal(info.requires_edgetpu, false);
  t.same(
    info.inputs.map((i) => [i.name, i.shape, i.dtype]),
    [['', [1, 3], 'uint8']],
  );
  t.same(
    info.outputs.map((o) => [o.shape, o.dtype]),
    [[[], 'float32']],
  );
  t.equal(info.description, 'programmatic model');
});

t.test('a file that is not a TFLite model gets a sentence', async (t) => {
  const p = path.join(dir, 'notes.tflite');
  writeFileSync(p, 'hello world, this is text');
  await t.rejects(readModelInfo(p), {
    name: 'FlatbufferFormatError',
    message: `${p} is not a TFLite model: expected the identifier TFL3 at byte 4, found "o wo"`,
  });
  await t.rejects(parseModel(new Uint8Array(3), 'tiny.tflite'), {
    message: 'tiny.tflite is not a TFLite model: expected the identifier TFL3 at byte 4, found "(none: the data is only 3 bytes long)"',
  });
  await t.rejects(readModelInfo(path.join(dir, 'absent.tflite')), { message: /^cannot read the model file .*absent\.tflite: no such file$/ });
});

t.test('a truncated model is reported as corrupt, not read as garbage', async (t) => {
  const bytes = readFileSync(model('mobilenet_v2_1.0_224_quant.tflite')).subarray(0, 2000);
  await t.rejects(parseModel(bytes, 'cut.tflite'), {
    name: 'FlatbufferFormatError',
    message: /^cut\.tflite is a corrupt TFLite model: .* lies outside the 2000-byte buffer$/,
  });
});

t.test('a malformed metadata buffer is a warning, not a failure', async (t) => {
  const bytes = Buffer.from(readFileSync(model('mobilenet_v2_1.0_224_quant.tflite')));
  const at = bytes.indexOf('M001');
  t.ok(at > 0, 'the metadata identifier is in the file');
  bytes.write('XXXX', at, 'latin1');
  const info = await parseModel(bytes, 'bad-meta.tflite');
  t.equal(info.metadata, null);
  t.same(info.problems, [
    {
      level: 'warning',
      message:
        'the TFLITE_METADATA buffer of bad-meta.tflite is not a TFLite ModelMetadata flatbuffer: expected the identifier M001 at byte 4, found "XXXX"; the metadata (labels, normalization) is ignored',
    },
  ]);
  t.same(info.inputs[0]!.shape, [1, 224, 224, 3], 'the model itself is still read');
});

t.test('metadata naming a labels file without the appended zip: labels missing, warning', async (t) => {
  const bytes = readFileSync(model('automl_labeler_model.tflite'));
  const cut = bytes.subarray(0, bytes.length - 22); // drop the zip's end-of-central-directory record
  const info = await parseModel(cut, 'nozip.tflite');
  t.equal(info.metadata!.labels, undefined);
  t.same(info.metadata!.associated_files, []);
  t.same(
    info.problems.map((p) => p.message),
    ['nozip.tflite: the metadata names the labels file labels.txt, but no zip archive of metadata files is appended to the model'],
  );
});

t.test('sparsity_parameters of a sparse tensor, as TensorFlow names them', async (t) => {
  const { sparseInputModel } = await import('../helpers/tflite-builder.js');
  const { parseModel } = await import('../../src/inference/tflite-model.js');
  const info = await parseModel(sparseInputModel(), 'sparse.tflite');
  t.same(info.inputs[0]!.sparsity_parameters, {
    traversal_order: [0, 1],
    block_map: [],
    dim_metadata: [
      { format: 0, dense_size: 4 },
      { format: 1, array_segments: [0, 1, 1, 3, 4], array_indices: [1, 0, 3, 2] },
    ],
  });
  t.same(info.outputs[0]!.sparsity_parameters, {});
});
