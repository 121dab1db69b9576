import t from 'tap';
import { computeMetrics, latency, percentile, rank, type Sample, tutorialLine } from '../../src/evaluation/metrics.js';

// A hand-made set: 3 cats (class 5), 2 dogs (class 7); the figures below are
// counted by hand from it.
const classes = [
  { index: 5, label: 'cat', folder: 'cat' },
  { index: 7, label: 'dog', folder: 'dog' },
];
const s = (file: string, truth: number, ranked: number[], ms: number): Sample => ({ file, truth, ranked, score: 0.5, inference_ms: ms });
const samples = [
  s('c1', 5, [5, 7, 1, 2, 3], 10),
  s('c2', 5, [7, 5, 1, 2, 3], 20), // cat taken for dog
  s('c3', 5, [9, 8, 1, 2, 3], 30), // cat taken for class 9 (outside the set), not in top-5
  s('d1', 7, [7, 5, 1, 2, 3], 40),
  s('d2', 7, [1, 7, 5, 2, 3], 50), // dog taken for class 1, dog second
];

t.test('top-1, top-5, per class, confusion, misclassified', async (t) => {
  const m = computeMetrics(samples, classes, (i) => `class ${i}`);
  t.equal(m.images, 5);
  t.equal(m.top1_correct, 2);
  t.equal(m.top5_correct, 4);
  t.equal(m.top1_accuracy, 0.4);
  t.equal(m.top5_accuracy, 0.8);
  t.same(m.confusion.matrix, [
    [1, 1, 1],
    [0, 1, 1],
  ]);
  t.same(
    m.per_class.map((c) => [c.label, c.images, c.correct, c.predicted, c.precision, c.recall]),
    [
      ['cat', 3, 1, 1, 1, 1 / 3],
      ['dog', 2, 1, 2, 0.5, 0.5],
    ],
  );
  t.same(
    m.misclassified.map((x) => [x.file, x.truth, x.predicted]),
    [
      ['c2', 'cat', 'class 7'],
      ['c3', 'cat', 'class 9'],
      ['d2', 'dog', 'class 1'],
    ],
  );
  t.equal(tutorialLine(m), 'Out of 5 predictions I got 2 correct');
  t.equal(m.latency.p50_ms, 30);
  t.equal(m.latency.p95_ms, 48, 'numpy linear: 40 + 0.8 × (50 − 40)');
});

t.test('a class never predicted has no precision; a truth outside the classes is refused', async (t) => {
  const m = computeMetrics([s('c', 5, [9], 1)], classes, String);
  t.equal(m.per_class[0]!.precision, null);
  t.equal(m.per_class[1]!.recall, null);
  t.throws(() => computeMetrics([s('x', 3, [3], 1)], classes, String), { message: /x: class 3 is not among the evaluated classes/ });
});

t.test('percentiles and ranking', async (t) => {
  t.equal(percentile([3, 1, 2], 50), 2);
  t.equal(percentile([1, 2, 3, 4], 50), 2.5);
  t.ok(Number.isNaN(percentile([], 50)));
  t.same(latency([2, 4]), { n: 2, p50_ms: 3, p95_ms: 3.9, mean_ms: 3 });
  t.same(rank([0.1, 0.5, 0.5, NaN, 0.2], 4), [1, 2, 4, 0], 'ties by index, NaN last');
});
