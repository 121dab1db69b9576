/**
 * `compare` on the four variants of MobileNet V1 0.25 224, checked against
 * per-image `classify` results of each, and its HTML report in headless
 * Chromium: it renders, has the right number of chart marks, fetches nothing.
 */

import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import t from 'tap';
import { assetsDir, labels, model } from '../helpers/assets.js';
import { openPage } from '../helpers/chromium.js';
import { runCli } from '../helpers/cli.js';
import { type Classified, classifyAll, confusion, imagenetLabels, labelledImages, smallEvalFolder } from '../helpers/eval-truth.js';

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
const report = path.join(tmp, 'report.html');
const SMALL = smallEvalFolder(EVAL, tmp);
let compared: CompareJson | undefined;

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
  const r = await runCli(['compare', ...common, '--data', EVAL, '--json', '--report', report, ...paths]);
  t.equal(r.code, 0, r.stderr);
  const c = JSON.parse(r.stdout) as CompareJson;
  compared = c;
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

t.test('the HTML report in headless Chromium', async (t) => {
  const html = readFileSync(report, 'utf8');
  t.notMatch(html, /<script|<link|@import|url\(|src=/i, 'no script, stylesheet, font or image to load');
  const url = pathToFileURL(report).href;
  const b = await openPage(t, url);
  const c = (sel: string) => b.page.locator(sel).count();
  t.equal(await c('circle.bubble'), 4, 'one bubble per model');
  t.equal(await c('circle.bubble.reference'), 1);
  t.equal(await c('rect.cell'), 4 * 9 * 10, 'confusion heat maps: 9 classes × (9 + other) per model');
  t.equal(await c('rect.bar'), 4 * 9, 'recall bars: one per class and model');
  const json = compared!;
  const nonZero = json.models.reduce((a, m) => a + m.metrics.confusion.matrix.flat().filter((v) => v > 0).length, 0);
  t.equal(await c('text.count'), nonZero, 'a count in each non-zero cell');
  const counts = (await b.page.locator('text.count').allTextContents()).map(Number);
  t.equal(
    counts.reduce((a, v) => a + v, 0),
    4 * 27,
    'the counts add up to the images, per model',
  );

  // Bubble area proportional to file size.
  const radii = await b.page
    .locator('circle.bubble')
    .evaluateAll((els) => els.map((e) => [e.getAttribute('data-model'), Number(e.getAttribute('r'))] as const));
  const r = new Map(radii);
  for (const [file] of MODELS.slice(1)) {
    const name = file.replace(/\.tflite$/, '');
    const want = statSync(model(file)).size / statSync(paths[0]!).size;
    const got = (r.get(name)! / r.get('mobilenet_v1_0.25_224_1_default_1')!) ** 2;
    t.ok(Math.abs(got - want) < 0.02, `${name}: area ratio ${got.toFixed(3)} ≈ size ratio ${want.toFixed(3)}`);
  }
  // biome-ignore lint/performance/useDomNodeTextContent: the text as laid out, table cells and list items apart
  const text = await b.page.locator('body').innerText();
  t.match(text, /mobilenet_v1_0\.25_224_1_default_1: Out of 27 predictions I got 21 correct/);
  t.match(text, /machine\s+\S/);
  t.match(text, /engine\s+\S/);
  t.match(text, /threads\s+1/);

  const png = await b.page.screenshot({ fullPage: true });
  writeFileSync(path.join(tmp, 'report.png'), png);
  const meta = await sharp(png).metadata();
  t.ok(meta.height! > 1500, `the whole report is drawn (${meta.width}×${meta.height})`);
  const stats = await sharp(png).stats();
  t.ok(stats.channels[0]!.stdev > 20, 'not a blank page');
  t.same(b.requests, [url], 'nothing fetched but the file itself');
  t.same(
    b.console.filter((m) => /Refused|Content Security Policy/i.test(m)),
    [],
    'nothing refused by the page policy either',
  );
});

t.test('compare: Markdown, text, no --data, and refusals', async (t) => {
  const md = await runCli(['compare', ...common, '--data', SMALL, '--format', 'md', paths[0]!, paths[3]!]);
  t.equal(md.code, 0, md.stderr);
  t.match(md.stdout, /^\| model \| size \| ratio \| kind \| I\/O \| top-1 \| top-5 \| agree \| mean \\\|Δ score\\\| \| p50 ms \| p95 ms \| speed-up \|$/m);
  t.match(md.stdout, /^\| mobilenet_v1_0\.25_224_full_int8 \| 584 kB \| 0\.31× \| full-integer \| int8 → int8 \| [\d.]+ % \|/m);

  const quick = await runCli(['compare', ...common, '--json', paths[0]!, paths[1]!]);
  t.equal(quick.code, 0, quick.stderr);
  const q = JSON.parse(quick.stdout) as CompareJson & { data: null };
  t.equal(q.data, null);
  t.equal(q.models[1]!.top1_agreement, null, 'no agreement without images');
  t.ok(
    q.models.every((m) => m.latency.p50_ms > 0),
    'latency measured on a synthetic image',
  );

  const other = await runCli(['compare', ...common, '--data', SMALL, paths[0]!, model('automl_labeler_model.tflite')]);
  t.equal(other.code, 1);
  t.match(
    other.stderr,
    /automl_labeler_model\.tflite scores 5 classes but the reference .*default_1\.tflite scores 1001: compare only variants of one classifier/,
  );
  const one = await runCli(['compare', paths[0]!]);
  t.equal(one.code, 2);
  t.match(one.stderr, /compare needs at least two models/);
  const noModel = await runCli(['compare', ...common, paths[0]!, path.join(tmp, 'missing.tflite')]);
  t.equal(noModel.code, 1);
  t.match(noModel.stderr, /cannot read the model file .*missing\.tflite: no such file/);
});
