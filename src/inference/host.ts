import { readFile } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { unreadableFileError } from '../core/errors.js';
import type { Lifecycle } from '../core/lifecycle.js';
import { customOpMessage } from './compat.js';
import { addonPath, type DelegateDescriptor } from './delegate.js';
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

/** Options of `InterpreterHost`: give `modelPath` or `modelBytes` (bytes win; the path then names the model in messages). */
export interface HostOptions {
  readonly modelPath?: string;
  /** The whole .tflite file; its buffer is transferred to the worker when it is not shared with other data. */
  readonly modelBytes?: Uint8Array;
  /** Interpreter threads (TFLite `num_threads`), at least 1. */
  readonly threads: number;
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
 * Hosts a TFLite interpreter in a `worker_threads` worker so that the main
 * thread (MQTT keepalives, GPIO, signals) is never blocked by the synchronous
 * `infer()`. The worker is the only realm that loads the native addon.
 *
 * Lifecycle: the constructor does no I/O; `start()` reads the model (when
 * given a path), starts the worker, loads the model with `threads`
 * interpreter threads and the optional delegate, and resolves once tensors
 * are allocated. A start is never cut short: terminating a worker while the
 * addon builds its interpreter aborts the whole process ("Entering the V8 API
 * without proper locking"), so a cancelled start-up waits for the load to
 * finish and then `stop()` terminates the worker. `stop()` is idempotent.
 *
 * One inference at a time: a second `infer()` while one is running rejects.
 * If the worker dies (an uncaught error, or it exits), the pending inference
 * rejects and every later call rejects; start a new host to recover. A native
 * crash (SIGSEGV) inside TFLite ends the whole process, which is why
 * delegates are checked before they reach here (`edgeTpuDelegate`,
 * `probeDelegate`).
 */
export class InterpreterHost implements Lifecycle {
  readonly name = 'interpreter';
  /** The model's name in messages (its path, or `model bytes`). */
  readonly model: string;
  private worker: Worker | undefined;
  private tensors: { inputs: RuntimeTensorInfo[]; outputs: RuntimeTensorInfo[] } | undefined;
  private nextId = 1;
  private pending: { id: number; resolve: (r: InferResult) => void; reject: (e: Error) => void } | null = null;
  private failure: string | null = null;
  private stopped = false;
  private inputType: (new (n: number) => InputArray) | undefined;
  private inputLength = 0;

  constructor(private readonly options: HostOptions) {
    this.model = options.modelPath ?? 'model bytes';
  }

  /** The interpreter's input tensors as the runtime reports them; empty before `start()`. */
  get inputs(): readonly RuntimeTensorInfo[] {
    return this.tensors?.inputs ?? [];
  }

  /** The interpreter's output tensors; empty before `start()`. */
  get outputs(): readonly RuntimeTensorInfo[] {
    return this.tensors?.outputs ?? [];
  }

  /**
   * Loads the model in a new worker. Rejects with an Error whose message says
   * what is wrong with the model (see `describeLoadError`), or that the file
   * cannot be read.
   */
  async start(): Promise<void> {
    if (this.worker || this.stopped) return;
    const options = this.options;
    const model = this.model;
    let bytes = options.modelBytes;
    if (!bytes) {
      if (!options.modelPath) throw new Error('InterpreterHost needs modelPath or modelBytes');
      try {
        bytes = await readFile(options.modelPath);
      } catch (err) {
        throw unreadableFileError('the model file', options.modelPath, err);
      }
    }
    // Hand the worker an ArrayBuffer of exactly the model: transfer it when it is ours alone, else copy.
    const owned = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer;
    const modelBuffer = owned ? (bytes.buffer as ArrayBuffer) : bytes.slice().buffer;
    const url = new URL(`./worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);
    const worker = new Worker(url, {
      workerData: { addon: addonPath(), model: modelBuffer, threads: options.threads, ...(options.delegate ? { delegate: options.delegate } : {}) },
      transferList: [modelBuffer],
    });
    this.worker = worker;
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
          reject(new Error(describeLoadError(msg.message, model)));
        }
      };
      const onError = (err: Error): void => {
        cleanup();
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
    this.tensors = ready;
    const first = ready.inputs[0];
    this.inputType = first ? TYPED_ARRAYS[first.dtype] : undefined;
    this.inputLength = first ? first.shape.reduce((a, b) => a * b, 1) : 0;
    worker.on('message', (msg: WorkerMessage) => this.onMessage(msg));
    worker.on('error', (err) => this.fail(`the TFLite worker for ${model} failed: ${err.message}`));
    worker.on('exit', (code) => {
      if (!this.stopped) this.fail(`the TFLite worker for ${model} exited unexpectedly (code ${code})`);
    });
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
    const worker = this.worker;
    if (this.stopped || !worker || !this.tensors) return Promise.reject(new Error(`the interpreter for ${this.model} is not started or stopped`));
    if (this.failure) return Promise.reject(new Error(`the interpreter for ${this.model} is not running: ${this.failure}`));
    if (this.pending) {
      return Promise.reject(new Error(`inference on ${this.model} requested while another is running: run one frame at a time (await the previous infer())`));
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
        worker.postMessage({ type: 'infer', id, input }, transferable ? [input.buffer as ArrayBuffer] : []);
      } catch (err) {
        this.pending = null;
        reject(new Error(`cannot send the input to the TFLite worker for ${this.model}: ${(err as Error).message}`));
      }
    });
  }

  /** Terminates the worker; a pending inference rejects. Idempotent; safe before and after a failed `start()`. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const pending = this.pending;
    this.pending = null;
    pending?.reject(new Error(`the interpreter for ${this.model} was stopped during inference`));
    await this.worker?.terminate();
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
