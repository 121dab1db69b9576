import { readFile } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { addonPath, type DelegateDescriptor } from './delegate.js';
import { EDGETPU_CUSTOM_OP } from './tflite-model.js';
import type { OutputArray } from './postprocess.js';

/** A tensor as the TFLite runtime reports it after allocation. */
export interface RuntimeTensorInfo {
  /** Position among the interpreter's inputs (or outputs). */
  readonly id: number;
  readonly name: string;
  /** e.g. [1,224,224,3]. */
  readonly shape: number[];
  /** The binding's type name: `uint8`, `int8`, `float32`, `int32`, `int16`, … */
  readonly dtype: string;
}

/** Typed arrays accepted as the input tensor. */
export type InputArray = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array;

/** The result of one inference. */
export interface InferResult {
  /** A copy of the first output tensor, in its dtype (e.g. Uint8Array of 1001 quantized scores). */
  readonly output: OutputArray;
  /** Copies of every output tensor, in the interpreter's output order. */
  readonly outputs: OutputArray[];
  /** Time spent in the interpreter's invoke(), measured in the worker (ms). */
  readonly inference_ms: number;
  /** The input array given to `infer`, handed back (its buffer was transferred to the worker and back) for reuse. */
  readonly input: InputArray;
}

/** Options of `InterpreterRunner.open`: give `modelPath` or `modelBytes` (bytes win; the path then names the model in messages). */
export interface RunnerOptions {
  readonly modelPath?: string;
  /** The whole .tflite file; its buffer is transferred to the worker when it is not shared with other data. */
  readonly modelBytes?: Uint8Array;
  /** Interpreter threads (TFLite `num_threads`); default 2. */
  readonly threads?: number;
  /** External delegate (see `edgeTpuDelegate`); check it before passing it here. */
  readonly delegate?: DelegateDescriptor;
}

const TYPED_ARRAYS: Record<string, new (n: number) => InputArray> = {
  uint8: Uint8Array,
  int8: Int8Array,
  int16: Int16Array,
  int32: Int32Array,
  float32: Float32Array,
};

/**
 * Why `model` cannot run on this runtime because of the custom op `op`: for
 * `edgetpu-custom-op`, that it was compiled for the Edge TPU and needs it;
 * for any other op, that this runtime (builtin ops only) lacks it.
 */
export function customOpMessage(op: string, model: string): string {
  if (op === EDGETPU_CUSTOM_OP) {
    return `${model} was compiled for the Edge TPU (it holds the custom op ${EDGETPU_CUSTOM_OP}), so it needs the Edge TPU: set inference.delegate to edgetpu, or run the CPU version of the model (the same model before edgetpu_compiler)`;
  }
  return `${model} uses the custom op '${op}', which this TFLite runtime does not provide (only builtin ops are available): re-convert the model without custom ops`;
}

/**
 * Turns the binding's error text into a sentence about `model`:
 * "Failed to create tflite model" → `<model> is not a valid TFLite model`;
 * "Encountered unresolved custom op: X" → for `edgetpu-custom-op`, that the
 * model was compiled for the Edge TPU and needs it; for another op, that
 * this runtime lacks it; anything else → `<model> could not be loaded by
 * TFLite: <first line>`.
 */
export function describeLoadError(message: string, model: string): string {
  if (/Failed to create tflite model/i.test(message)) {
    return `${model} is not a valid TFLite model (TFLite could not read its flatbuffer)`;
  }
  const custom = /unresolved custom op: ([^\s.]+(?:\.[^\s.]+)*)\.?/i.exec(message);
  if (custom) return customOpMessage(custom[1]!, model);
  const first = message.split('\n').find((l) => l.trim() !== '') ?? message;
  return `${model} could not be loaded by TFLite: ${first.trim()}`;
}

/**
 * Runs a TFLite interpreter in a `worker_threads` worker so that the main
 * thread (MQTT keepalives, GPIO, signals) is never blocked by the synchronous
 * `infer()`. The worker is the only realm that loads the native addon.
 *
 * One inference at a time: a second `infer()` while one is running rejects.
 * If the worker dies (an uncaught error, or it exits), the pending inference
 * rejects and every later call rejects; open a new runner to recover. A
 * native crash (SIGSEGV) inside TFLite ends the whole process, which is why
 * delegates are checked before they reach here (`edgeTpuDelegate`,
 * `probeDelegate`).
 */
export class InterpreterRunner {
  private nextId = 1;
  private pending: { id: number; resolve: (r: InferResult) => void; reject: (e: Error) => void } | null = null;
  private failure: string | null = null;
  private closed = false;
  private readonly inputType: (new (n: number) => InputArray) | undefined;
  private readonly inputLength: number;

  private constructor(
    private readonly worker: Worker,
    /** The model's name in messages (its path, or `model bytes`). */
    readonly model: string,
    readonly inputs: RuntimeTensorInfo[],
    readonly outputs: RuntimeTensorInfo[],
  ) {
    const first = inputs[0];
    this.inputType = first ? TYPED_ARRAYS[first.dtype] : undefined;
    this.inputLength = first ? first.shape.reduce((a, b) => a * b, 1) : 0;
    worker.on('message', (msg: WorkerMessage) => this.onMessage(msg));
    worker.on('error', (err) => this.fail(`the TFLite worker for ${this.model} failed: ${err.message}`));
    worker.on('exit', (code) => {
      if (!this.closed) this.fail(`the TFLite worker for ${this.model} exited unexpectedly (code ${code})`);
    });
  }

  /**
   * Starts a worker, loads the model with `threads` interpreter threads and
   * the optional delegate, and resolves once tensors are allocated. Rejects
   * with an Error whose message says what is wrong with the model (see
   * `describeLoadError`), or that the file cannot be read.
   */
  static async open(options: RunnerOptions): Promise<InterpreterRunner> {
    const model = options.modelPath ?? 'model bytes';
    let bytes = options.modelBytes;
    if (!bytes) {
      if (!options.modelPath) throw new Error('InterpreterRunner.open needs modelPath or modelBytes');
      try {
        bytes = await readFile(options.modelPath);
      } catch (err) {
        throw new Error(`cannot read the model file ${options.modelPath}: ${(err as Error).message}`, { cause: err });
      }
    }
    // Hand the worker an ArrayBuffer of exactly the model: transfer it when it is ours alone, else copy.
    const owned = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer;
    const modelBuffer = owned ? (bytes.buffer as ArrayBuffer) : bytes.slice().buffer;
    const threads = options.threads ?? 2;
    if (!Number.isInteger(threads) || threads < 1) throw new Error(`inference threads must be a positive integer, got ${threads}`);
    const url = new URL('./worker' + (import.meta.url.endsWith('.ts') ? '.ts' : '.js'), import.meta.url);
    const worker = new Worker(url, {
      workerData: { addon: addonPath(), model: modelBuffer, threads, ...(options.delegate ? { delegate: options.delegate } : {}) },
      transferList: [modelBuffer],
    });
    const ready = await new Promise<{ inputs: RuntimeTensorInfo[]; outputs: RuntimeTensorInfo[] }>((resolve, reject) => {
      const cleanup = (): void => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      const onMessage = (msg: WorkerMessage): void => {
        if (msg.type === 'ready') {
          cleanup();
          resolve(msg);
        } else if (msg.type === 'load-error') {
          cleanup();
          void worker.terminate();
          reject(new Error(describeLoadError(msg.message, model)));
        }
      };
      const onError = (err: Error): void => {
        cleanup();
        void worker.terminate();
        reject(new Error(`the TFLite worker for ${model} failed while loading it: ${err.message}`, { cause: err }));
      };
      const onExit = (code: number): void => {
        cleanup();
        reject(new Error(`the TFLite worker for ${model} exited while loading it (code ${code})`));
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
    });
    return new InterpreterRunner(worker, model, ready.inputs, ready.outputs);
  }

  /** True while an inference is running. */
  get busy(): boolean {
    return this.pending !== null;
  }

  /**
   * Runs one inference. `input` must be a typed array of the first input
   * tensor's dtype with exactly its element count (e.g. Uint8Array of
   * 150528 = 1×224×224×3, NHWC). Its buffer is transferred to the worker (no
   * copy; `input` is unusable until the result hands it back as
   * `result.input`) when the array owns its whole ArrayBuffer; otherwise it is
   * copied. Rejects when another inference is running, the runner is closed
   * or its worker died, the input does not match, or TFLite fails.
   */
  infer(input: InputArray): Promise<InferResult> {
    if (this.closed) return Promise.reject(new Error(`the interpreter for ${this.model} is closed`));
    if (this.failure) return Promise.reject(new Error(`the interpreter for ${this.model} is not running: ${this.failure}`));
    if (this.pending) {
      return Promise.reject(
        new Error(`inference on ${this.model} requested while another is running: run one frame at a time (await the previous infer())`),
      );
    }
    const tensor = this.inputs[0];
    if (!tensor || !this.inputType) {
      return Promise.reject(new Error(`${this.model} has no input tensor of a type this runner can feed (${tensor?.dtype ?? 'none'})`));
    }
    if (!(input instanceof this.inputType) || input.length !== this.inputLength) {
      return Promise.reject(
        new Error(
          `input for tensor '${tensor.name}' of ${this.model} is a ${input.constructor.name} of ${input.length} elements: expected a ${this.inputType.name} of ${this.inputLength} ([${tensor.shape.join(',')}] ${tensor.dtype})`,
        ),
      );
    }
    const id = this.nextId++;
    const transferable = input.byteOffset === 0 && input.byteLength === input.buffer.byteLength && input.buffer instanceof ArrayBuffer;
    return new Promise<InferResult>((resolve, reject) => {
      this.pending = { id, resolve, reject };
      try {
        this.worker.postMessage({ type: 'infer', id, input }, transferable ? [input.buffer as ArrayBuffer] : []);
      } catch (err) {
        this.pending = null;
        reject(new Error(`cannot send the input to the TFLite worker for ${this.model}: ${(err as Error).message}`));
      }
    });
  }

  /** Terminates the worker; a pending inference rejects. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const pending = this.pending;
    this.pending = null;
    pending?.reject(new Error(`the interpreter for ${this.model} was closed during inference`));
    await this.worker.terminate();
  }

  private onMessage(msg: WorkerMessage): void {
    const pending = this.pending;
    if (!pending || !('id' in msg) || msg.id !== pending.id) return;
    this.pending = null;
    if (msg.type === 'result') {
      pending.resolve({ output: msg.outputs[0]!, outputs: msg.outputs, inference_ms: msg.inference_ms, input: msg.input });
    } else if (msg.type === 'infer-error') {
      pending.reject(new Error(`inference on ${this.model} failed: ${msg.message.trim()}`));
    }
  }

  private fail(reason: string): void {
    if (this.failure) return;
    this.failure = reason;
    const pending = this.pending;
    this.pending = null;
    pending?.reject(new Error(reason));
  }
}

type WorkerMessage =
  | { type: 'ready'; inputs: RuntimeTensorInfo[]; outputs: RuntimeTensorInfo[] }
  | { type: 'load-error'; message: string }
  | { type: 'result'; id: number; outputs: OutputArray[]; inference_ms: number; input: InputArray }
  | { type: 'infer-error'; id: number; message: string; input: InputArray };
