import { performance } from 'node:perf_hooks';
import type { Lifecycle } from '../core/lifecycle.js';
import type { Logger } from '../core/log.js';
import { silentLogger } from '../core/log.js';
import type { Classification, Normalization, RawPictureFormat, ResizeMode, Roi, TensorDetails } from '../core/types.js';
import { edgeTpuOnlyMessage, modelProblems } from './compat.js';
import { type DelegateDescriptor, EdgeTpuUnavailableError, edgeTpuDelegate, probeDelegate } from './delegate.js';
import { InterpreterHost } from './host.js';
import { Labels, readLabelsFile } from './labels.js';
import { dequantize, topK } from './postprocess.js';
import { loadSharp, type PreparedInput, Preprocessor } from './preprocess/preprocess.js';
import type { InputTensorArray } from './preprocess/quantize.js';
import { EDGETPU_CUSTOM_OP, readModelFile } from './tflite-model.js';

/** Where inference runs. */
export type Backend = 'cpu' | 'edgetpu';

/**
 * Options of `Classifier`: the `model`, `inference` and `preprocess` sections
 * of the configuration (mapped in `config/options.ts`), whose schema holds
 * the bounds and defaults.
 */
export interface ClassifierOptions {
  /** The .tflite model; for `delegate: 'edgetpu'` normally the `*_edgetpu.tflite` file. */
  readonly modelPath: string;
  /** Labels file (one per line, or `<index> <label>` lines); overrides labels embedded in the model's metadata. */
  readonly labelsPath?: string;
  /** Interpreter threads, at least 1. */
  readonly threads: number;
  /** `cpu` or `edgetpu` (Coral, through libedgetpu's external delegate). */
  readonly delegate: Backend;
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
  /** Classes reported per frame, at least 1. */
  readonly topK: number;
  /** Minimum score of a reported class (a probability for softmax outputs), 0..1. */
  readonly threshold: number;
  readonly log?: Logger;
}

/**
 * Classifies encoded images with a TFLite image classifier: decode and
 * preprocess (sharp, main thread, libvips threads), inference (worker thread,
 * CPU or Edge TPU), dequantize and top-k (main thread).
 *
 * Lifecycle (the one `Lifecycle`): the constructor does no I/O; `start()`
 * reads and checks the model, chooses the backend, reads the labels and
 * starts its interpreter host (a worker thread); `stop()` stops the host
 * (idempotent, safe after a failed start). One `classify()` at a time.
 *
 * Checks at start, before anything is loaded: with `delegate: 'edgetpu'`, an
 * unusable Edge TPU runtime or device either falls back to `cpuModelPath`
 * (one warning naming the problem and the fix) or throws
 * EdgeTpuUnavailableError; an Edge-TPU-compiled model is replaced by
 * `cpuModelPath` on the CPU; then the model-compatibility check
 * (`modelProblems`: one RGB image input, class scores out, no custom op this
 * runtime lacks, a normalization for float inputs) throws naming every
 * problem; a labels count other than N is logged as a warning.
 */
export class Classifier implements Lifecycle {
  readonly name = 'classifier';
  private readonly log: Logger;
  private _labels: Labels | null = null;
  private _backend: Backend = 'cpu';
  private _modelPath: string;
  private preprocessor: Preprocessor | null = null;
  private host: InterpreterHost | null = null;
  private running = false;
  private output: TensorDetails | null = null;
  private scores: Float32Array = new Float32Array(0);
  private spare: InputTensorArray | null = null;
  private busy = false;
  private k: number;
  private threshold: number;
  /** Warnings logged at start (metadata problems, normalization, labels count, Edge TPU fallback). */
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

  /** Labels in class order ('' where a class has none); empty when neither a labels file nor metadata gives any. */
  get labels(): readonly string[] {
    return (this._labels?.entries ?? []).map((l) => l ?? '');
  }

  /** Where inference runs: `edgetpu` only when the delegate loaded. */
  get backend(): Backend {
    return this._backend;
  }

  /**
   * What runs the model, for stats and logs: `tflite-cpu` (the TFLite C
   * API's CPU kernels) or `tflite-edgetpu` (with the Edge TPU delegate).
   */
  get engine(): string {
    return this._backend === 'edgetpu' ? 'tflite-edgetpu' : 'tflite-cpu';
  }

  /** Interpreter threads. */
  get threads(): number {
    return this.options.threads;
  }

  /** The model file in use: `modelPath`, or `cpuModelPath` after a fallback. */
  /** Width and height of the model's image input in pixels; undefined before `start()`. */
  get inputSize(): { width: number; height: number } | undefined {
    const pre = this.preprocessor;
    return pre ? { width: pre.width, height: pre.height } : undefined;
  }

  get modelPath(): string {
    return this._modelPath;
  }

  /** Loads everything; see the class description for the checks. Throws with an actionable message. */
  async start(): Promise<void> {
    if (this.host) return;
    const o = this.options;
    // The decoder before the model: a sharp that cannot load fails the start, not every frame.
    await loadSharp();
    let { bytes, info } = await readModelFile(o.modelPath);
    this._modelPath = o.modelPath;
    let delegate: DelegateDescriptor | undefined;

    if (o.delegate === 'edgetpu') {
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
      if (info.requires_edgetpu) throw new Error(edgeTpuOnlyMessage(this._modelPath));
    }
    const problems = modelProblems(info, { edgeTpu: delegate !== undefined, normalizationConfigured: o.normalization !== undefined });
    if (problems.length > 0) throw new Error(problems.join('; '));
    for (const p of info.problems) this.warn(p.message);

    const output = info.outputs[0] as TensorDetails;
    const s = output.shape;
    const classes = s[s.length - 1] as number;
    const preprocessor = new Preprocessor(info.inputs[0] as TensorDetails, {
      resize: o.resize,
      ...(o.roi ? { roi: o.roi } : {}),
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

    const host = new InterpreterHost({
      modelBytes: bytes,
      modelPath: this._modelPath,
      threads: o.threads,
      ...(delegate ? { delegate } : {}),
    });
    this.host = host;
    await host.start();
    const rt = host.inputs[0];
    const input = info.inputs[0] as TensorDetails;
    if (!rt || rt.dtype !== input.dtype || rt.shape.join(',') !== input.shape.join(',')) {
      throw new Error(
        `${this._modelPath}: the TFLite runtime reports input ${rt ? `[${rt.shape.join(',')}] ${rt.dtype}` : 'none'} but the file says [${input.shape.join(',')}] ${input.dtype}`,
      );
    }
    this._labels = labels;
    this.preprocessor = preprocessor;
    this.output = output;
    this.scores = new Float32Array(classes);
    this.running = true;
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
   * Classifies one encoded image (JPEG, PNG, WebP, GIF, TIFF, AVIF), or with
   * `raw` one raw frame of that pixel format (converted straight into the
   * input tensor, no decoder involved); `file` names it in errors (a file
   * name or e.g. `frame 17`). Resolves to the top-k
   * classes at or above the threshold, highest score first (dequantized
   * scores: probabilities for softmax outputs), with stage timings in ms.
   * Rejects with FrameDecodeError for images that cannot be decoded, and with
   * an Error when called before `start()`, after `stop()`, while another
   * classification runs, or when inference fails.
   */
  async classify(image: Uint8Array, file?: string, raw?: RawPictureFormat): Promise<Classification> {
    const pre = this.preprocessor;
    const host = this.host;
    if (!pre || !host || !this.running) throw new Error(`classify() on ${this._modelPath} called before start() or after stop()`);
    if (this.busy) throw new Error(`classify() on ${this._modelPath} called while another classification runs: one frame at a time`);
    this.busy = true;
    try {
      const t0 = performance.now();
      const into = this.spare;
      this.spare = null;
      let prepared: PreparedInput;
      try {
        prepared = await pre.prepare(image, file, into ?? undefined, raw);
      } catch (err) {
        this.spare = into;
        throw err;
      }
      const t1 = performance.now();
      const result = await host.infer(prepared.tensor);
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

  /** Stops the interpreter host; idempotent, safe after a failed `start()`. */
  async stop(): Promise<void> {
    this.running = false;
    this.preprocessor = null;
    this.spare = null;
    await this.host?.stop();
  }

  private warn(message: string): void {
    this.warnings.push(message);
    this.log.warn(message);
  }
}
