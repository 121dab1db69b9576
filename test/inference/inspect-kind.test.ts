/** `inspect` shows the quantization kind, parameter count and weight bytes (text and JSON). */
import t from 'tap';
import { model } from '../helpers/assets.js';
import { runCli } from '../helpers/cli.js';

t.test('inspect --json: quantization_kind for each converter path', async (t) => {
  const cases = [
    // Every kind is checked on every asset model in model-analysis.test.ts; here, that inspect carries it.
    ['mobilenet_v1_0.25_224_float16.tflite', 'float16'],
    ['mobilenet_v2_1.0_224_quant.tflite', 'uint8-qat'],
  ] as const;
  for (const [file, kind] of cases) {
    const r = await runCli(['inspect', '--json', '--model', model(file)]);
    t.equal(r.code, 0, r.stderr);
    const info = JSON.parse(r.stdout) as { inputs: unknown[]; quantization_kind: { kind: string; input_dtypes: string[] } };
    t.equal(info.quantization_kind.kind, kind, file);
    t.equal(info.inputs.length, 1, 'the input details are still there');
  }
});

t.test('inspect text: the kind with its I/O dtypes, parameters and weights by dtype', async (t) => {
  const r = await runCli(['inspect', '--model', model('tf2_mobilenet_v2_1.0_224_ptq.tflite')]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^quantization: full-integer: int8 activations, uint8 input, uint8 output$/m);
  t.match(r.stdout, /^parameters: 3,4\d\d,\d{3} \(weights: int8 3\.4\d MB, int32 [\d.]+ kB\)$/m);
  const tpu = await runCli(['inspect', '--model', model('mobilenet_v1_0.25_128_quant_edgetpu.tflite')]);
  t.match(tpu.stdout, /^quantization: edgetpu: compiled for the Coral Edge TPU/m);
  t.match(tpu.stdout, /^parameters: inside the Edge TPU op$/m);
});
