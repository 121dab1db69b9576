import path from 'node:path';
import { performance } from 'node:perf_hooks';
import sharp from 'sharp';
import { silentLogger } from '../core/log.js';
import { Classifier, type ClassifierOptions, type PipelineFrame } from '../inference/classifier.js';
import { effectiveInput, scoresOutputIndex } from '../inference/compat.js';
import { type ChoiceRow, chooseEngine } from '../inference/engine-choice.js';
import { Preprocessor } from '../inference/preprocess/preprocess.js';
import { readModelFile } from '../inference/tflite-model.js';

/** Frame sizes whose preprocessing is timed (JPEG, as a camera or ffmpeg delivers them), width × height. */
const BENCH_FRAME_SIZES: ReadonlyArray<readonly [number, number]> = [
  [640, 480],
  [1280, 720],
  [1920, 1080],
];

/** What `edge-classifier bench` measures for one model (times in ms, memory in MiB). */
export interface ModelBench {
  readonly model: string;
  /** Every engine × thread count measured, with the one chosen. */
  readonly engines: readonly ChoiceRow[];
  readonly engine: string;
  readonly threads: number;
  readonly runtime: string;
  /** Median time inside the engine per frame, through the classifier. */
  readonly inference_p50_ms: number;
  /** Median decode + resize + tensor fill per frame size, e.g. {'1280x720': 9.1}. */
  readonly preprocess_p50_ms: Readonly<Record<string, number>>;
  /**
   * Frames classified per second when raw RGB24 frames at the input size
   * (what an ffmpeg source with `source.format: raw` delivers) are always
   * ready, as from a camera faster than the model.
   */
  readonly pipeline_fps: number;
  /** 1000 / the median inference time during that run: the rate the model alone allows. */
  readonly model_fps: number;
  /** The same with 1280x720 JPEG frames (decoded and resized by sharp): bound by the decoder when it is slower than the model. */
  readonly pipeline_jpeg_fps: number;
  /** 1000 / the median inference time during the JPEG run. */
  readonly model_jpeg_fps: number;
  /** Resident memory of the process after the model's runs. */
  readonly rss_mib: number;
}

/** Options of `benchModel`. */
export interface BenchOptions {
  /** The classifier settings (engine and threads are measured here). */
  readonly classifier: Omit<ClassifierOptions, 'modelPath' | 'engine' | 'threads' | 'log' | 'cacheFile'>;
  /** Time for measuring the engines, ms (default 3000). */
  readonly budgetMs?: number;
  /** Runs for the inference median (default 30). */
  readonly runs?: number;
  /** Length of the pipeline run, s (default 5). */
  readonly pipelineSeconds?: number;
}

/**
 * A test picture for the frame sizes: colour gradients with fine texture, so
 * that the JPEG decoder does the work a camera frame costs.
 */
async function benchFrame(width: number, height: number): Promise<Buffer> {
  const rgb = Buffer.alloc(width * height * 3);
  let seed = 12345;
  for (let y = 0, i = 0; y < height; y++) {
    for (let x = 0; x < width; x++, i += 3) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      const noise = (seed >>> 24) % 48;
      rgb[i] = ((255 * x) / width + noise) & 255;
      rgb[i + 1] = ((255 * y) / height + noise) & 255;
      rgb[i + 2] = (128 + 100 * Math.sin((x + y) / 23) + noise) & 255;
    }
  }
  return sharp(rgb, { raw: { width, height, channels: 3 } })
    .jpeg({ quality: 80 })
    .toBuffer();
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/**
 * Measures one model as the daemon would run it: the engine × threads table
 * and the choice (as `inference.engine: auto` makes it, with a longer
 * budget), the inference median through the classifier on that choice, the
 * preprocessing median per frame size, the pipeline rate with frames coming
 * faster than the model (raw frames at the input size, and 1280x720 JPEG),
 * and the process's RSS. Throws when the model cannot
 * run (the classifier's message).
 */
export async function benchModel(modelPath: string, o: BenchOptions): Promise<ModelBench> {
  const { bytes, info } = await readModelFile(modelPath);
  const fileInput = info.inputs[0];
  if (!fileInput) throw new Error(`${modelPath} has no input tensor`);
  const input = effectiveInput(fileInput, o.classifier.inputSize);
  const frames = new Map<string, Buffer>();
  for (const [w, h] of BENCH_FRAME_SIZES) frames.set(`${w}x${h}`, await benchFrame(w, h));
  const frame = frames.get('1280x720')!;

  // The engine table first, on a real frame's tensor (the daemon uses a synthetic one; the choice is the same kind).
  const pre = new Preprocessor(input, {
    resize: o.classifier.resize,
    ...(o.classifier.normalization ? { normalization: o.classifier.normalization } : {}),
    ...(info.metadata?.normalization ? { metadataNormalization: info.metadata.normalization } : {}),
    model: modelPath,
  });
  const probe = (await pre.prepare(frame, 'bench frame')).tensor;
  const scoresIndex = scoresOutputIndex(info) ?? 0;
  const out = info.outputs[scoresIndex]!;
  const choice = await chooseEngine({
    load: { modelBytes: bytes, model: modelPath, threads: 1, ...(o.classifier.library ? { library: o.classifier.library } : {}) },
    engine: 'auto',
    threads: 'auto',
    probe: [probe],
    scores: { index: scoresIndex, dtype: out.dtype, scale: out.quantization[0], zero_point: out.quantization[1] },
    cacheFile: null,
    budgetMs: o.budgetMs ?? 3000,
  });

  const classifier = new Classifier({ ...o.classifier, modelPath, engine: choice.engine, threads: choice.threads, cacheFile: null, log: silentLogger() });
  await classifier.start();
  try {
    const inference: number[] = [];
    const runs = o.runs ?? 30;
    for (let i = 0; i < runs + 3; i++) {
      const r = await classifier.classify(frame, 'bench frame');
      if (i >= 3) inference.push(r.timings.inference_ms);
    }
    const preprocess: Record<string, number> = {};
    for (const [size, jpeg] of frames) {
      const times: number[] = [];
      for (let i = 0; i < 12; i++) {
        const t0 = performance.now();
        await pre.prepare(jpeg, 'bench frame');
        if (i >= 2) times.push(performance.now() - t0);
      }
      preprocess[size] = median(times);
    }
    const seconds = o.pipelineSeconds ?? 5;
    const rgb = rawFrame(input.shape[2]!, input.shape[1]!);
    const raw = await pipelineRate(classifier, { data: rgb, raw: { format: 'rgb24', width: input.shape[2]!, height: input.shape[1]! } }, seconds);
    const jpeg = await pipelineRate(classifier, { data: frame }, seconds);
    return {
      model: path.basename(modelPath),
      engines: choice.table,
      engine: choice.engine,
      threads: choice.threads,
      runtime: classifier.runtime,
      inference_p50_ms: median(inference),
      preprocess_p50_ms: preprocess,
      pipeline_fps: raw.fps,
      model_fps: raw.modelFps,
      pipeline_jpeg_fps: jpeg.fps,
      model_jpeg_fps: jpeg.modelFps,
      rss_mib: process.memoryUsage().rss / 1048576,
    };
  } finally {
    await classifier.stop();
  }
}

/** A raw RGB24 frame (HWC uint8) of the bench picture's kind at width × height. */
function rawFrame(width: number, height: number): Uint8Array {
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0, i = 0; y < height; y++) {
    for (let x = 0; x < width; x++, i += 3) {
      rgb[i] = (255 * x) / width;
      rgb[i + 1] = (255 * y) / height;
      rgb[i + 2] = 128 + 100 * Math.sin((x + y) / 23);
    }
  }
  return rgb;
}

/**
 * Runs a pipeline over `classifier` for `seconds` with a frame always ready:
 * two frames offered at the start (one in inference, one being prepared) and
 * a new one with every result, as from a camera faster than the model — but
 * without a feeding loop that would itself take a core from the model.
 * Returns frames classified per second, the rate the model alone allows
 * (1000 / median inference ms of that run).
 */
async function pipelineRate(classifier: Classifier, frame: PipelineFrame, seconds: number): Promise<{ fps: number; modelFps: number }> {
  const inference: number[] = [];
  let running = true;
  const pipeline = classifier.pipeline<PipelineFrame>(
    (_f, r) => {
      inference.push(r.timings.inference_ms);
      if (running) pipeline.offer(frame);
    },
    () => {
      if (running) pipeline.offer(frame);
    },
  );
  const t0 = performance.now();
  pipeline.offer(frame);
  pipeline.offer(frame);
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  running = false;
  const elapsed = (performance.now() - t0) / 1000;
  const stats = pipeline.stats();
  await pipeline.close();
  return { fps: stats.completed / elapsed, modelFps: 1000 / median(inference) };
}

/** The bench result as text lines for a terminal. */
export function formatBench(b: ModelBench): string {
  const ms = (x: number | undefined): string => (x !== undefined ? x.toFixed(2) : '-');
  const rows = b.engines.map((r) => [r.engine, String(r.threads), ms(r.p50_ms), ms(r.p25_ms), r.status, r.reason ?? '']);
  const head = ['engine', 'threads', 'p50 ms', 'p25 ms', 'status', 'note'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const table = [head, ...rows].map(
    (r) =>
      `  ${r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd()}`,
  );
  return [
    `${b.model}: ${b.engine}, ${b.threads} thread${b.threads > 1 ? 's' : ''} (${b.runtime})`,
    ...table,
    `  inference p50 ${b.inference_p50_ms.toFixed(2)} ms`,
    `  preprocess p50 ${Object.entries(b.preprocess_p50_ms)
      .map(([k, v]) => `${k} ${v.toFixed(1)} ms`)
      .join(', ')}`,
    `  pipeline, raw frames at the input size, one always ready: ${b.pipeline_fps.toFixed(1)} fps (the model alone allows ${b.model_fps.toFixed(1)})`,
    `  pipeline, 1280x720 JPEG frames, one always ready: ${b.pipeline_jpeg_fps.toFixed(1)} fps (the model alone allows ${b.model_jpeg_fps.toFixed(1)})`,
    `  RSS ${b.rss_mib.toFixed(0)} MiB`,
  ].join('\n');
}
