/**
 * `compare` on the four variants of MobileNet V1 0.25 224 and the 27
 * labelled photos, checked against per-image `classify` results of each.
 */
import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { assetsDir, labels, model } from '../helpers/assets.js';
import { runCli } from '../helpers/cli.js';
import { type Classified, classifyAll, confusion, imagenetLabels, labelledImages } from '../helpers/eval-truth.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'compare-'));
const EVAL = path.join(assetsDir, 'eval');
const LABELS = labels('imagenet_labels.txt');
const MODELS = [
  ['mobilenet_v1_0.25_224_1_default_1.tflite', 'float32', 'float32', 'float32'],
  ['mobilenet_v1_0.25_224_float16.tflite', 'float16', 'float32', 'float32'],
  ['mobilenet_v1_0.25_224_dynamic_range.tflite', 'dynamic-range', 'float32', 'float32'],
  ['mobilenet_v1_0.25_224_full_int8.tflite', 'full-integer', 'int8', 'int8'],
] as const;
const paths = MODELS.map(([f]) => model(f));
const config = path.join(tmp, 'config.yaml');
writeFileSync(config, 'preprocess:\n  mean: 127.5\n  std: 127.5\ninference:\n  threads: 1\n');
const common = ['--config', config, '--labels', LABELS];

interface CompareJson {
  command: string;
  images: number;
  models: {
    name: string;
    size_bytes: number;
    size_ratio: number;
    quantization: { kind: string; input_dtypes: string[]; output_dtypes: string[] };
    metrics: { top1_correct: number; top1_accuracy: number; confusion: { classes: number[]; matrix: number[][] } };
    top1_agreement: number;
    mean_abs_delta_score: number;
    latency: { p50_ms: number };
    speedup: number;
  }[];
}

t.test('compare --data: the trade-off table, against classify per model', async (t) => {
  const images = labelledImages(EVAL, imagenetLabels(LABELS));
  const r = await runCli(['compare', ...common, '--data', EVAL, '--json', ...paths]);
  t.equal(r.code, 0, r.stderr);
  const c = JSON.parse(r.stdout) as CompareJson;
  t.equal(c.models.length, 4);
  // Independent figures for the reference and the two variants that disagree with it on some images.
  const perModel: (Classified[] | null)[] = [];
  for (const [i, p] of paths.entries()) perModel.push(i === 1 ? null : await classifyAll(images, ['--model', p, ...common]));
  const ref = perModel[0]!;
  const refSize = statSync(paths[0]!).size;
  const classes = [...new Set(images.map((i) => i.truth))];
  c.models.forEach((m, i) => {
    const [file, kind, inDtype, outDtype] = MODELS[i]!;
    t.equal(m.size_bytes, statSync(paths[i]!).size, `${file}: size`);
    t.equal(m.size_ratio, statSync(paths[i]!).size / refSize, 'size ratio');
    t.equal(m.quantization.kind, kind);
    t.same(m.quantization.input_dtypes, [inDtype]);
    t.same(m.quantization.output_dtypes, [outDtype]);
    const mine = perModel[i];
    if (!mine) return;
    t.equal(m.metrics.top1_correct, mine.filter((x) => x.ranked[0] === x.truth).length, 'top-1 correct');
    t.same(m.metrics.confusion.matrix, confusion(mine, classes), 'confusion matrix');
    const agree = mine.filter((x, n) => x.ranked[0] === ref[n]!.ranked[0]).length / images.length;
    t.equal(m.top1_agreement, agree, 'top-1 agreement with the reference');
    const delta =
      mine.reduce((a, x, n) => {
        const top = ref[n]!.ranked[0]!;
        return a + Math.abs((x.scores.get(top) ?? 0) - ref[n]!.scores.get(top)!);
      }, 0) / images.length;
    t.ok(Math.abs(m.mean_abs_delta_score - delta) < 2e-4, `mean |Δ score| ${m.mean_abs_delta_score} ≈ ${delta} (classify rounds to 4 decimals)`);
    t.equal(m.speedup, c.models[0]!.latency.p50_ms / m.latency.p50_ms, 'speed-up = reference p50 / p50');
  });
  t.equal(c.models[0]!.metrics.top1_correct, 21, 'SOURCES.md: float 21/27');
  t.ok(c.models[1]!.top1_agreement === 1, 'float16 agrees with float32 on every image');
});
