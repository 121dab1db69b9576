import { Classifier, type ClassifierOptions } from '../inference/classifier.js';
import type { ModelInfo } from '../inference/model-info.js';
import { readModelInfo } from '../inference/tflite-model.js';
import type { Scorer } from './evaluate.js';

/**
 * A `Scorer` over the daemon's own `Classifier` (same preprocessing, engine
 * and threads as `run`), asking it for every class above any score.
 */
export class ClassifierScorer implements Scorer {
  private constructor(
    readonly classifier: Classifier,
    /** What the model file says. */
    readonly info: ModelInfo,
    /** Number of classes (the last dimension of the scores output). */
    readonly classes: number,
  ) {}

  /** Starts a classifier with `options` (top-k and threshold replaced: every class is scored); throws as `Classifier.start`. */
  static async open(options: ClassifierOptions): Promise<ClassifierScorer> {
    const info = await readModelInfo(options.modelPath);
    const shape = info.outputs[0]?.shape ?? [];
    const classes = shape[shape.length - 1] ?? 1;
    const classifier = new Classifier({ ...options, topK: classes, threshold: -Number.MAX_VALUE });
    try {
      await classifier.start();
    } catch (err) {
      await classifier.stop();
      throw err;
    }
    return new ClassifierScorer(classifier, info, classes);
  }

  get labels(): readonly string[] {
    return this.classifier.labels;
  }

  async score(image: Uint8Array, file: string): Promise<{ scores: Float32Array; inference_ms: number }> {
    const r = await this.classifier.classify(image, file);
    const scores = new Float32Array(this.classes);
    for (const c of r.classes) scores[c.index] = c.score;
    return { scores, inference_ms: r.timings.inference_ms };
  }

  close(): Promise<void> {
    return this.classifier.stop();
  }
}
