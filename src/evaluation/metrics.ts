/*
 * Accuracy figures of a classifier on a labelled folder: top-1/top-5,
 * per-class precision and recall, the confusion matrix over the classes
 * present, the misclassified files, and latency percentiles.
 */

/** One class of the evaluation set: a folder and the model class it was matched to. */
export interface EvalClass {
  /** Model class index (position in the output tensor), e.g. 934 for `hotdog, hot dog, red hot`. */
  readonly index: number;
  /** The model's label for it. */
  readonly label: string;
  /** Name of the folder holding its images. */
  readonly folder: string;
}

/** The result of classifying one image of the set. */
export interface Sample {
  /** Path of the image, as listed. */
  readonly file: string;
  /** Model class index of the folder the image is in. */
  readonly truth: number;
  /** Class indices by descending score (at least 5 when the model has that many classes); ties in ascending index order. */
  readonly ranked: readonly number[];
  /** Score of `ranked[0]` (a dequantized probability for softmax outputs). */
  readonly score: number;
  /** Time inside the interpreter's invoke, ms. */
  readonly inference_ms: number;
}

/** Precision and recall of one class (top-1). */
interface ClassFigures extends EvalClass {
  /** Images of this class. */
  readonly images: number;
  /** Images of this class whose top-1 is this class. */
  readonly correct: number;
  /** Images (of any class) whose top-1 is this class. */
  readonly predicted: number;
  /** correct / predicted; null when the class was never predicted. */
  readonly precision: number | null;
  /** correct / images; null when the class has no image. */
  readonly recall: number | null;
}

/** A misclassified image: what it is and what it was taken for. */
interface Miss {
  readonly file: string;
  readonly truth: string;
  readonly predicted: string;
  readonly predicted_index: number;
  readonly score: number;
}

/** Latency percentiles over the images, ms. */
export interface Latency {
  readonly n: number;
  readonly p50_ms: number;
  readonly p95_ms: number;
  readonly mean_ms: number;
}

/**
 * Confusion matrix, top-1, over the classes present: `matrix[i][j]` is the
 * number of images of `classes[i]` whose top-1 is `classes[j]`; the last
 * column (j = classes.length) counts top-1 answers outside the classes present
 * ("other": one of the model's other classes).
 */
interface Confusion {
  /** Model class indices of the rows (and of the first columns), in `EvalClass` order. */
  readonly classes: number[];
  readonly labels: string[];
  readonly matrix: number[][];
}

/** Everything `eval` reports about accuracy and speed. */
export interface Metrics {
  readonly images: number;
  readonly top1_correct: number;
  readonly top5_correct: number;
  /** top1_correct / images, in [0, 1]. */
  readonly top1_accuracy: number;
  readonly top5_accuracy: number;
  readonly per_class: ClassFigures[];
  readonly confusion: Confusion;
  readonly misclassified: Miss[];
  readonly latency: Latency;
}

/**
 * Percentile `p` (0..100) of `values` with linear interpolation between
 * closest ranks — numpy's default `np.percentile(values, p)` (method
 * "linear": position (n − 1) × p / 100). NaN for an empty list.
 */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const pos = ((sorted.length - 1) * p) / 100;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/** p50, p95 and mean of latencies in ms. */
export function latency(values: readonly number[]): Latency {
  const n = values.length;
  return {
    n,
    p50_ms: percentile(values, 50),
    p95_ms: percentile(values, 95),
    mean_ms: n ? values.reduce((a, b) => a + b, 0) / n : Number.NaN,
  };
}

/**
 * Computes the accuracy figures of `samples` over `classes` (the classes
 * present in the set, each sample's `truth` one of them). `labelOf` names any
 * model class (for misclassifications outside the set).
 * Throws when a sample's truth is not among `classes`.
 */
export function computeMetrics(samples: readonly Sample[], classes: readonly EvalClass[], labelOf: (index: number) => string): Metrics {
  const pos = new Map(classes.map((c, i) => [c.index, i]));
  const k = classes.length;
  const matrix = classes.map(() => new Array<number>(k + 1).fill(0));
  const predicted = new Array<number>(k).fill(0);
  let top1 = 0;
  let top5 = 0;
  const misclassified: Miss[] = [];
  for (const s of samples) {
    const row = pos.get(s.truth);
    if (row === undefined) throw new Error(`${s.file}: class ${s.truth} is not among the evaluated classes`);
    const first = s.ranked[0];
    const col = first === undefined ? undefined : pos.get(first);
    matrix[row]![col ?? k]!++;
    if (col !== undefined) predicted[col]!++;
    if (first === s.truth) top1++;
    else {
      misclassified.push({
        file: s.file,
        truth: classes[row]!.label,
        predicted: first === undefined ? '(nothing)' : labelOf(first),
        predicted_index: first ?? -1,
        score: s.score,
      });
    }
    if (s.ranked.slice(0, 5).includes(s.truth)) top5++;
  }
  const perClass: ClassFigures[] = classes.map((c, i) => {
    const images = matrix[i]!.reduce((a, b) => a + b, 0);
    const correct = matrix[i]![i]!;
    return {
      ...c,
      images,
      correct,
      predicted: predicted[i]!,
      precision: predicted[i]! > 0 ? correct / predicted[i]! : null,
      recall: images > 0 ? correct / images : null,
    };
  });
  const n = samples.length;
  return {
    images: n,
    top1_correct: top1,
    top5_correct: top5,
    top1_accuracy: n ? top1 / n : 0,
    top5_accuracy: n ? top5 / n : 0,
    per_class: perClass,
    confusion: { classes: classes.map((c) => c.index), labels: classes.map((c) => c.label), matrix },
    misclassified,
    latency: latency(samples.map((s) => s.inference_ms)),
  };
}

/** The classic tutorial's line: `Out of 27 predictions I got 21 correct`. */
export function tutorialLine(m: Pick<Metrics, 'images' | 'top1_correct'>): string {
  return `Out of ${m.images} predictions I got ${m.top1_correct} correct`;
}

/**
 * Class indices of `scores` by descending score, the first `k`; equal scores
 * in ascending index order; NaN scores last.
 */
export function rank(scores: ArrayLike<number>, k: number): number[] {
  const idx = Array.from({ length: scores.length }, (_, i) => i);
  const key = (i: number) => (Number.isNaN(scores[i]!) ? -Infinity : scores[i]!);
  idx.sort((a, b) => key(b) - key(a) || a - b);
  return idx.slice(0, k);
}
