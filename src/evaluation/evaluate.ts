import { readFile } from 'node:fs/promises';
import { FrameDecodeError } from '../inference/preprocess/preprocess.js';
import type { Dataset } from './dataset.js';
import { computeMetrics, type Metrics, rank, type Sample } from './metrics.js';

/**
 * What `eval` and `compare` need of a loaded model: every class's score for
 * one encoded image, preprocessed as the daemon preprocesses frames.
 */
export interface Scorer {
  /** Labels in class order ('' where a class has none). */
  readonly labels: readonly string[];
  /**
   * Scores of every class (dequantized: probabilities for softmax outputs),
   * `[N]` float32, and the time inside invoke in ms. Rejects with a
   * FrameDecodeError for images that cannot be decoded, with another Error
   * when inference fails.
   */
  score(image: Uint8Array, file: string): Promise<{ scores: Float32Array; inference_ms: number }>;
}

/** A file of the set that could not be used (unreadable, not an image, an unsupported format). */
export interface Skipped {
  readonly file: string;
  readonly reason: string;
}

/** One model's results over the set. */
export interface ModelResults {
  readonly samples: Sample[];
  /**
   * Per image (same order as `samples`): this model's score for the reference
   * model's top-1 class, and whether its own top-1 is that class. Set when
   * several models run side by side; the first model is the reference.
   */
  readonly vsReference: { score: number; refScore: number; agrees: boolean }[];
  readonly metrics: Metrics;
}

/** Progress of a run: images done of the total, and the file just done. */
export type ProgressFn = (done: number, total: number, file: string) => void;

/**
 * Classifies every file of `dataset` with each scorer in turn, image by
 * image (so that the models' latencies are measured side by side under the
 * same machine load), and computes each model's metrics. The first scorer is
 * the reference for `vsReference`. A file that cannot be read or decoded is
 * skipped for all models and listed in `skipped`; an inference failure
 * rejects. `warmup` first invocations per model (on the first image) are not
 * timed, so the interpreter's first-run allocations do not count.
 */
export async function evaluate(
  scorers: readonly Scorer[],
  dataset: Dataset,
  options: {
    onProgress?: ProgressFn;
    warmup?: number;
    /** The reference's top-1 class and score per file, when the reference ran apart (else the first scorer is the reference). */
    reference?: ReadonlyMap<string, { index: number; score: number }>;
  } = {},
): Promise<{ models: ModelResults[]; skipped: Skipped[] }> {
  const files = dataset.classes.flatMap((c) => c.files.map((file) => ({ file, truth: c.index })));
  const samples: Sample[][] = scorers.map(() => []);
  const vs: ModelResults['vsReference'][] = scorers.map(() => []);
  const skipped: Skipped[] = [];
  let warm = false;
  for (let n = 0; n < files.length; n++) {
    const { file, truth } = files[n]!;
    let bytes: Uint8Array;
    try {
      bytes = await readFile(file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      skipped.push({ file, reason: `cannot read: ${code === 'EACCES' ? 'permission denied' : (err as Error).message}` });
      options.onProgress?.(n + 1, files.length, file);
      continue;
    }
    const results: { scores: Float32Array; inference_ms: number }[] = [];
    try {
      for (const s of scorers) {
        if (!warm) for (let w = 0; w < (options.warmup ?? 1); w++) await s.score(bytes, file);
        results.push(await s.score(bytes, file));
      }
      warm = true;
    } catch (err) {
      if (!(err instanceof FrameDecodeError)) throw err;
      skipped.push({ file, reason: (err as Error).message });
      options.onProgress?.(n + 1, files.length, file);
      continue;
    }
    const given = options.reference?.get(file);
    const refTop = given ? given.index : rank(results[0]!.scores, 1)[0]!;
    const refScore = given ? given.score : results[0]!.scores[refTop]!;
    results.forEach((r, m) => {
      const ranked = rank(r.scores, 5);
      samples[m]!.push({ file, truth, ranked, score: r.scores[ranked[0]!]!, inference_ms: r.inference_ms });
      vs[m]!.push({ score: r.scores[refTop]!, refScore, agrees: ranked[0] === refTop });
    });
    options.onProgress?.(n + 1, files.length, file);
  }
  const models = scorers.map((s, m) => ({
    samples: samples[m]!,
    vsReference: vs[m]!,
    metrics: computeMetrics(samples[m]!, dataset.classes, (i) => s.labels[i] || `class ${i}`),
  }));
  return { models, skipped };
}
