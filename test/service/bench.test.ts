/**
 * `edge-classifier bench`: what a user reads on the device — the engine ×
 * threads table with the choice, the inference median, preprocessing per
 * frame size, the pipeline rates and memory — checked for consistency, not
 * for speed (no timed assertion: the machine is shared).
 */
import t from 'tap';
import { ENGINE_NAMES } from '../../src/inference/engine-api.js';
import { benchModel, formatBench } from '../../src/service/bench.js';
import { model } from '../helpers/assets.js';
import { runCli } from '../helpers/cli.js';

t.test('benchModel on a small quantized model', async (t) => {
  const b = await benchModel(model('mobilenet_v1_0.25_128_quant.tflite'), {
    classifier: { delegate: 'cpu', resize: 'stretch', topK: 3, threshold: 0 },
    budgetMs: 1500,
    runs: 5,
    pipelineSeconds: 1,
  });
  t.equal(b.model, 'mobilenet_v1_0.25_128_quant.tflite');
  t.ok((ENGINE_NAMES as readonly string[]).includes(b.engine), `engine ${b.engine} is one of ${ENGINE_NAMES.join(', ')}`);
  const chosen = b.engines.filter((r) => r.status === 'chosen');
  t.same(
    chosen.map((r) => [r.engine, r.threads]),
    [[b.engine, b.threads]],
    'exactly one row is marked chosen, and it is the engine that ran',
  );
  t.ok(
    b.engines.some((r) => r.engine === 'tflite' && r.threads === 1 && r.p50_ms !== undefined),
    'the reference engine (tflite, 1 thread) was measured',
  );
  t.match(b.runtime, /^(TFLite|LiteRT\.js) \d+\.\d+/, 'names the runtime and its version');
  t.same(Object.keys(b.preprocess_p50_ms).sort(), ['1280x720', '1920x1080', '640x480'], 'preprocessing per frame size');
  for (const [size, ms] of Object.entries(b.preprocess_p50_ms)) t.ok(ms > 0, `${size} preprocessing took time`);
  t.ok(b.inference_p50_ms > 0, 'inference median');
  t.ok(b.pipeline_fps > 0 && b.pipeline_jpeg_fps > 0, 'frames were classified in both pipeline runs');
  t.ok(b.rss_mib > 20 && b.rss_mib < 4096, `RSS ${b.rss_mib.toFixed(0)} MiB is a process size`);
  const text = formatBench(b);
  t.match(text, new RegExp(`^mobilenet_v1_0\\.25_128_quant\\.tflite: ${b.engine}, ${b.threads} thread`), 'first line: model and choice');
  t.match(text, /pipeline, raw frames at the input size/);
});

t.test('bench on the command line: a missing model is named, exit 1, one JSON line', async (t) => {
  const r = await runCli(['bench', '--model', '/nonexistent/model.tflite', '--json']);
  t.equal(r.code, 1);
  const line = JSON.parse(r.stdout.trim()) as { model: string; error: string };
  t.equal(line.model, '/nonexistent/model.tflite');
  t.match(line.error, /\/nonexistent\/model\.tflite/, 'the error names the file');
});
