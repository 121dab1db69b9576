import { performance } from 'node:perf_hooks';
import type { Lifecycle } from '../core/lifecycle.js';
import type { Logger } from '../core/log.js';
import { silentLogger } from '../core/log.js';
import type { Classification, Normalization, RawPictureFormat, ResizeMode, Roi, TensorDetails } from '../core/types.js';
import { edgeTpuOnlyMessage, effectiveInput, hasFreeSize, modelProblems, scoresOutputIndex } from './compat.js';
import { type DelegateDescriptor, EdgeTpuUnavailableError, edgeTpuDelegate, probeDelegate } from './delegate.js';
import type { EngineName, TensorArray } from './engine-api.js';
import { chooseEngine, type EngineChoice, type EngineSetting, formatTable, type ThreadsSetting } from './engine-choice.js';
import { Labels, readLabelsFile } from './labels.js';
import { FramePipeline } from './pipeline.js';
import { dequantize, type OutputArray, topK } from './postprocess.js';
import { loadSharp, Preprocessor } from './preprocess/preprocess.js';
import { applyPixelMapping, type InputTensorArray } from './preprocess/quantize.js';
import { InferenceSession, type Slot } from './session.js';
import { EDGETPU_CUSTOM_OP, readModelFile } from './tflite-model.js';

/** Where inference runs. */
export type Backend = 'cpu' | 'edgetpu';

/**
 * Options of `Classifier`: the `model`, `inference` and `preprocess` sections
 * of the configuration (mapped in `config/options.ts`), whose schema holds
 * the bounds and defaults.
 */
export interface ClassifierOptions {
  /** The .tflite model; for the Edge TPU normally the `*_edgetpu.tflite` file. */
  readonly modelPath: string;
  /** Labels file (one per line, or `<index> <label>` lines); overrides labels embedded in the model's metadata. */
  readonly labelsPath?: string;
  /** `auto` (measure, see `chooseEngine`) or an engine: `tflite`, `tflite-xnnpack`, `litert-wasm`, `edgetpu`. */
  readonly engine: EngineSetting;
  /** Interpreter threads, at least 1, or `auto` (measure 1 … cores − 1). */
  readonly threads: ThreadsSetting;
  /** `cpu`, or `edgetpu` (Coral, through libedgetpu's external delegate; the same as engine `edgetpu`). */
  readonly delegate: Backend;
  /** The TFLite C library (`libtensorflowlite_c.so`); default the one bundled in tfjs-tflite-node (TFLite 2.9). */
  readonly library?: string;
  /** Where the engine choice is cached (JSON); null or absent: measured at every start. */
  readonly cacheFile?: string | null;
  /** libedgetpu `device` option: `usb`, `usb:0`, `pci:0`, …; default the first Edge TPU found. */
  readonly edgetpuDevice?: string;
  /** Path of libedgetpu; default `EDGE_CLASSIFIER_EDGETPU_LIB` or `libedgetpu.so.1`. */
  readonly edgetpuLibrary?: string;
  /** The CPU version of the model, used when the Edge TPU is unavailable (with a warning) instead of failing. */
  readonly cpuModelPath?: string;
  /** How frames are fitted to the input. */
  readonly resize: ResizeMode;
  /** Part of each encoded image to classify (replayed files, `classify --roi`); camera sources crop themselves. */
  readonly roi?: Roi;
  /** preprocess.mean/std; overrides the metadata's NormalizationOptions. */
  readonly normalization?: Normalization;
  /** preprocess.input_size: [height, width] for a model whose input has free height/width (default 224×224). */
  readonly inputSize?: readonly [number, number];
  /** Classes reported per frame, at least 1. */
  readonly topK: number;
  /** Minimum score of a reported class (a probability for softmax outputs), 0..1. */
  readonly threshold: number;
  /** Time `auto` may spend measuring engines, ms (default `MEASURE_BUDGET_MS`). */
  readonly measureBudgetMs?: number;
  readonly log?: Logger;
}

/**
 * A frame for `Classifier.pipeline`: encoded image bytes, or one raw frame
 * of the pixel format `raw` (I420 or RGB24, see `RawPictureFormat`), and a
 * name for messages (a file or `frame 17`).
 */
export interface PipelineFrame {
  readonly data: Uint8Array;
  readonly file?: string;
  readonly raw?: RawPictureFormat;
}

/**
 * Classifies encoded images with a TFLite image classifier: decode and
 * preprocess (sharp, main thread, libvips threads) straight into the engine's
 * input buffer, inference (the engine in a worker thread: TFLite C API with
 * or without XNNPACK, LiteRT.js, or the Edge TPU), dequantize and top-k of
 * the class-scores output (main thread).
 *
 * Lifecycle (the one `Lifecycle`): the constructor does no I/O; `start()`
 * reads and checks the model, chooses the engine and threads (measured and
 * cached for `auto`), reads the labels and opens the inference session;
 * `stop()` ends it (idempotent, safe after a failed start).
 *
 * Checks at start, before anything is loaded: the Edge TPU (engine or
 * delegate `edgetpu`): its library is checked and probed in a child process;
 * an unusable runtime or device falls back to `cpuModelPath` (one warning
 * naming the problem and the fix) or throws EdgeTpuUnavailableError; an
 * Edge-TPU-compiled model is replaced by `cpuModelPath` on the CPU; then the
 * model-compatibility check (`modelProblems`) throws naming every problem;
 * after loading, the runtime's tensor details must agree with the file's.
 *
 * `classify()` may be called again before the previous call resolved: the
 * calls share the session's slots, so the next image is decoded while the
 * previous one is in inference. `pipeline()` does the same for a stream of
 * frames, latest frame wins.
 */
export class Classifier implements Lifecycle {
  readonly name = 'classifier';
  private readonly log: Logger;
  private _labels: Labels | null = null;
  private _backend: Backend = 'cpu';
  private _modelPath: string;
  private _choice: EngineChoice | null = null;
  private _scoresIndex = 0;
  private preprocessor: Preprocessor | null = null;
  private session: InferenceSession | null = null;
  private running = false;
  private output: TensorDetails | null = null;
  private readonly scores = new Map<number, Float32Array>();
  private k: number;
  private threshold: number;
  /** Warnings logged at start (metadata problems, normalization, labels count, engines skipped, Edge TPU fallback). */
  readonly warnings: string[] = [];

  constructor(private readonly options: ClassifierOptions) {
    this.log = options.log ?? silentLogger();
    this._modelPath = options.modelPath;
    this.k = options.topK;
    this.threshold = options.threshold;
  }

  /**
   * Changes the top-k and the score threshold from the next classification
   * on (live settings over MQTT). `topK` a whole number 1..1000, `threshold`
   * a score in [0,1]; the configuration schema checks them first.
   */
  setOutput(o: { readonly topK?: number; readonly threshold?: number }): void {
    if (o.topK !== undefined) this.k = o.topK;
    if (o.threshold !== undefined) this.threshold = o.threshold;
  }

  /** Width and height of the model's image input in pixels; undefined before `start()`. */
  get inputSize(): { width: number; height: number } | undefined {
    const pre = this.preprocessor;
    return pre ? { width: pre.width, height: pre.height } : undefined;
  }

  /** Labels in class order ('' where a class has none); empty when neither a labels file nor metadata gives any. */
  get labels(): readonly string[] {
    return (this._labels?.entries ?? []).map((l) => l ?? '');
  }

  /** Where inference runs: `edgetpu` only when the delegate loaded. */
  get backend(): Backend {
    return this._backend;
  }

  /** The model file in use: `modelPath`, or `cpuModelPath` after a fallback. */
  get modelPath(): string {
    return this._modelPath;
  }

  /** The engine running the model (known after `start()`). */
  get engine(): EngineName {
    return this.session?.engine ?? 'tflite';
  }

  /** Interpreter threads in use (known after `start()`). */
  get threads(): number {
    return this.session?.threads ?? 0;
  }

  /** The runtime and its version, e.g. `TFLite 2.9.0` (known after `start()`). */
  get runtime(): string {
    return this.session?.runtime ?? '';
  }

  /** The engine choice: the measured table, or the cached one (null before `start()`). */
  get choice(): EngineChoice | null {
    return this._choice;
  }

  /** Position of the class-scores output among the model's outputs. */
  get scoresOutput(): number {
    return this._scoresIndex;
  }

  /** Loads everything; see the class description for the checks. Throws with an actionable message. */
  async start(): Promise<void> {
    if (this.session) return;
    const o = this.options;
    // The decoder before the model: a sharp that cannot load fails the start, not every frame.
    await loadSharp();
    let { bytes, info } = await readModelFile(o.modelPath);
    this._modelPath = o.modelPath;
    let delegate: DelegateDescriptor | undefined;

    if (o.delegate === 'edgetpu' || o.engine === 'edgetpu') {
      try {
        delegate = await edgeTpuDelegate({
          ...(o.edgetpuDevice !== undefined ? { device: o.edgetpuDevice } : {}),
          ...(o.edgetpuLibrary !== undefined ? { libraryPath: o.edgetpuLibrary } : {}),
        });
        await probeDelegate(o.modelPath, delegate, o.library);
        this._backend = 'edgetpu';
        if (!info.requires_edgetpu) {
          this.warn(
            `${o.modelPath} was not compiled with edgetpu_compiler (it has no ${EDGETPU_CUSTOM_OP}): the Edge TPU runs none of it, so inference stays on the CPU; use the *_edgetpu.tflite model`,
          );
        }
      } catch (err) {
        if (!(err instanceof EdgeTpuUnavailableError) || !o.cpuModelPath) throw err;
        delegate = undefined;
        ({ bytes, info } = await readModelFile(o.cpuModelPath));
        this.warn(`${err.message}. Running the CPU model ${o.cpuModelPath} instead`);
        this._modelPath = o.cpuModelPath;
      }
    }
    if (!delegate && info.requires_edgetpu) {
      if (o.cpuModelPath && this._modelPath !== o.cpuModelPath) {
        this.log.info({ model: o.modelPath, cpu_model: o.cpuModelPath }, 'model is compiled for the Edge TPU; using its CPU version');
        ({ bytes, info } = await readModelFile(o.cpuModelPath));
        this._modelPath = o.cpuModelPath;
      }
      if (info.requires_edgetpu) throw new Error(edgeTpuOnlyMessage(this._modelPath));
    }
    const problems = modelProblems(info, { edgeTpu: delegate !== undefined, normalizationConfigured: o.normalization !== undefined, inputSize: o.inputSize });
    if (problems.length > 0) throw new Error(problems.join('; '));
    for (const p of info.problems) this.warn(p.message);

    const fileInput = info.inputs[0] as TensorDetails;
    const input = effectiveInput(fileInput, o.inputSize);
    const free = hasFreeSize(fileInput);
    if (free)
      this.log.info(
        { model: this._modelPath, input: `[${input.shape.join(',')}]` },
        'the model input has a free height/width: resized to preprocess.input_size',
      );
    this._scoresIndex = scoresOutputIndex(info) ?? 0;
    const output = info.outputs[this._scoresIndex] as TensorDetails;
    if (this._scoresIndex !== 0) {
      this.log.info(
        { model: this._modelPath, output: this._scoresIndex, name: output.name },
        `class scores are output ${this._scoresIndex} ('${output.name}')`,
      );
    }
    const s = output.shape;
    const classes = s[s.length - 1] as number;
    const preprocessor = new Preprocessor(input, {
      resize: o.resize,
      ...(o.roi ? { roi: o.roi } : {}),
      ...(o.normalization ? { normalization: o.normalization } : {}),
      ...(info.metadata?.normalization ? { metadataNormalization: info.metadata.normalization } : {}),
      model: this._modelPath,
    });
    for (const w of preprocessor.warnings) this.warn(w);

    let labels: Labels;
    if (o.labelsPath) labels = await readLabelsFile(o.labelsPath);
    else if (info.metadata?.labels && this._scoresIndex === 0) {
      labels = new Labels(info.metadata.labels, `${this._modelPath} metadata (${info.metadata.labels_file ?? 'labels'})`);
    } else {
      labels = new Labels([], 'no labels');
      this.warn(`${this._modelPath} carries no labels and no labels file is set: classes are reported as "class <index>"`);
    }
    if (o.labelsPath && labels.length === 0) this.warn(`labels file ${o.labelsPath} holds no labels: classes are reported as "class <index>"`);
    if (labels.length > 0) {
      const mismatch = labels.checkClassCount(classes, `output '${output.name}' of ${this._modelPath}`);
      if (mismatch) this.warn(mismatch);
    }

    const load = {
      modelBytes: bytes,
      model: this._modelPath,
      threads: 1,
      ...(o.library ? { library: o.library } : {}),
      ...(free ? { inputShapes: new Map([[0, input.shape]]) } : {}),
    };
    let engine: EngineName;
    let threads: number;
    if (delegate) {
      engine = 'edgetpu';
      threads = o.threads === 'auto' ? 1 : o.threads;
    } else {
      const choice = await chooseEngine({
        load,
        engine: o.engine === 'edgetpu' ? 'auto' : o.engine,
        threads: o.threads,
        probe: [probeInput(preprocessor)],
        scores: { index: this._scoresIndex, dtype: output.dtype, scale: output.quantization[0], zero_point: output.quantization[1] },
        cacheFile: o.cacheFile ?? null,
        ...(o.measureBudgetMs !== undefined ? { budgetMs: o.measureBudgetMs } : {}),
      });
      for (const w of choice.warnings) this.warn(w);
      if (choice.table.length > 0) {
        this.log.info(
          { model: this._modelPath, engine: choice.engine, threads: choice.threads, cached: choice.cached },
          `inference engine ${choice.engine}, ${choice.threads} thread${choice.threads > 1 ? 's' : ''}${choice.cached ? ' (cached choice)' : ''}:\n${formatTable(choice.table)}`,
        );
      }
      this._choice = choice;
      engine = choice.engine;
      threads = choice.threads;
    }
    const session = await InferenceSession.open({ ...load, engine, threads, ...(delegate ? { delegate } : {}) });
    this.session = session;
    for (const n of session.notes) this.warn(n);
    const mismatch = runtimeMismatch(this._modelPath, input, session.inputs[0], output, session.outputs[this._scoresIndex], engine);
    if (mismatch) throw new Error(mismatch);
    this._labels = labels;
    this.preprocessor = preprocessor;
    this.output = output;
    this.running = true;
    this.log.info(
      {
        model: this._modelPath,
        backend: this._backend,
        engine,
        threads,
        runtime: session.runtime,
        input: `[${input.shape.join(',')}] ${input.dtype}`,
        output: `[${s.join(',')}] ${output.dtype}`,
        normalization: preprocessor.mapping.source,
        labels: labels.source,
      },
      'classifier ready',
    );
  }

  /**
   * Classifies one encoded image (JPEG, PNG, WebP, GIF, TIFF, AVIF), or with
   * `raw` one raw frame of that pixel format (converted straight into the
   * input tensor, no decoder involved); `file` names it in errors (a file
   * name or e.g. `frame 17`). Resolves to the top-k
   * classes at or above the threshold, highest score first (dequantized
   * scores: probabilities for softmax outputs), with stage timings in ms.
   * Rejects with FrameDecodeError for images that cannot be decoded, and with
   * an Error when called before `start()`, after `stop()`, or when inference
   * fails.
   */
  async classify(image: Uint8Array, file?: string, raw?: RawPictureFormat): Promise<Classification> {
    const session = this.session;
    if (!session || !this.running) throw new Error(`classify() on ${this._modelPath} called before start() or after stop()`);
    const t0 = performance.now();
    const slot = await session.acquire();
    try {
      const preprocessMs = await this.prepare(image, file, slot, raw);
      const inferenceMs = await this.infer(slot);
      return this.finish(slot, preprocessMs, inferenceMs, t0);
    } finally {
      session.release(slot);
    }
  }

  /**
   * A pipeline over this classifier (see `FramePipeline`): `offer(frame)`
   * hands over a frame; while one frame is in inference the next is decoded
   * into the other input buffer; a frame that waits while both are busy is
   * replaced by a newer one (counted in `stats().dropped`). `onResult` gets
   * each classification with its timings; `onError` a frame that could not
   * be decoded (FrameDecodeError) or classified.
   */
  pipeline<F extends PipelineFrame>(
    onResult: (frame: F, result: Classification) => void,
    onError: (frame: F, error: unknown) => void,
  ): FramePipeline<F, Slot, Classification> {
    const session = this.session;
    if (!session || !this.running) throw new Error(`pipeline() on ${this._modelPath} called before start() or after stop()`);
    const started = new Map<number, { t0: number; pre: number }>();
    return new FramePipeline<F, Slot, Classification>(
      {
        tryAcquire: () => (this.running ? session.tryAcquire() : null),
        release: (slot) => session.release(slot),
        prepare: async (frame, slot) => {
          const t0 = performance.now();
          const pre = await this.prepare(frame.data, frame.file, slot, frame.raw);
          started.set(slot.index, { t0, pre });
        },
        invoke: (slot) => this.infer(slot),
        finish: (_frame, slot, inferenceMs) => {
          const s = started.get(slot.index)!;
          return this.finish(slot, s.pre, inferenceMs, s.t0);
        },
      },
      onResult,
      onError,
    );
  }

  /** Stops the inference session; idempotent, safe after a failed `start()`. */
  async stop(): Promise<void> {
    this.running = false;
    this.preprocessor = null;
    const session = this.session;
    this.session = null;
    await session?.close();
  }

  /** Runs the model on a slot whose input is written; resolves with the time inside the engine, ms. */
  protected infer(slot: Slot): Promise<number> {
    const session = this.session;
    if (!session) return Promise.reject(new Error(`inference on ${this._modelPath} after stop()`));
    return session.invoke(slot);
  }

  /** Decodes `image` (or converts the raw frame) into the slot's input buffer; returns the time taken, ms. */
  private async prepare(image: Uint8Array, file: string | undefined, slot: Slot, raw?: RawPictureFormat): Promise<number> {
    const pre = this.preprocessor;
    if (!pre) throw new Error(`classify() on ${this._modelPath} called after stop()`);
    const t0 = performance.now();
    await pre.prepare(image, file, slot.inputs[0] as InputTensorArray, raw);
    return performance.now() - t0;
  }

  private finish(slot: Slot, preprocessMs: number, inferenceMs: number, t0: number): Classification {
    const t2 = performance.now();
    const [scale, zeroPoint] = this.output!.quantization;
    let buffer = this.scores.get(slot.index);
    if (!buffer) {
      buffer = new Float32Array(slot.outputs[this._scoresIndex]!.length);
      this.scores.set(slot.index, buffer);
    }
    const scores = dequantize(slot.outputs[this._scoresIndex] as OutputArray, scale, zeroPoint, buffer);
    const classes = topK(scores, this.k, this.threshold, this._labels ?? undefined);
    const t3 = performance.now();
    return { classes, timings: { preprocess_ms: preprocessMs, inference_ms: inferenceMs, postprocess_ms: t3 - t2, total_ms: t3 - t0 } };
  }

  private warn(message: string): void {
    this.warnings.push(message);
    this.log.warn(message);
  }
}

/**
 * The input the engines are compared on at start: a deterministic picture
 * (smooth colour gradients with a checkerboard, so that a model's features
 * respond), mapped into the input's dtype like a frame.
 */
function probeInput(pre: Preprocessor): TensorArray {
  const rgb = new Uint8Array(pre.length);
  for (let y = 0, i = 0; y < pre.height; y++) {
    for (let x = 0; x < pre.width; x++, i += 3) {
      const check = ((x >> 4) + (y >> 4)) % 2 === 0 ? 40 : 0;
      rgb[i] = Math.min(255, Math.round((255 * x) / pre.width) + check);
      rgb[i + 1] = Math.min(255, Math.round((255 * y) / pre.height) + check);
      rgb[i + 2] = Math.round(128 + 100 * Math.sin((x + y) / 9));
    }
  }
  return applyPixelMapping(rgb, pre.mapping) as TensorArray;
}

/**
 * Where the runtime's tensor details disagree with the file's for the input
 * or the scores output (dtype, shape, scale and zero point; LiteRT.js reports
 * no quantization), as a sentence; null when they agree.
 */
function runtimeMismatch(
  model: string,
  input: TensorDetails,
  rtInput: { shape: number[]; dtype: string; quantization: { scale: number; zero_point: number } } | undefined,
  output: TensorDetails,
  rtOutput: { shape: number[]; dtype: string; quantization: { scale: number; zero_point: number } } | undefined,
  engine: EngineName,
): string | null {
  for (const [file, rt, what] of [
    [input, rtInput, 'input'],
    [output, rtOutput, 'output'],
  ] as const) {
    if (!rt) return `${model}: the ${engine} runtime reports no ${what} '${file.name}'`;
    const q = engine === 'litert-wasm' ? '' : ` scale ${rt.quantization.scale} zero point ${rt.quantization.zero_point}`;
    const sameQ =
      engine === 'litert-wasm' ||
      (Math.fround(rt.quantization.scale) === Math.fround(file.quantization[0]) && rt.quantization.zero_point === file.quantization[1]);
    if (rt.dtype !== file.dtype || rt.shape.join(',') !== file.shape.join(',') || !sameQ) {
      return `${model}: the ${engine} runtime reports ${what} '${file.name}' as [${rt.shape.join(',')}] ${rt.dtype}${q} but the file says [${file.shape.join(',')}] ${file.dtype}${
        q ? ` scale ${file.quantization[0]} zero point ${file.quantization[1]}` : ''
      }`;
    }
  }
  return null;
}
