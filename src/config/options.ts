import type { SourceOptions } from '../camera/source-spec.js';
import type { ClassifierOptions } from '../inference/classifier.js';
import type { Logger } from '../service/log.js';
import type { Config } from './schema.js';

/**
 * The frame source options a configuration asks for (`source:` section,
 * snake_case keys onto the camera stage's camelCase options).
 */
export function sourceOptions(c: Config): SourceOptions {
  const s = c.source;
  return { width: s.width, height: s.height, fps: s.fps, rotation: s.rotation, hflip: s.hflip, vflip: s.vflip, loop: s.loop, jpegQuality: s.jpeg_quality };
}

/**
 * The `Classifier.open` options a configuration asks for (shared by `run`
 * and `classify`). mean/std given as one number apply to all three channels.
 */
export function classifierOptions(c: Config, log: Logger): ClassifierOptions {
  const { mean, std } = c.preprocess;
  const triple = (v: number | number[] | null, fallback: number) => (v === null ? [fallback, fallback, fallback] : Array.isArray(v) ? v : [v, v, v]);
  return {
    modelPath: c.model.path,
    labelsPath: c.model.labels ?? undefined,
    cpuModelPath: c.model.cpu_fallback ?? undefined,
    delegate: c.inference.delegate,
    edgetpuDevice: c.inference.edgetpu_device ?? undefined,
    threads: c.inference.threads,
    topK: c.inference.top_k,
    threshold: c.inference.threshold,
    resize: c.preprocess.resize,
    normalization: mean === null && std === null ? undefined : { mean: triple(mean, 0), std: triple(std, 1) },
    log,
  };
}
