import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { Classifier, type ClassifierOptions } from '../../src/inference/classifier.js';
import { modelProblems } from '../../src/inference/compat.js';
import { parseModel } from '../../src/inference/tflite-model.js';
import { image } from '../helpers/assets.js';
import { runCli } from '../helpers/cli.js';
import { freeSizeClassifier, scoresSecondClassifier, ssdDetector } from '../helpers/tflite-builder.js';

const dir = mkdtempSync(path.join(tmpdir(), 'converter-cases-'));
const write = (name: string, bytes: Uint8Array): string => {
  const file = path.join(dir, name);
  writeFileSync(file, bytes);
  return file;
};

/** What these built models compute, worked out here: softmax over the mean of each RGB channel of x = pixel / 255. */
async function expectedScores(file: string, width: number, height: number): Promise<number[]> {
  const rgb = await sharp(file).removeAlpha().resize(width, height, { fit: 'fill' }).raw().toBuffer();
  const means = [0, 1, 2].map((c) => {
    let sum = 0;
    for (let i = c; i < rgb.length; i += 3) sum += rgb[i]! / 255;
    return sum / (rgb.length / 3);
  });
  const e = means.map((m) => Math.exp(m));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / z);
}

const options = (modelPath: string, extra: Partial<ClassifierOptions> = {}): ClassifierOptions => ({
  modelPath,
  engine: 'tflite',
  threads: 1,
  cacheFile: null,
  delegate: 'cpu',
  resize: 'stretch',
  topK: 3,
  threshold: 0,
  normalization: { mean: [0, 0, 0], std: [255, 255, 255] },
  ...extra,
});

t.test('an input with free height/width is resized to preprocess.input_size before allocation', async (t) => {
  const file = write('free.tflite', freeSizeClassifier());
  const info = await parseModel(readFileSync(file), file);
  t.same(info.inputs[0]!.shape_signature, [1, -1, -1, 3]);
  const c = new Classifier(options(file, { inputSize: [32, 48] }));
  t.teardown(() => c.stop());
  await c.start();
  const r = await c.classify(readFileSync(image('sunflower.png')), 'sunflower.png');
  const expected = await expectedScores(image('sunflower.png'), 48, 32);
  t.equal(r.classes.length, 3);
  for (const cls of r.classes) t.ok(Math.abs(cls.score - expected[cls.index]!) < 1e-4, `class ${cls.index}: ${cls.score} ≈ ${expected[cls.index]}`);

  const byDefault = new Classifier(options(file));
  t.teardown(() => byDefault.stop());
  await byDefault.start();
  const d = await byDefault.classify(readFileSync(image('sunflower.png')));
  const at224 = await expectedScores(image('sunflower.png'), 224, 224);
  t.ok(Math.abs(d.classes[0]!.score - at224[d.classes[0]!.index]!) < 1e-4, 'without input_size: 224×224');
});

t.test('class scores that are not the first output are found and used', async (t) => {
  const file = write('two-outputs.tflite', scoresSecondClassifier());
  const info = await parseModel(readFileSync(file), file);
  t.same(
    info.outputs.map((o) => [o.name, o.shape]),
    [
      ['brightness', [1]],
      ['scores', [1, 3]],
    ],
  );
  t.same(modelProblems(info, { edgeTpu: false, normalizationConfigured: true }), []);
  const c = new Classifier(options(file));
  t.teardown(() => c.stop());
  await c.start();
  t.equal(c.scoresOutput, 1);
  const r = await c.classify(readFileSync(image('bird.png')));
  const expected = await expectedScores(image('bird.png'), 8, 8);
  const best = expected.indexOf(Math.max(...expected));
  t.equal(r.classes[0]!.index, best);
  t.ok(Math.abs(r.classes[0]!.score - expected[best]!) < 1e-4, `score ${r.classes[0]!.score} ≈ ${expected[best]}`);

  const inspect = await runCli(['inspect', '--model', file, '--json']);
  const json = JSON.parse(inspect.stdout) as { scores_output: number; inputs: Array<{ sparsity_parameters: object }> };
  t.equal(json.scores_output, 1, 'inspect --json says which output holds the scores');
  t.same(json.inputs[0]!.sparsity_parameters, {}, 'a dense tensor has empty sparsity_parameters, as TensorFlow prints');
  const text = await runCli(['inspect', '--model', file]);
  t.match(text.stdout, /^class scores: output 1 \(scores\)$/m);
});

t.test('an SSD detection model is named as such, not as a missing custom op', async (t) => {
  const file = write('ssd.tflite', ssdDetector());
  const info = await parseModel(readFileSync(file), file);
  const expected = `${file} is an object detection model (its TFLite_Detection_PostProcess op outputs boxes, classes and scores): the daemon runs image classifiers, whose output is one class-scores tensor [1,N]; use an image classification model`;
  t.same(modelProblems(info, { edgeTpu: false, normalizationConfigured: false }), [expected]);
  const c = new Classifier(options(file));
  t.teardown(() => c.stop());
  await t.rejects(c.start(), { message: expected });
  const check = await runCli(['run', '--check-config', '--model', file, '--source', dir]);
  t.equal(check.code, 78);
  t.match(check.stderr, 'is an object detection model');
});
