import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { DelegateDescriptor } from './delegate.js';
import type { RuntimeTensor } from './tflite-c.js';

/*
 * What every engine shares: names, tensor arrays, load options, the loaded
 * engine's shape and its load error (engines.ts loads them; litert.ts is one).
 */

/**
 * Ways of running a model:
 * - `tflite`: the TFLite C library, default (built-in) kernels;
 * - `tflite-xnnpack`: the same library with its XNNPACK delegate, signed int8 (QS8) on;
 *   when the delegate refuses the model (2.9 has no QU8 CONV_2D), the default kernels;
 * - `litert-wasm`: Google's LiteRT.js (`@litertjs/core`), a WebAssembly build of current
 *   LiteRT with XNNPACK, single-threaded on Node.js 20;
 * - `edgetpu`: the TFLite C library with libedgetpu's external delegate (Coral).
 */
export const ENGINE_NAMES = ['tflite', 'tflite-xnnpack', 'litert-wasm', 'edgetpu'] as const;
export type EngineName = (typeof ENGINE_NAMES)[number];

/** Typed arrays engines read and write tensors through. */
export type TensorArray =
  | Uint8Array
  | Int8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array;

const ARRAYS: Record<string, new (b: ArrayBufferLike, o?: number, n?: number) => TensorArray> = {
  uint8: Uint8Array,
  int8: Int8Array,
  bool: Uint8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  float16: Uint16Array, // raw IEEE half bits
  int32: Int32Array,
  uint32: Uint32Array,
  float32: Float32Array,
  float64: Float64Array,
  int64: BigInt64Array,
  uint64: BigUint64Array,
};

/**
 * A typed array of `dtype` over `buffer` (whole buffer, or `bytes` from 0):
 * uint8 → Uint8Array, int8 → Int8Array, float32 → Float32Array, int64 →
 * BigInt64Array, float16 → Uint16Array of raw half-precision bits, …
 * Throws for dtypes without a fixed element size (string, resource).
 */
export function typedArrayFor(dtype: string, buffer: ArrayBufferLike, bytes = buffer.byteLength): TensorArray {
  const T = ARRAYS[dtype];
  if (!T) throw new Error(`tensors of dtype ${dtype} cannot be read or written as typed arrays`);
  const size = (T as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT;
  return new T(buffer, 0, Math.floor(bytes / size));
}

/** What an engine needs to load a model. */
export interface EngineLoadOptions {
  /** The whole .tflite file. Kept referenced while the engine lives. */
  readonly modelBytes: Uint8Array;
  /** The model's name in messages (its path). */
  readonly model: string;
  /** Interpreter threads, ≥ 1 (litert-wasm on Node.js 20 has 1). */
  readonly threads: number;
  /** TFLite C library (default: the bundled one). */
  readonly library?: string;
  /** New input shapes by input position, applied before allocation (free H/W inputs). */
  readonly inputShapes?: ReadonlyMap<number, readonly number[]>;
  /** For `edgetpu`: the delegate library (checked beforehand) and its options. */
  readonly delegate?: DelegateDescriptor;
}

/** An engine with a model loaded, living in the thread that loaded it. */
export interface LoadedEngine {
  readonly name: EngineName;
  readonly threads: number;
  readonly inputs: readonly RuntimeTensor[];
  readonly outputs: readonly RuntimeTensor[];
  /** What the runtime is: `TFLite 2.9.0`, `LiteRT.js 2.5.3`. */
  readonly runtime: string;
  /** Things a user should know, e.g. that XNNPACK did not apply and the default kernels run. */
  readonly notes: readonly string[];
  /** Writable input `i` (for C API engines, the tensor's own memory). */
  input(i: number): TensorArray;
  /** Runs the model on the inputs as written. */
  run(): void | Promise<void>;
  /** Output `i` after `run()`; valid until the next `run()`. */
  output(i: number): TensorArray;
  close(): void;
}

/** An engine could not load the model; `message` names the engine, the model and why. */
export class EngineLoadError extends Error {
  override readonly name = 'EngineLoadError';
  constructor(
    message: string,
    readonly engine: EngineName,
    /** TFLite's (or LiteRT's) own messages. */
    readonly details: readonly string[] = [],
  ) {
    super(message);
  }
}

/** Version of the installed `@litertjs/core` package, or null when it is not installed. */
export function liteRtVersion(): string | null {
  try {
    const file = createRequire(import.meta.url).resolve('@litertjs/core/package.json');
    return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
  } catch {
    return null;
  }
}
