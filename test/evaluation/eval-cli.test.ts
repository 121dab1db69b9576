/** `eval` on the labelled photos of the assets, checked against per-image `classify` results. */

import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { assetsDir, image, labels, model } from '../helpers/assets.js';
import { CLI, runCli } from '../helpers/cli.js';
import { classifyAll, confusion, imagenetLabels, labelledImages, numpyPercentile, smallEvalFolder } from '../helpers/eval-truth.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'eval-'));
const EVAL = path.join(assetsDir, 'eval');
const LABELS = labels('imagenet_labels.txt');
const FLOAT = model('mobilenet_v1_0.25_224_1_default_1.tflite');
const config = path.join(tmp, 'config.yaml');
// The float model carries no normalization: inputs in [-1, 1], as SOURCES.md says.
writeFileSync(config, 'preprocess:\n  mean: 127.5\n  std: 127.5\ninference:\n  threads: 1\n');
const common = ['--config', config, '--labels', LABELS];
const labelList = imagenetLabels(LABELS);
const SMALL = smallEvalFolder(EVAL, tmp);

interface EvalJson {
  command: string;
  images: number;
  classes: number;
  skipped: { file: string; reason: string }[];
  models: {
    engine: string;
    threads: number;
    quantization: { kind: string };
    latency: { p50_ms: number; p95_ms: number; n: number };
    samples: { file: string; inference_ms: number }[];
    metrics: {
      top1_correct: number;
      top5_correct: number;
      top1_accuracy: number;
      top5_accuracy: number;
      per_class: { index: number; folder: string; precision: number | null; recall: number | null; images: number }[];
      confusion: { classes: number[]; matrix: number[][] };
      misclassified: { file: string; predicted_index: number }[];
    };
  }[];
  measured_on: { machine: string; library: string; engine: string; threads: string; date: string };
}

t.test('eval --json: the figures per-image classify results give', async (t) => {
  const images = labelledImages(EVAL, labelList);
  const truth = await classifyAll(images, ['--model', FLOAT, ...common]);
  const r = await runCli(['eval', '--model', FLOAT, ...common, '--json', EVAL]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stderr, '', 'no progress bar when not on a terminal');
  const e = JSON.parse(r.stdout) as EvalJson;
  const m = e.models[0]!;
  const met = m.metrics;
  t.equal(e.images, images.length);
  t.equal(e.classes, 9);

  const top1 = truth.filter((x) => x.ranked[0] === x.truth).length;
  const top5 = truth.filter((x) => x.ranked.slice(0, 5).includes(x.truth)).length;
  t.equal(met.top1_correct, top1, 'top-1');
  t.equal(met.top5_correct, top5, 'top-5');
  t.equal(met.top1_accuracy, top1 / images.length);
  t.equal(top1, 21, 'SOURCES.md: 21/27 for this model');

  const classes = [...new Set(images.map((i) => i.truth))];
  t.same(met.confusion.classes, classes);
  const expected = confusion(truth, classes);
  t.same(met.confusion.matrix, expected, 'confusion matrix');
  classes.forEach((c, i) => {
    const correct = expected[i]![i]!;
    const predicted = expected.reduce((a, row) => a + row[i]!, 0);
    const n = expected[i]!.reduce((a, b) => a + b, 0);
    const f = met.per_class[i]!;
    t.equal(f.index, c);
    t.equal(f.recall, correct / n, `recall of ${f.folder}`);
    t.equal(f.precision, predicted ? correct / predicted : null, `precision of ${f.folder}`);
  });
  t.same(
    met.misclassified.map((x) => [path.basename(x.file), x.predicted_index]),
    truth.filter((x) => x.ranked[0] !== x.truth).map((x) => [path.basename(x.file), x.ranked[0]]),
    'misclassified files and what they were taken for',
  );

  const times = m.samples.map((s) => s.inference_ms);
  t.equal(times.length, images.length);
  t.equal(m.latency.p50_ms, numpyPercentile(times, 50), 'p50 of the per-image invoke times');
  t.equal(m.latency.p95_ms, numpyPercentile(times, 95), 'p95');
  t.equal(m.quantization.kind, 'float32');
  t.equal(m.threads, 1, 'threads from the config file');
  t.equal(e.measured_on.engine, m.engine);
  t.match(e.measured_on, { machine: /\S/, library: /TFLite/, threads: '1', date: /^\d{4}-\d\d-\d\dT/ });
});

t.test('eval text and Markdown', async (t) => {
  const text = await runCli(['eval', '--model', FLOAT, ...common, SMALL]);
  t.equal(text.code, 0, text.stderr);
  t.match(text.stdout, /^Out of 3 predictions I got \d correct$/m);
  t.match(text.stdout, /^top-1 accuracy [\d.]+ % \(\d\/3\), top-5 accuracy [\d.]+ % \(\d\/3\)$/m);
  t.match(text.stdout, /^latency p50 [\d.]+ ms, p95 [\d.]+ ms \(invoke, 3 images\), engine \S+, 1 thread\(s\)$/m);
  t.match(text.stdout, /confusion matrix \(rows: true class #, columns: top-1 class #/);
  const md = await runCli(['eval', '--model', FLOAT, ...common, '--format', 'md', SMALL]);
  t.equal(md.code, 0, md.stderr);
  t.match(md.stdout, /\*\*Out of 3 predictions I got \d correct\*\*/);
  t.match(md.stdout, /^\| class \| images \| precision \| recall \|$/m);
  t.match(md.stdout, /^\| hotdog, hot dog, red hot \| 1 \| /m);
});

t.test('a progress bar on a terminal, none with --json', async (t) => {
  const cmd = (extra: string) => `${process.execPath} ${CLI} eval --model ${FLOAT} --config ${config} --labels ${LABELS} ${extra} '${SMALL}'`;
  // `script` gives the command a pseudo-terminal, as a user's shell does.
  const tty = spawnSync('script', ['-qec', cmd(''), '/dev/null'], { encoding: 'utf8', env: { ...process.env, COLUMNS: '100' } });
  t.equal(tty.status, 0, tty.stderr);
  t.match(tty.stdout, /\reval \[[█░]+\] +\d\/3/, 'the bar is drawn in place');
  t.match(tty.stdout, /3\/3 100 %/);
  t.match(tty.stdout, /Out of 3 predictions I got \d correct/);
  const json = spawnSync('script', ['-qec', cmd('--json'), '/dev/null'], { encoding: 'utf8' });
  t.equal(json.status, 0);
  t.notMatch(json.stdout, /█/, 'silent with --json');
  t.match(json.stdout.trim(), /^\{"command":"eval"/);
});

t.test('bad folders and files: a sentence each, counted not fatal where an image can be skipped', async (t) => {
  const empty = path.join(tmp, 'empty');
  mkdirSync(empty);
  const a = await runCli(['eval', '--model', FLOAT, ...common, empty]);
  t.equal(a.code, 1);
  t.match(a.stderr, /empty holds no class folders \(it is empty\): expected one sub-folder per class, named after a label of the model/);

  const noImages = path.join(tmp, 'no-images');
  mkdirSync(path.join(noImages, 'banana'), { recursive: true });
  writeFileSync(path.join(noImages, 'banana', 'notes.txt'), 'not an image');
  copyFileSync(image('rgb6X4.bmp'), path.join(noImages, 'banana', 'tiny.bmp'));
  const b = await runCli(['eval', '--model', FLOAT, ...common, noImages]);
  t.equal(b.code, 1);
  t.match(b.stderr, /no-images: none of its 2 files could be classified/);

  const mixed = path.join(tmp, 'mixed');
  mkdirSync(path.join(mixed, 'Hot Dog'), { recursive: true });
  copyFileSync(image('hot_dog.jpg'), path.join(mixed, 'Hot Dog', 'a.jpg'));
  writeFileSync(path.join(mixed, 'Hot Dog', 'b.jpg'), 'not really a JPEG');
  const c = await runCli(['eval', '--model', FLOAT, ...common, '--json', mixed]);
  t.equal(c.code, 0, c.stderr);
  const e = JSON.parse(c.stdout) as EvalJson;
  t.equal(e.images, 1, 'the good image is classified');
  t.equal(e.models[0]!.metrics.per_class[0]!.index, labelList.indexOf('hotdog, hot dog, red hot'), "'Hot Dog' matches the synonym, any case");
  t.equal(e.skipped.length, 1);
  t.match(e.skipped[0]!.reason, /b\.jpg/);
  const ct = await runCli(['eval', '--model', FLOAT, ...common, mixed]);
  t.match(ct.stdout, /skipped 1 file\(s\):\n {2}.*b\.jpg/);

  const typo = path.join(tmp, 'typo');
  mkdirSync(path.join(typo, 'teddy bears'), { recursive: true });
  const d = await runCli(['eval', '--model', FLOAT, ...common, typo]);
  t.equal(d.code, 1);
  t.match(d.stderr, /folder 'teddy bears' matches no label of .*imagenet_labels\.txt; near matches: 'teddy, teddy bear'/);

  const missing = await runCli(['eval', '--model', FLOAT, ...common, path.join(tmp, 'nope')]);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /cannot read the evaluation folder .*nope: no such folder/);
  const usage = await runCli(['eval', '--model', FLOAT]);
  t.equal(usage.code, 2);
});
