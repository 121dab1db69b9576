import { writeFile } from 'node:fs/promises';
import sharp from 'sharp';
import type { ClassifierOptions } from '../inference/classifier.js';
import { analyzeModel } from '../inference/model-analysis.js';
import { readModelFile } from '../inference/tflite-model.js';
import { type Dataset, readDataset } from './dataset.js';
import { evaluate, type ModelResults, type Skipped } from './evaluate.js';
import { describeMachine } from './machine.js';
import { latency as latencyOf } from './metrics.js';
import { ProgressBar, type ProgressStream } from './progress.js';
import { buildReport, type ModelRun, type Report, renderMarkdown, renderText } from './report.js';
import { renderHtml } from './report-html.js';
import { ClassifierScorer } from './scorer.js';

/** Output formats of `eval` and `compare`. */
export type ReportFormat = 'text' | 'json' | 'md';

/** Options shared by `eval` and `compare`. */
export interface WorkflowOptions {
  /** The classifier as `run` would start it (config file, environment and flags applied); `modelPath` is replaced per model. */
  readonly classifier: ClassifierOptions;
  readonly format: ReportFormat;
  /** Write the HTML report here too. */
  readonly report?: string;
  readonly stdout: { write(s: string): boolean };
  /** Where the progress bar goes (drawn only on a terminal, never with `--format json`). */
  readonly stderr: ProgressStream;
}

/** Refusal of models that cannot be compared (different classes). */
class CompareError extends Error {
  override readonly name = 'CompareError';
}

async function emit(r: Report, o: WorkflowOptions): Promise<void> {
  if (o.report) await writeFile(o.report, renderHtml(r));
  if (o.format === 'json') o.stdout.write(`${JSON.stringify(r)}\n`);
  else if (o.format === 'md') o.stdout.write(renderMarkdown(r));
  else o.stdout.write(renderText(r));
}

const classCount = (shape: readonly number[]) => shape[shape.length - 1] ?? 0;

/**
 * Checks that `s` (model `m`) has the reference's classes: the same number
 * of output scores and, where both know a label, the same labels.
 * Throws CompareError.
 */
function checkSameClasses(m: string, s: ClassifierScorer, refPath: string, ref: { classes: number; labels: readonly string[] }): void {
  const n = classCount(s.info.outputs[0]!.shape);
  const nRef = ref.classes;
  if (n !== nRef) {
    throw new CompareError(
      `${m} scores ${n} classes but the reference ${refPath} scores ${nRef}: compare only variants of one classifier (same classes, same order)`,
    );
  }
  const diff = s.labels.findIndex((l, i) => l !== '' && ref.labels[i] !== '' && l !== ref.labels[i]);
  if (diff >= 0) {
    throw new CompareError(
      `${m} and the reference ${refPath} have different classes: class ${diff} is '${s.labels[diff]}' in one and '${ref.labels[diff]}' in the other; compare only variants of one classifier`,
    );
  }
}

async function modelRun(path: string, s: ClassifierScorer, results: ModelResults, latencies?: number[]): Promise<ModelRun> {
  const { bytes, info } = await readModelFile(s.classifier.modelPath);
  return {
    path,
    size_bytes: bytes.length,
    quantization: analyzeModel(bytes, info),
    // What ran, as chosen (or configured): e.g. tflite-xnnpack with 1 thread.
    engine: s.classifier.engine,
    threads: s.classifier.threads,
    runtime: s.classifier.runtime,
    results,
    ...(latencies ? { latencies } : {}),
  };
}

/**
 * Runs the models side by side (the reference first): all of them are
 * started, then every image goes through each model in turn (or, without a
 * folder, rounds of one timed run per model), so that their latencies are
 * measured under the same machine load — each model's interpreter lives in
 * its own worker thread. A progress bar over the images. Checks each
 * model's classes against the reference's (CompareError).
 */
async function runModels(models: readonly string[], o: WorkflowOptions, data: { dataset: Dataset } | { image: Buffer; runs: number }) {
  const label = models.length > 1 ? 'compare' : 'eval';
  const bar = new ProgressBar(o.format === 'json' ? { write: () => true } : o.stderr, label);
  const scorers: ClassifierScorer[] = [];
  try {
    for (const m of models) {
      const s = await ClassifierScorer.open({ ...o.classifier, modelPath: m });
      scorers.push(s);
      const ref = scorers[0]!;
      if (s !== ref) checkSameClasses(m, s, models[0]!, { classes: classCount(ref.info.outputs[0]!.shape), labels: ref.labels });
    }
    const runs: ModelRun[] = [];
    let skipped: Skipped[] = [];
    if ('dataset' in data) {
      const out = await evaluate(scorers, data.dataset, { onProgress: (done, total) => bar.update(done, total, '') });
      skipped = out.skipped;
      if (out.models[0]!.samples.length === 0) {
        throw new Error(
          `${data.dataset.dir}: none of its ${out.skipped.length} files could be classified (${out.skipped[0]?.reason ?? 'no files'}): expected JPEG, PNG, WebP, GIF, TIFF or AVIF images`,
        );
      }
      for (let i = 0; i < models.length; i++) runs.push(await modelRun(models[i]!, scorers[i]!, out.models[i]!));
    } else {
      const times: number[][] = scorers.map(() => []);
      for (const s of scorers) await s.score(data.image, 'a synthetic image');
      for (let n = 0; n < data.runs; n++) {
        for (let i = 0; i < scorers.length; i++) times[i]!.push((await scorers[i]!.score(data.image, 'a synthetic image')).inference_ms);
        bar.update(n + 1, data.runs, '');
      }
      for (let i = 0; i < models.length; i++) runs.push(await modelRun(models[i]!, scorers[i]!, EMPTY_RESULTS, times[i]!));
    }
    return { runs, skipped, labels: scorers[0]!.labels };
  } finally {
    bar.done();
    await Promise.all(scorers.map((s) => s.close()));
  }
}

const EMPTY_RESULTS: ModelResults = {
  samples: [],
  vsReference: [],
  metrics: {
    images: 0,
    top1_correct: 0,
    top5_correct: 0,
    top1_accuracy: 0,
    top5_accuracy: 0,
    per_class: [],
    confusion: { classes: [], labels: [], matrix: [] },
    misclassified: [],
    latency: latencyOf([]),
  },
};

function measuredOn(runs: readonly ModelRun[]) {
  const uniq = (xs: string[]) => [...new Set(xs)].join(', ');
  return describeMachine({
    library: uniq(runs.map((r) => r.runtime)),
    engine: uniq(runs.map((r) => r.engine)),
    threads: uniq(runs.map((r) => String(r.threads))),
  });
}

/** The labels a folder is matched against: the labels file, else the model's own. */
async function datasetFor(dir: string, model: string, o: WorkflowOptions): Promise<Dataset> {
  const s = await ClassifierScorer.open({ ...o.classifier, modelPath: model });
  const labels = s.labels;
  await s.close();
  return readDataset(dir, labels, o.classifier.labelsPath ?? `the labels of ${model}`);
}

/**
 * `eval --model FILE DIR`: classifies every image of the labelled folder
 * DIR as the daemon would and prints the accuracy figures (see
 * `renderText`). Throws DatasetError for a folder that cannot be used, and
 * the classifier's errors for a model that cannot run.
 */
export async function evalCommand(dir: string, o: WorkflowOptions): Promise<Report> {
  const model = o.classifier.modelPath;
  const dataset = await datasetFor(dir, model, o);
  const { runs, skipped } = await runModels([model], o, { dataset });
  const report = buildReport({
    command: 'eval',
    data: dir,
    classes: dataset.classes.length,
    runs,
    skipped,
    notes: dataset.notes,
    measuredOn: measuredOn(runs),
  });
  await emit(report, o);
  return report;
}

/** Latency samples per model without a labelled folder. */
const SYNTHETIC_RUNS = 30;

/**
 * A deterministic noise image (PNG, 224×224 RGB) for timing models when no
 * labelled folder is given; the classifier resizes it to each model's input.
 */
async function syntheticImage(): Promise<Buffer> {
  const w = 224;
  const px = Buffer.alloc(w * w * 3);
  let x = 0x2545f491;
  for (let i = 0; i < px.length; i++) {
    // xorshift32 (Marsaglia 2003): the same image on every run.
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    px[i] = x & 0xff;
  }
  return sharp(px, { raw: { width: w, height: w, channels: 3 } })
    .png()
    .toBuffer();
}

/**
 * `compare [--data DIR] MODEL...`: the trade-off table of the models, the
 * first the reference (see `comparisonRows`). With DIR: accuracy, top-1
 * agreement and mean |Δ score| on its images; without: the latency of each
 * model on a synthetic image. Throws CompareError for models whose classes
 * differ from the reference's, DatasetError for a folder that cannot be used.
 */
export async function compareCommand(models: readonly string[], data: string | null, o: WorkflowOptions): Promise<Report> {
  let report: Report;
  if (data !== null) {
    const dataset = await datasetFor(data, models[0]!, o);
    const { runs, skipped } = await runModels(models, o, { dataset });
    report = buildReport({ command: 'compare', data, classes: dataset.classes.length, runs, skipped, notes: dataset.notes, measuredOn: measuredOn(runs) });
  } else {
    const { runs } = await runModels(models, o, { image: await syntheticImage(), runs: SYNTHETIC_RUNS });
    const info = await readModelFile(models[0]!);
    report = buildReport({
      command: 'compare',
      data: null,
      classes: classCount(info.info.outputs[0]!.shape),
      runs,
      skipped: [],
      notes: [],
      measuredOn: measuredOn(runs),
    });
  }
  await emit(report, o);
  return report;
}
