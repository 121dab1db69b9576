import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import koffi from 'koffi';
import type { DelegateDescriptor } from './delegate.js';
import { TfLiteCallError, TfLiteInterpreter, TfLiteLibrary, XNNPACK_FLAG_QS8, type RuntimeTensor } from './tflite-c.js';

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
  | Uint8Array | Int8Array | Int16Array | Uint16Array | Int32Array | Uint32Array | Float32Array | Float64Array | BigInt64Array | BigUint64Array;

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

/**
 * Loads `options.modelBytes` on engine `name` in the calling thread. Throws
 * EngineLoadError saying why the engine cannot run the model (its runtime's
 * first message; `unresolved custom op` and Edge TPU cases worded for users),
 * or TfLiteLibraryError for a library that is not the TFLite C library.
 */
export async function loadEngine(name: EngineName, options: EngineLoadOptions): Promise<LoadedEngine> {
  switch (name) {
    case 'tflite':
    case 'tflite-xnnpack':
    case 'edgetpu':
      return loadCApiEngine(name, options);
    case 'litert-wasm':
      return (await import('./litert.js')).loadLiteRtEngine(options);
    default:
      throw new EngineLoadError(`unknown inference engine ${JSON.stringify(name)}: expected one of ${ENGINE_NAMES.join(', ')} or auto`, name);
  }
}

/** The first line of TFLite's messages that says something, for one-line errors. */
export function firstReason(messages: readonly string[], fallback: string): string {
  const useful = messages.filter((m) => m && !/^Node number \d+ .* failed to prepare\.?$/.test(m) && !/Restored original execution plan/.test(m));
  return (useful[0] ?? messages[0] ?? fallback).split('\n')[0]!.trim();
}

function loadCApiEngine(name: 'tflite' | 'tflite-xnnpack' | 'edgetpu', options: EngineLoadOptions): LoadedEngine {
  const lib = TfLiteLibrary.load(options.library);
  const notes: string[] = [];
  let interpreter: TfLiteInterpreter;
  let edgetpu: { destroy: () => void } | null = null;
  const base = { threads: options.threads, ...(options.inputShapes ? { inputShapes: options.inputShapes } : {}) };
  const fail = (err: unknown, what: string): never => {
    if (!(err instanceof TfLiteCallError)) throw err;
    throw new EngineLoadError(`${name} cannot run ${options.model}: ${firstReason(err.messages, what)}`, name, err.messages);
  };
  if (name === 'tflite-xnnpack') {
    if (!lib.hasXnnpack) {
      notes.push(`${lib.path} has no XNNPACK delegate: ${options.model} runs on the default kernels`);
      interpreter = create(lib, options, base, fail);
    } else {
      try {
        interpreter = TfLiteInterpreter.create(lib, options.modelBytes, { ...base, xnnpackFlags: XNNPACK_FLAG_QS8 });
      } catch (err) {
        if (!(err instanceof TfLiteCallError)) throw err;
        // XNNPACK refusing a node makes interpreter creation fail (2.9: TF1 uint8 CONV_2D); the default kernels still run it.
        notes.push(`the XNNPACK delegate does not apply to ${options.model} (${firstReason(err.messages, 'delegate refused')}): it runs on the default kernels`);
        interpreter = create(lib, options, base, fail);
      }
    }
  } else if (name === 'edgetpu') {
    if (!options.delegate) throw new EngineLoadError('the edgetpu engine needs the Edge TPU delegate library (checked first)', name);
    const made = createDelegateDescriptor(options.delegate);
    edgetpu = made;
    try {
      interpreter = TfLiteInterpreter.create(lib, options.modelBytes, { ...base, delegate: made.delegate });
    } catch (err) {
      made.destroy();
      return fail(err, 'the Edge TPU delegate did not load the model');
    }
  } else {
    interpreter = create(lib, options, base, fail);
  }
  const inputs = interpreter.inputs.map((t, i) => typedArrayFor(t.dtype, interpreter.inputView(i)));
  const outputs = interpreter.outputs.map((t, i) => typedArrayFor(t.dtype, interpreter.outputView(i)));
  return {
    name,
    threads: options.threads,
    inputs: interpreter.inputs,
    outputs: interpreter.outputs,
    runtime: `TFLite ${lib.version}`,
    notes,
    input: (i) => inputs[i]!,
    run: () => interpreter.invoke(),
    output: (i) => outputs[i]!,
    close: () => {
      interpreter.delete();
      edgetpu?.destroy();
    },
  };
}

function create(
  lib: TfLiteLibrary,
  options: EngineLoadOptions,
  base: { threads: number; inputShapes?: ReadonlyMap<number, readonly number[]> },
  fail: (err: unknown, what: string) => never,
): TfLiteInterpreter {
  try {
    return TfLiteInterpreter.create(lib, options.modelBytes, base);
  } catch (err) {
    return fail(err, 'TFLite could not load the model');
  }
}

/**
 * Creates a delegate from a TFLite external delegate plugin (libedgetpu):
 * `tflite_plugin_create_delegate(keys, values, n, report_error)` with the
 * options as key/value C strings; `destroy` calls
 * `tflite_plugin_destroy_delegate`. Throws EngineLoadError when the plugin
 * returns no delegate (libedgetpu does so when no Edge TPU is attached).
 */
export function createDelegateDescriptor(d: DelegateDescriptor): { delegate: bigint; destroy: () => void } {
  const lib = koffi.load(d.path);
  const create = lib.func('void *tflite_plugin_create_delegate(const char **keys, const char **values, size_t n, void *report)');
  const destroy = lib.func('void tflite_plugin_destroy_delegate(void *delegate)');
  const keys = d.options.map(([k]) => k);
  const values = d.options.map(([, v]) => v);
  const delegate = create(keys, values, keys.length, null) as bigint | null;
  if (!delegate) {
    const device = d.options.find(([k]) => k === 'device')?.[1];
    throw new EngineLoadError(
      `the Edge TPU delegate ${d.path} returned no delegate${device ? ` for device ${device}` : ''}: is an Edge TPU attached, and is it the Edge TPU runtime?`,
      'edgetpu',
    );
  }
  return { delegate, destroy: () => destroy(delegate) };
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
