import { performance } from 'node:perf_hooks';
import type { Logger } from '../service/log.js';
import { silentLogger } from '../service/log.js';
import { Preprocessor, type ResizeMode } from '../preprocess/preprocess.js';
import type { InputTensorArray } from '../preprocess/quantize.js';
import { EdgeTpuUnavailableError, edgeTpuDelegate, probeDelegate, type DelegateDescriptor } from './delegate.js';
import { Labels, readLabelsFile } from './labels.js';
import { checkScoresOutput, dequantize, topK } from './postprocess.js';
import { InterpreterRunner, customOpMessage } from './runner.js';
import { EDGETPU_CUSTOM_OP, readModelFile } from './tflite-model.js';
import type { Classification, ModelInfo, Normalization, TensorDetails } from './types.js';

/** Where inference runs. */
export type Backend = 'cpu' | 'edgetpu';

/** Options of `Classifier` (the `inference`/`preprocess` parts of the daemon's configuration). */
export interface ClassifierOptions {
  /** The .tflite model; for `delegate: 'edgetpu'` normally the `*_edgetpu.tflite` file. */
  readonly modelPath: string;
  /** Labels file (one per line, or `<index> <label>` lines); overrides labels embedded in the model's metadata. */
  readonly labelsPath?: string;
  /** Interpreter threads; default 2. */
  readonly threads?: number;
  /** `cpu` (default) or `edgetpu` (Coral, through libedgetpu's external delegate). */
  readonly delegate?: Backend;
  /** libedgetpu `device` option: `usb`, `usb:0`, `pci:0`, …; default the first Edge TPU found. */
  readonly edgetpuDevice?: string;
  /** Path of libedgetpu; default `EDGE_CLASSIFIER_EDGETPU_LIB` or `libedgetpu.so.1`. */
  readonly edgetpuLibrary?: string;
  /** The CPU version of the model, used when the Edge TPU is unavailable (with a warning) instead of failing. */
  readonly cpuModelPath?: string;
  /** How frames are fitted to the input; default `stretch`. */
  readonly resize?: ResizeMode;
  /** preprocess.mean/std; overrides the metadata's NormalizationOptions. */
  readonly normalization?: Normalization;
  /** Classes reported per frame; default 5. */
  readonly topK?: number;
  /** Minimum score of a reported class (a probability for softmax outputs); default 0. */
  readonly threshold?: number;
  readonly log?: Logger;
}

/**
 * Classifies encoded images with a TFLite image classifier: decode and
 * preprocess (sharp, main thread, libvips threads), inference (worker thread,
 * CPU or Edge TPU), dequantize and top-k (main thread).
 *
 * Lifecycle: the constructor does no I/O; `start()` reads and checks the
 * model, chooses the backend, reads the labels and starts the interpreter;
 * `stop()` ends the worker (idempotent). `Classifier.open(options)` is
 * `new` + `start()`, `close()` is `stop()`. One `classify()` at a time.
 *
 * Checks at start, before anything is loaded: an Edge-TPU-compiled model
 * (custom op `edgetpu-custom-op`) is refused on the CPU unless `cpuModelPath`
 * names its CPU version; with `delegate: 'edgetpu'`, an unusable Edge TPU
 * runtime or device either falls back to `cpuModelPath` (one warning naming
 * the problem and the fix) or throws EdgeTpuUnavailableError; the input must
 * be [1,H,W,3] uint8/int8/float32 and the first output [1,N] or [N]
 * uint8/int8/float32; a labels count other than N is logged as a warning.
 */
export class Classifier {
  private readonly log: Logger;
  private _info: ModelInfo | null = null;
  private _labels: Labels | null = null;
  private _backend: Backend = 'cpu';
  private _modelPath: string;
  private preprocessor: Preprocessor | null = null;
  private runner: InterpreterRunner | null = null;
  private output: TensorDetails | null = null;
  private scores: Float32Array = new Float32Array(0);
  private spare: InputTensorArray | null = null;
  private busy = false;
  private readonly k: number;
  private readonly threshold: number;
  /** Warnings logged at start (metadata problems, normalization, labels count, Edge TPU fallback). */
  readonly warnings: string[] = [];

  constructor(private readonly options: ClassifierOptions) {
    this.log = options.log ?? silentLogger();
    this._modelPath = options.modelPath;
    this.k = options.topK ?? 5;
    this.threshold = options.threshold ?? 0;
    if (!Number.isInteger(this.k) || this.k < 1) throw new Error(`inference.top_k must be a positive integer, got ${options.topK}`);
    if (!Number.isFinite(this.threshold)) throw new Error(`inference.threshold must be a number, got ${options.threshold}`);
  }

  /** `new Classifier(options)` then `start()`. */
  static async open(options: ClassifierOptions): Promise<Classifier> {
    const classifier = new Classifier(options);
    await classifier.start();
    return classifier;
  }

  /** What the model file says (of the model actually used). Throws before `start()`. */
  get info(): ModelInfo {
    if (!this._info) throw new Error('Classifier.info read before start()');
    return this._info;
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

  /** Loads everything; see the class description for the checks. Throws with an actionable message. */
  async start(): Promise<void> {
    if (this.runner) return;
    const o = this.options;
    let { bytes, info } = await readModelFile(o.modelPath);
    this._modelPath = o.modelPath;
    let delegate: DelegateDescriptor | undefined;

    if ((o.delegate ?? 'cpu') === 'edgetpu') {
      try {
        delegate = await edgeTpuDelegate({
          ...(o.edgetpuDevice !== undefined ? { device: o.edgetpuDevice } : {}),
          ...(o.edgetpuLibrary !== undefined ? { libraryPath: o.edgetpuLibrary } : {}),
        });
        await probeDelegate(o.modelPath, delegate);
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
      if (info.requires_edgetpu) {
        throw new Error(
          `${this._modelPath} was compiled for the Edge TPU (it holds the custom op ${EDGETPU_CUSTOM_OP}) and cannot run on the CPU: set inference.delegate to edgetpu, or use the model's CPU version (the .tflite before edgetpu_compiler, usually the same name without _edgetpu)`,
        );
      }
    }
    const unsupported = info.custom_ops.filter((op) => !(op === EDGETPU_CUSTOM_OP && delegate));
    if (unsupported.length > 0) throw new Error(customOpMessage(unsupported[0]!, this._modelPath));
    for (const p of info.problems) this.warn(p.message);

    if (info.inputs.length < 1) throw new Error(`${this._modelPath} has no input tensor`);
    const output = info.outputs[0];
    if (!output) throw new Error(`${this._modelPath} has no output tensor`);
    const s = output.shape;
    const classes = checkScoresOutput(output);
    const preprocessor = new Preprocessor(info.inputs[0]!, {
      ...(o.resize ? { resize: o.resize } : {}),
      ...(o.normalization ? { normalization: o.normalization } : {}),
      ...(info.metadata?.normalization ? { metadataNormalization: info.metadata.normalization } : {}),
      model: this._modelPath,
    });
    for (const w of preprocessor.warnings) this.warn(w);

    let labels: Labels;
    if (o.labelsPath) labels = await readLabelsFile(o.labelsPath);
    else if (info.metadata?.labels) {
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

    const runner = await InterpreterRunner.open({
      modelBytes: bytes,
      modelPath: this._modelPath,
      threads: o.threads ?? 2,
      ...(delegate ? { delegate } : {}),
    });
    const rt = runner.inputs[0];
    const input = info.inputs[0]!;
    if (!rt || rt.dtype !== input.dtype || rt.shape.join(',') !== input.shape.join(',')) {
      await runner.close();
      throw new Error(
        `${this._modelPath}: the TFLite runtime reports input ${rt ? `[${rt.shape.join(',')}] ${rt.dtype}` : 'none'} but the file says [${input.shape.join(',')}] ${input.dtype}`,
      );
    }
    this._info = info;
    this._labels = labels;
    this.preprocessor = preprocessor;
    this.output = output;
    this.scores = new Float32Array(classes);
    this.runner = runner;
    this.log.info(
      {
        model: this._modelPath,
        backend: this._backend,
        input: `[${input.shape.join(',')}] ${input.dtype}`,
        output: `[${s.join(',')}] ${output.dtype}`,
        normalization: preprocessor.mapping.source,
        labels: labels.source,
      },
      'classifier ready',
    );
  }

  /**
   * Classifies one encoded image (JPEG, PNG, WebP, GIF, TIFF, AVIF); `file`
   * names it in errors (a file name or e.g. `frame 17`). Resolves to the top-k
   * classes at or above the threshold, highest score first (dequantized
   * scores: probabilities for softmax outputs), with stage timings in ms.
   * Rejects with FrameDecodeError for images that cannot be decoded, and with
   * an Error when called before `start()`, after `stop()`, while another
   * classification runs, or when inference fails.
   */
  async classify(image: Uint8Array, file?: string): Promise<Classification> {
    const pre = this.preprocessor;
    const runner = this.runner;
    if (!pre || !runner) throw new Error(`classify() on ${this._modelPath} called before start() or after stop()`);
    if (this.busy) throw new Error(`classify() on ${this._modelPath} called while another classification runs: one frame at a time`);
    this.busy = true;
    try {
      const t0 = performance.now();
      const into = this.spare;
      this.spare = null;
      let prepared;
      try {
        prepared = await pre.prepare(image, file, into ?? undefined);
      } catch (err) {
        this.spare = into;
        throw err;
      }
      const t1 = performance.now();
      const result = await runner.infer(prepared.tensor);
      const back = result.input;
      if (back.length === pre.length && (back instanceof Uint8Array || back instanceof Int8Array || back instanceof Float32Array)) {
        this.spare = back;
      }
      const t2 = performance.now();
      const [scale, zeroPoint] = this.output!.quantization;
      const scores = dequantize(result.output, scale, zeroPoint, this.scores);
      const classes = topK(scores, this.k, this.threshold, this._labels ?? undefined);
      const t3 = performance.now();
      return {
        classes,
        timings: { preprocess_ms: t1 - t0, inference_ms: result.inference_ms, postprocess_ms: t3 - t2, total_ms: t3 - t0 },
      };
    } finally {
      this.busy = false;
    }
  }

  /** Stops the interpreter worker; idempotent. */
  async stop(): Promise<void> {
    const runner = this.runner;
    this.runner = null;
    this.preprocessor = null;
    this.spare = null;
    if (runner) await runner.close();
  }

  /** Same as `stop()`. */
  close(): Promise<void> {
    return this.stop();
  }

  private warn(message: string): void {
    this.warnings.push(message);
    this.log.warn(message);
  }
}
