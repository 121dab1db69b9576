/**
 * The HTML report of `compare` in headless Chromium: it renders, has the
 * right number of chart marks, fetches nothing; the Markdown rendering;
 * compare without a folder; models it refuses.
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
import { smallEvalFolder } from '../helpers/eval-truth.js';

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

t.test('the HTML report in headless Chromium', async (t) => {
  // One image of each of three classes: the marks depend on the number of models and classes, not on the images.
  const run = await runCli(['compare', ...common, '--data', SMALL, '--json', '--report', report, ...paths]);
  t.equal(run.code, 0, run.stderr);
  const json = JSON.parse(run.stdout) as CompareJson;
  const html = readFileSync(report, 'utf8');
  t.notMatch(html, /<script|<link|@import|url\(|src=/i, 'no script, stylesheet, font or image to load');
  const url = pathToFileURL(report).href;
  const b = await openPage(t, url);
  const c = (sel: string) => b.page.locator(sel).count();
  t.equal(await c('circle.bubble'), 4, 'one bubble per model');
  t.equal(await c('circle.bubble.reference'), 1);
  t.equal(await c('rect.cell'), 4 * 3 * 4, 'confusion heat maps: 3 classes × (3 + other) per model');
  t.equal(await c('rect.bar'), 4 * 3, 'recall bars: one per class and model');
  const nonZero = json.models.reduce((a, m) => a + m.metrics.confusion.matrix.flat().filter((v) => v > 0).length, 0);
  t.equal(await c('text.count'), nonZero, 'a count in each non-zero cell');
  const counts = (await b.page.locator('text.count').allTextContents()).map(Number);
  t.equal(
    counts.reduce((a, v) => a + v, 0),
    4 * 3,
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
  const refCorrect = json.models[0]!.metrics.top1_correct;
  t.match(text, new RegExp(`mobilenet_v1_0\\.25_224_1_default_1: Out of 3 predictions I got ${refCorrect} correct`));
  t.match(text, /machine\s+\S/);
  t.match(text, /engine\s+\S/);
  t.match(text, /threads\s+1/);

  const png = await b.page.screenshot({ fullPage: true });
  writeFileSync(path.join(tmp, 'report.png'), png);
  const meta = await sharp(png).metadata();
  t.ok(meta.height! > 1000, `the whole report is drawn (${meta.width}×${meta.height})`);
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
  t.match(
    md.stdout,
    /^\| model \| size \| ratio \| kind \| I\/O \| top-1 \| top-5 \| agree \| mean \\\|Δ score\\\| \| p50 ms \| p95 ms \| speed-up \| engine \|$/m,
  );
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
