import { monitorEventLoopDelay } from 'node:perf_hooks';
import t from 'tap';
import { describeLoadError, type HostOptions, InterpreterHost } from '../../src/inference/host.js';

/** A started host; stopped again when its start fails. */
async function started(options: Partial<HostOptions>): Promise<InterpreterHost> {
  const host = new InterpreterHost({ threads: 2, ...options });
  try {
    await host.start();
  } catch (err) {
    await host.stop();
    throw err;
  }
  return host;
}

import sharp from 'sharp';
import { image, model } from '../helpers/assets.js';

t.test('runs MobileNet V1 0.25 128 quant in a worker', async (t) => {
  const runner = await started({ modelPath: model('mobilenet_v1_0.25_128_quant.tflite'), threads: 2 });
  t.teardown(() => runner.stop());
  t.same(runner.inputs, [{ id: 0, name: 'input', shape: [1, 128, 128, 3], dtype: 'uint8' }]);
  t.same(runner.outputs, [{ id: 0, name: 'MobilenetV1/Predictions/Reshape_1', shape: [1, 1001], dtype: 'uint8' }]);
  const input = new Uint8Array(128 * 128 * 3).fill(128);
  const result = await runner.infer(input);
  t.equal(input.buffer.byteLength, 0, 'the input buffer was transferred, not copied');
  t.ok(result.input instanceof Uint8Array && result.input.length === 49152, 'and handed back for reuse');
  t.ok(result.output instanceof Uint8Array);
  t.equal(result.output.length, 1001);
  const sum = Array.from(result.output).reduce((a, b) => a + b, 0) / 256; // softmax, scale 1/256
  t.ok(sum > 0 && sum <= 1.01, `dequantized scores are a (rounded) distribution (sum ${sum})`);
  t.ok(result.inference_ms > 0 && result.inference_ms < 5000, `inference_ms ${result.inference_ms}`);
  const again = await runner.infer(result.input);
  t.same(Array.from(again.output), Array.from(result.output), 'same input, same output');
  const cat = await sharp(image('cat.png')).removeAlpha().resize(128, 128, { fit: 'fill' }).raw().toBuffer();
  const scores = (await runner.infer(new Uint8Array(cat))).output;
  const top = scores.indexOf(Math.max(...scores));
  t.equal(top, 283, 'the cat picture: class 283, "tiger cat" (this small model; Egyptian cat is second)');
});

t.test('one inference at a time; wrong inputs are refused with the tensor named', async (t) => {
  const runner = await started({ modelPath: model('mobilenet_v1_0.25_128_quant.tflite') });
  t.teardown(() => runner.stop());
  const first = runner.infer(new Uint8Array(49152));
  await t.rejects(runner.infer(new Uint8Array(49152)), {
    message: /^inference on .*mobilenet_v1_0\.25_128_quant\.tflite requested while another is running: run one frame at a time/,
  });
  await first;
  t.ok((await runner.infer(new Uint8Array(49152))).output.length === 1001, 'free again once the first is done');
  await t.rejects(runner.infer(new Float32Array(49152)), {
    message: /^input for tensor 'input' of .* is a Float32Array of 49152 elements: expected a Uint8Array of 49152 \(\[1,128,128,3\] uint8\)$/,
  });
  await t.rejects(runner.infer(new Uint8Array(10)), { message: /is a Uint8Array of 10 elements: expected a Uint8Array of 49152/ });
});

t.test('a worker that dies rejects the pending inference and every later one', async (t) => {
  const runner = await started({ modelPath: model('mobilenet_v1_0.25_128_quant.tflite') });
  t.teardown(() => runner.stop());
  const pending = runner.infer(new Uint8Array(49152));
  // Stand in for a crash of the worker thread: end it from outside.
  await (runner as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
  await t.rejects(pending, { message: /^the TFLite worker for .* exited unexpectedly \(code 1\)$/ });
  await t.rejects(runner.infer(new Uint8Array(49152)), { message: /is not running: the TFLite worker .* exited unexpectedly/ });
});

t.test('stop is idempotent and rejects later calls', async (t) => {
  const runner = await started({ modelPath: model('mobilenet_v1_0.25_128_quant.tflite') });
  await runner.stop();
  await runner.stop();
  await t.rejects(runner.infer(new Uint8Array(49152)), { message: /is not started or stopped$/ });
});

t.test('load errors become sentences about the model', async (t) => {
  await t.rejects(started({ modelBytes: Buffer.from('definitely not a flatbuffer model'), modelPath: 'junk.tflite' }), {
    message: 'junk.tflite is not a valid TFLite model (TFLite could not read its flatbuffer)',
  });
  const edgetpu = model('mobilenet_v1_0.25_128_quant_edgetpu.tflite');
  await t.rejects(started({ modelPath: edgetpu }), {
    message: `${edgetpu} is compiled for the Edge TPU and cannot run on the CPU (it holds the custom op edgetpu-custom-op): set inference.delegate to edgetpu, or use the model's CPU version (the .tflite before edgetpu_compiler, usually the same name without _edgetpu)`,
  });
  const broken = model('model_invoking_error.tflite');
  await t.rejects(started({ modelPath: broken }), {
    message: `${broken} uses the custom op 'fake-op-double', which this TFLite runtime does not provide (only builtin ops are available): re-convert the model without custom ops`,
  });
  await t.rejects(started({ modelPath: '/nonexistent/model.tflite' }), { message: /^cannot read the model file \/nonexistent\/model\.tflite: no such file$/ });
  const never = new InterpreterHost({ modelPath: edgetpu, threads: 1 });
  await never.stop();
  await never.stop();
  t.pass('stop() before start() does nothing, twice');
  t.equal(
    describeLoadError('Failed to invoke interpreter: boom\nmore', 'm.tflite'),
    'm.tflite could not be loaded by TFLite: Failed to invoke interpreter: boom',
  );
});

t.test('the main thread stays responsive while the worker infers', async (t) => {
  const runner = await started({ modelPath: model('mobilenet_v2_1.0_224_quant.tflite'), threads: 1 });
  t.teardown(() => runner.stop());
  const histogram = monitorEventLoopDelay({ resolution: 5 });
  histogram.enable();
  let input: Uint8Array = new Uint8Array(224 * 224 * 3).fill(100);
  for (let i = 0; i < 20; i++) input = (await runner.infer(input)).input as Uint8Array;
  histogram.disable();
  const p99 = histogram.percentile(99) / 1e6;
  t.ok(p99 < 100, `event-loop delay p99 ${p99.toFixed(1)} ms over 20 inferences`);
});
