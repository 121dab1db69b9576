import { fork } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { DelegateDescriptor } from './delegate.js';
import { type EngineLoadOptions, type EngineName, type TensorArray, typedArrayFor } from './engine-api.js';
import type { Candidate, MeasureResult } from './inference-worker.js';
import type { RuntimeTensor } from './tflite-c.js';

/** URL of a sibling module, as .ts when running from source (tests) and .js when built. */
function sibling(name: string): URL {
  return new URL(`./${name}${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);
}

/** Young-generation size of the inference worker's V8 heap, MiB (Node's default is 3 × 16). */
const WORKER_YOUNG_GENERATION_MB = 4;

/** Threads the machine offers (`os.availableParallelism()`): the upper end of `threads: auto`. */
export function machineCores(): number {
  return Math.max(1, availableParallelism());
}

/** Options of `InferenceSession.open`. */
export interface SessionOptions {
  /** The whole .tflite file. */
  readonly modelBytes: Uint8Array;
  /** The model's name in messages (its path). */
  readonly model: string;
  /** The engine to run (see `ENGINE_NAMES`); choose with `chooseEngine` for `auto`. */
  readonly engine: EngineName;
  /** Interpreter threads, ≥ 1. */
  readonly threads: number;
  /** TFLite C library (default: the bundled TFLite 2.9). */
  readonly library?: string;
  /** New shapes of inputs (by position) before allocation, e.g. a free H/W input set to [1,224,224,3]. */
  readonly inputShapes?: ReadonlyMap<number, readonly number[]>;
  /** The Edge TPU delegate (engine `edgetpu`), checked beforehand (`edgeTpuDelegate` and a child-process probe). */
  readonly delegate?: DelegateDescriptor;
  /**
   * Input/output buffer sets (default 2): with 2, the inputs of frame N+1 are
   * written while frame N is in inference.
   */
  readonly slots?: number;
}

/** The engine could not open the model; `engine` names it. */
export class SessionLoadError extends Error {
  override readonly name = 'SessionLoadError';
  constructor(
    message: string,
    readonly engine: EngineName,
  ) {
    super(message);
  }
}

/**
 * One set of input and output buffers of a session (shared memory between
 * the main thread and the engine's worker). Write `inputs`, `invoke` the
 * slot, read `outputs` once it resolves; while a slot is invoked, only the
 * other slots may be written.
 */
export interface Slot {
  readonly index: number;
  /** One typed array per model input, in the input's dtype (e.g. Uint8Array of 150528 for [1,224,224,3] uint8). */
  readonly inputs: readonly TensorArray[];
  /** One typed array per model output; valid after `invoke` resolved, until the slot is invoked again. */
  readonly outputs: readonly TensorArray[];
}

/** Result of `InferenceSession.run`. */
export interface RunResult {
  /** Copies of every output, in the model's output order. */
  readonly outputs: TensorArray[];
  /** Time inside the engine's run (ms), measured in the worker. */
  readonly inference_ms: number;
}

/** Time a closing worker has to delete its interpreter and exit before it is terminated, ms. */
const CLOSE_GRACE_MS = 2000;

/**
 * A model loaded on one engine, in a worker thread, so that the main thread
 * (MQTT, GPIO, signals) never waits for inference. The generic way to run any
 * TFLite model:
 *
 * ```ts
 * const s = await InferenceSession.open({ modelBytes, model: 'm.tflite', engine: 'tflite-xnnpack', threads: 1 });
 * s.inputs[0]   // {name, shape: [1,224,224,3], dtype: 'uint8', quantization: {scale, zero_point}, bytes}
 * const { outputs, inference_ms } = await s.run([new Uint8Array(150528)]);
 * await s.close();
 * ```
 *
 * For a pipeline, `slots` (default 2) give buffer sets without copies:
 * `acquire()` a free slot, fill `slot.inputs`, `invoke(slot)`, read
 * `slot.outputs`, `release(slot)`. Invocations run one at a time in the order
 * given; the next starts in the worker as soon as the previous ends.
 *
 * If the worker dies, pending and later calls reject; open a new session.
 */
export class InferenceSession {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (ms: number) => void; reject: (e: Error) => void }>();
  private readonly free: Slot[];
  private readonly waiters: Array<(s: Slot) => void> = [];
  private failure: string | null = null;
  private closed = false;
  readonly slots: readonly Slot[];

  private constructor(
    private readonly worker: Worker,
    readonly model: string,
    readonly engine: EngineName,
    readonly threads: number,
    /** Tensors as the runtime reports them after allocation (quantization from the runtime; 0/0 from LiteRT.js). */
    readonly inputs: readonly RuntimeTensor[],
    readonly outputs: readonly RuntimeTensor[],
    /** `TFLite 2.9.0`, `LiteRT.js 2.5.3`. */
    readonly runtime: string,
    /** Things to tell the user (e.g. XNNPACK did not apply). */
    readonly notes: readonly string[],
    buffers: ReadonlyArray<{ inputs: SharedArrayBuffer[]; outputs: SharedArrayBuffer[] }>,
  ) {
    this.slots = buffers.map((b, index) => ({
      index,
      inputs: b.inputs.map((sab, i) => typedArrayFor(inputs[i]!.dtype, sab)),
      outputs: b.outputs.map((sab, i) => typedArrayFor(outputs[i]!.dtype, sab)),
    }));
    this.free = [...this.slots];
    worker.on('message', (msg: WorkerReply) => this.onMessage(msg));
    worker.on('error', (err) => this.fail(`the inference worker for ${model} failed: ${err.message}`));
    worker.on('exit', (code) => {
      if (!this.closed) this.fail(`the inference worker for ${model} exited unexpectedly (code ${code})`);
    });
  }

  /**
   * Starts a worker and loads the model on `options.engine`; resolves when
   * the tensors are allocated. Rejects with SessionLoadError naming the
   * engine, the model and the runtime's reason (e.g. an unresolved custom op,
   * or a library that is not TFLite).
   */
  static async open(options: SessionOptions): Promise<InferenceSession> {
    const load: EngineLoadOptions = {
      modelBytes: options.modelBytes,
      model: options.model,
      threads: options.threads,
      ...(options.library ? { library: options.library } : {}),
      ...(options.inputShapes ? { inputShapes: options.inputShapes } : {}),
      ...(options.delegate ? { delegate: options.delegate } : {}),
    };
    const worker = new Worker(sibling('inference-worker'), {
      workerData: { mode: 'serve', engine: options.engine, load, slots: options.slots ?? 2 },
      // The worker allocates little on its heap per frame (tensors live in shared and native memory): a
      // small young generation keeps its RSS down at no measurable cost.
      resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB },
    });
    const ready = await new Promise<ReadyReply>((resolve, reject) => {
      const cleanup = (): void => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      const onMessage = (msg: WorkerReply): void => {
        if (msg.type === 'ready') {
          cleanup();
          resolve(msg);
        } else if (msg.type === 'load-error') {
          cleanup();
          void worker.terminate();
          reject(new SessionLoadError(msg.message, options.engine));
        }
      };
      const onError = (err: Error): void => {
        cleanup();
        void worker.terminate();
        reject(new SessionLoadError(`the inference worker (${options.engine}) failed while loading ${options.model}: ${err.message}`, options.engine));
      };
      const onExit = (code: number): void => {
        cleanup();
        reject(new SessionLoadError(`the inference worker (${options.engine}) exited while loading ${options.model} (code ${code})`, options.engine));
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
    });
    const threads = options.engine === 'litert-wasm' ? 1 : options.threads;
    return new InferenceSession(worker, options.model, options.engine, threads, ready.inputs, ready.outputs, ready.runtime, ready.notes, ready.slots);
  }

  /** A free slot, or null when all are in use. */
  tryAcquire(): Slot | null {
    return this.free.shift() ?? null;
  }

  /** A free slot, waiting for one to be released when all are in use. */
  acquire(): Promise<Slot> {
    const s = this.free.shift();
    if (s) return Promise.resolve(s);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Gives a slot back (after its outputs were read). */
  release(slot: Slot): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter(slot);
    else this.free.push(slot);
  }

  /**
   * Runs the model on the inputs written in `slot`; resolves with the time
   * inside the engine (ms) once `slot.outputs` hold the result. Rejects when
   * the session is closed or its worker died, or when the engine fails.
   */
  invoke(slot: Slot): Promise<number> {
    if (this.closed) return Promise.reject(new Error(`the inference session for ${this.model} is closed`));
    if (this.failure) return Promise.reject(new Error(`the inference session for ${this.model} is not running: ${this.failure}`));
    const id = this.nextId++;
    return new Promise<number>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ type: 'run', id, slot: slot.index });
    });
  }

  /**
   * Runs the model once on `inputs` (one typed array per input, of the
   * input's dtype and element count) and resolves with copies of every
   * output. Throws for inputs of the wrong type or length.
   */
  async run(inputs: readonly ArrayBufferView[]): Promise<RunResult> {
    if (inputs.length !== this.inputs.length) {
      throw new Error(`${this.model} has ${this.inputs.length} input(s), ${inputs.length} given`);
    }
    const slot = await this.acquire();
    try {
      inputs.forEach((a, i) => {
        const dst = slot.inputs[i]!;
        if (a.byteLength !== dst.byteLength) {
          const t = this.inputs[i]!;
          throw new Error(`input ${i} ('${t.name}') of ${this.model} needs ${dst.byteLength} bytes ([${t.shape.join(',')}] ${t.dtype}), got ${a.byteLength}`);
        }
        new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength).set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
      });
      const ms = await this.invoke(slot);
      return { outputs: slot.outputs.map((o) => o.slice()), inference_ms: ms };
    } finally {
      this.release(slot);
    }
  }

  /**
   * Ends the session: the worker deletes the interpreter (and its delegate's
   * threads) after the invocation in flight and exits; terminated after
   * {@link CLOSE_GRACE_MS} if it does not. Pending invocations reject.
   * Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.pending.values()) p.reject(new Error(`the inference session for ${this.model} was closed during inference`));
    this.pending.clear();
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.postMessage({ type: 'close' });
    const timer = setTimeout(() => void this.worker.terminate(), CLOSE_GRACE_MS);
    await exited;
    clearTimeout(timer);
  }

  private onMessage(msg: WorkerReply): void {
    if (msg.type !== 'done' && msg.type !== 'run-error') return;
    const p = this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id);
    if (msg.type === 'done') p.resolve(msg.inference_ms);
    else p.reject(new Error(`inference on ${this.model} (${this.engine}) failed: ${msg.message}`));
  }

  private fail(reason: string): void {
    if (this.failure) return;
    this.failure = reason;
    for (const p of this.pending.values()) p.reject(new Error(reason));
    this.pending.clear();
  }
}

/**
 * Times `candidates` (engine × threads) on the model in a child process that
 * exits afterwards (so an engine not chosen, e.g. LiteRT.js's WASM heap, does
 * not stay in this process's memory; a crash there does not end this one): each is loaded, run once on `probe`
 * (whose outputs are returned for the agreement check), then all are run in
 * interleaved rounds until `budgetMs` has passed since this call (worker
 * start-up and loading included; at least one round). Never rejects for a candidate that fails: its `error` says why.
 */
export async function measureCandidates(
  load: EngineLoadOptions,
  candidates: readonly Candidate[],
  probe: readonly ArrayBufferView[],
  budgetMs: number,
  /** Most timed rounds (default: as many as the budget allows, up to 500). */
  maxRounds?: number,
): Promise<MeasureResult[]> {
  const probeBuffers = probe.map((p) => new Uint8Array(p.buffer, p.byteOffset, p.byteLength).slice().buffer);
  // A child process, not a worker thread: what the engines allocated (LiteRT.js's WebAssembly heap,
  // interpreters, malloc arenas) goes back to the system when it exits.
  const child = fork(fileURLToPath(sibling('inference-worker')), [], { serialization: 'advanced', stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    if (stderr.length < 4096) stderr += d.toString();
  });
  const init = {
    mode: 'measure',
    load: { ...load, modelBytes: new Uint8Array(load.modelBytes) },
    candidates,
    deadline: Date.now() + budgetMs,
    probe: probeBuffers,
    ...(maxRounds ? { maxRounds } : {}),
  };
  try {
    return await new Promise<MeasureResult[]>((resolve, reject) => {
      child.on('message', (msg: { type: string; results?: MeasureResult[]; message?: string }) => {
        if (msg.type === 'measured') resolve(msg.results!);
        else reject(new Error(`measuring inference engines on ${load.model} failed: ${msg.message}`));
      });
      child.on('error', (err) => reject(new Error(`measuring inference engines on ${load.model} failed: ${err.message}`)));
      child.on('exit', (code, signal) => {
        const why = stderr.split('\n').filter((l) => l && !/^INFO:/.test(l))[0];
        reject(new Error(`the engine measuring process for ${load.model} exited (${signal ?? `code ${code}`})${why ? `: ${why}` : ''}`));
      });
      child.send(init);
    });
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill();
  }
}

interface ReadyReply {
  type: 'ready';
  inputs: RuntimeTensor[];
  outputs: RuntimeTensor[];
  runtime: string;
  notes: string[];
  slots: Array<{ inputs: SharedArrayBuffer[]; outputs: SharedArrayBuffer[] }>;
}

type WorkerReply =
  | ReadyReply
  | { type: 'load-error'; message: string; engine: EngineName }
  | { type: 'done'; id: number; slot: number; inference_ms: number }
  | { type: 'run-error'; id: number; slot: number; message: string };
