import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import koffi, { type LibraryHandle } from 'koffi';

/*
 * Our binding to the TensorFlow Lite C API (tensorflow/lite/c/c_api.h), through
 * koffi (an FFI library with prebuilt binaries for linux x64 and arm64, so
 * nothing is compiled at install). Declarations follow the 2.9 headers that
 * ship with the library in tfjs-tflite-node (cc_deps/include), and every
 * function used here exists unchanged in later TFLite/LiteRT C libraries.
 *
 * Pointers are koffi's bigint addresses. Tensor memory is exposed with
 * `koffi.view(data, bytes)`: an ArrayBuffer over the interpreter's own buffer,
 * no copy. Such a view is valid until the interpreter is deleted or its
 * tensors are allocated again.
 */

/** TFLite element types (`TfLiteType` in c_api_types.h), indexed by value, named as `DType`. */
export const TFLITE_TYPES = [
  'notype',
  'float32',
  'int32',
  'uint8',
  'int64',
  'string',
  'bool',
  'int16',
  'complex64',
  'int8',
  'float16',
  'float64',
  'complex128',
  'uint64',
  'resource',
  'variant',
  'uint32',
  'uint16',
  'int4',
] as const;

/** `TFLITE_XNNPACK_DELEGATE_FLAG_QS8` (xnnpack_delegate.h): run signed 8-bit quantized operators. */
export const XNNPACK_FLAG_QS8 = 0x1;
/** `TFLITE_XNNPACK_DELEGATE_FLAG_QU8`: run unsigned 8-bit (TF1) quantized operators; 2.9's XNNPACK refuses their CONV_2D. */
export const XNNPACK_FLAG_QU8 = 0x2;

/** Symbols a library must export to be used as the TFLite C library. */
export const REQUIRED_SYMBOLS = ['TfLiteVersion', 'TfLiteModelCreate', 'TfLiteInterpreterCreate', 'TfLiteInterpreterInvoke'] as const;

/** A problem with the TFLite C library itself (not found, not a TFLite library). `message` names the file and the fix. */
export class TfLiteLibraryError extends Error {
  override readonly name = 'TfLiteLibraryError';
}

/** A failure reported by TFLite (model rejected, delegate refused, invoke failed); `messages` are TFLite's own lines. */
export class TfLiteCallError extends Error {
  override readonly name = 'TfLiteCallError';
  constructor(
    message: string,
    readonly messages: readonly string[],
  ) {
    super(message);
  }
}

/**
 * The `libtensorflowlite_c.so` inside the `tfjs-tflite-node` package for this
 * platform (TFLite 2.9.0; linux x64 and arm64 builds). Throws
 * TfLiteLibraryError when the platform has none or the package is missing.
 */
export function bundledLibraryPath(): string {
  const dirs: Record<string, string> = { 'linux-x64': 'linux_amd64', 'linux-arm64': 'linux_arm64', 'darwin-arm64': 'darwin_arm64' };
  const dir = dirs[`${process.platform}-${process.arch}`];
  if (!dir) {
    throw new TfLiteLibraryError(
      `no bundled TFLite C library for ${process.platform}-${process.arch} (tfjs-tflite-node ships linux x64 and arm64): set inference.library to a libtensorflowlite_c.so built for this machine`,
    );
  }
  let pkg: string;
  try {
    pkg = path.dirname(createRequire(import.meta.url).resolve('tfjs-tflite-node/package.json'));
  } catch {
    throw new TfLiteLibraryError('the package tfjs-tflite-node (which holds the TFLite C library) is not installed: run npm ci');
  }
  const file = path.join(pkg, 'cc_deps', dir, process.platform === 'darwin' ? 'libtensorflowlite_c.dylib' : 'libtensorflowlite_c.so');
  if (!existsSync(file)) throw new TfLiteLibraryError(`${file} is missing from tfjs-tflite-node: reinstall it with npm ci`);
  return file;
}

const Reporter = koffi.proto('void TfLiteErrorReporterFn(void *user_data, const char *format, void *args)');
koffi.struct('TfLiteQuantizationParams', { scale: 'float', zero_point: 'int32_t' });
// TfLiteXNNPackDelegateOptions of 2.9 is {int32_t num_threads; uint32_t flags;}; later versions append
// fields (weight cache, handles) whose zero value means "none". TfLiteXNNPackDelegateOptionsDefault()
// returns the struct by value, and a struct larger than 16 bytes comes back through a hidden pointer on
// x86-64 and arm64, so calling it with 2.9's declaration on a newer library would write past our buffer.
// We build the options ourselves instead: zeroed, generously sized, num_threads and flags set.
const XNNPACK_OPTIONS_BYTES = 256;

type Ptr = bigint | null;

/** The loaded C library: the functions used by `TfLiteInterpreter`. One per library file and thread. */
export class TfLiteLibrary {
  private static readonly loaded = new Map<string, TfLiteLibrary>();

  /** What `TfLiteVersion()` returned, e.g. `2.9.0`. */
  readonly version: string;
  /** True when the library exports the XNNPACK delegate (`TfLiteXNNPackDelegateCreate`). */
  readonly hasXnnpack: boolean;
  /** @internal */ readonly fn;
  private readonly vsnprintf: (buf: Buffer, n: number, fmt: bigint, args: bigint) => number;
  private readonly messages: string[] = [];
  /** @internal a C function pointer that appends TFLite's formatted error messages to `messages`. */
  readonly reporter: bigint;

  private constructor(
    /** Absolute path of the library file. */
    readonly path: string,
    lib: LibraryHandle,
  ) {
    const f = (decl: string) => lib.func(decl);
    const has = (name: string): boolean => {
      try {
        lib.symbol(name);
        return true;
      } catch {
        return false;
      }
    };
    const missing = REQUIRED_SYMBOLS.filter((s) => !has(s));
    if (missing.length > 0) {
      throw new TfLiteLibraryError(
        `${path} is not a TensorFlow Lite C library (it does not export ${missing.join(', ')}): point inference.library at a libtensorflowlite_c.so, or remove the key to use the bundled TFLite 2.9`,
      );
    }
    this.hasXnnpack = has('TfLiteXNNPackDelegateCreate');
    this.fn = {
      version: f('const char *TfLiteVersion(void)'),
      modelCreate: f('void *TfLiteModelCreate(const void *data, size_t size)'),
      modelDelete: f('void TfLiteModelDelete(void *model)'),
      optionsCreate: f('void *TfLiteInterpreterOptionsCreate(void)'),
      optionsDelete: f('void TfLiteInterpreterOptionsDelete(void *options)'),
      optionsSetNumThreads: f('void TfLiteInterpreterOptionsSetNumThreads(void *options, int32_t n)'),
      optionsAddDelegate: f('void TfLiteInterpreterOptionsAddDelegate(void *options, void *delegate)'),
      optionsSetErrorReporter: f('void TfLiteInterpreterOptionsSetErrorReporter(void *options, TfLiteErrorReporterFn *reporter, void *user_data)'),
      interpreterCreate: f('void *TfLiteInterpreterCreate(void *model, void *options)'),
      interpreterDelete: f('void TfLiteInterpreterDelete(void *interpreter)'),
      inputCount: f('int32_t TfLiteInterpreterGetInputTensorCount(void *interpreter)'),
      outputCount: f('int32_t TfLiteInterpreterGetOutputTensorCount(void *interpreter)'),
      inputTensor: f('void *TfLiteInterpreterGetInputTensor(void *interpreter, int32_t index)'),
      outputTensor: f('void *TfLiteInterpreterGetOutputTensor(void *interpreter, int32_t index)'),
      resizeInput: f('int TfLiteInterpreterResizeInputTensor(void *interpreter, int32_t index, const int32_t *dims, int32_t count)'),
      allocate: f('int TfLiteInterpreterAllocateTensors(void *interpreter)'),
      invoke: f('int TfLiteInterpreterInvoke(void *interpreter)'),
      tensorType: f('int TfLiteTensorType(void *tensor)'),
      tensorNumDims: f('int32_t TfLiteTensorNumDims(void *tensor)'),
      tensorDim: f('int32_t TfLiteTensorDim(void *tensor, int32_t index)'),
      tensorByteSize: f('size_t TfLiteTensorByteSize(void *tensor)'),
      tensorData: f('void *TfLiteTensorData(void *tensor)'),
      tensorName: f('const char *TfLiteTensorName(void *tensor)'),
      tensorQuantization: f('TfLiteQuantizationParams TfLiteTensorQuantizationParams(void *tensor)'),
      ...(this.hasXnnpack
        ? {
            xnnpackCreate: f('void *TfLiteXNNPackDelegateCreate(const void *options)'),
            xnnpackDelete: f('void TfLiteXNNPackDelegateDelete(void *delegate)'),
          }
        : {}),
    };
    this.version = String(this.fn.version());
    const libc = koffi.load(process.platform === 'darwin' ? 'libc.dylib' : 'libc.so.6');
    this.vsnprintf = libc.func('int vsnprintf(_Out_ uint8_t *buf, size_t n, void *format, void *args)') as never;
    // va_list is a pointer-sized value (armhf), an array decaying to a pointer (x86-64) or a struct passed
    // by reference (AAPCS64): in all three, handing the callback's argument on to vsnprintf unchanged works.
    this.reporter = koffi.register((_user: unknown, format: bigint, args: bigint) => {
      const buf = Buffer.alloc(2048);
      const n = this.vsnprintf(buf, buf.length, format, args);
      this.messages.push(buf.toString('utf8', 0, Math.max(0, Math.min(n, buf.length - 1))).trim());
    }, koffi.pointer(Reporter)) as unknown as bigint;
  }

  /**
   * Loads the TFLite C library at `file` (default: the bundled one, see
   * `bundledLibraryPath`), once per file and thread. Throws
   * TfLiteLibraryError naming the file when it does not exist, cannot be
   * loaded by the dynamic loader, or does not export the C API.
   */
  static load(file?: string): TfLiteLibrary {
    const resolved = path.resolve(file ?? bundledLibraryPath());
    const cached = TfLiteLibrary.loaded.get(resolved);
    if (cached) return cached;
    if (!existsSync(resolved)) {
      throw new TfLiteLibraryError(`the TFLite C library ${resolved} does not exist: fix inference.library, or remove it to use the bundled TFLite 2.9`);
    }
    let handle: LibraryHandle;
    try {
      handle = koffi.load(resolved);
    } catch (err) {
      throw new TfLiteLibraryError(
        `${resolved} cannot be loaded as a shared library (${(err as Error).message}): point inference.library at a libtensorflowlite_c.so built for ${process.arch}`,
      );
    }
    const lib = new TfLiteLibrary(resolved, handle);
    TfLiteLibrary.loaded.set(resolved, lib);
    return lib;
  }

  /** @internal TFLite's error messages since the last call, oldest first. */
  takeMessages(): string[] {
    return this.messages.splice(0);
  }

  private stdio:
    | { dup: (fd: number) => number; dup2: (a: number, b: number) => number; open: (p: string, f: number) => number; close: (fd: number) => number }
    | undefined;

  /**
   * @internal Runs `fn` with file descriptor 2 on /dev/null: creating the XNNPACK delegate makes
   * TFLite print "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." to stderr (its minimal
   * logger, which the C API cannot silence), a line that lands in a user's terminal and in
   * `--json` output read through a pseudo-terminal. The window is the delegate's creation only.
   */
  quietly<T>(fn: () => T): T {
    if (process.platform !== 'linux') return fn();
    if (!this.stdio) {
      const libc = koffi.load('libc.so.6');
      this.stdio = {
        dup: libc.func('int dup(int fd)') as never,
        dup2: libc.func('int dup2(int oldfd, int newfd)') as never,
        open: libc.func('int open(const char *path, int flags)') as never,
        close: libc.func('int close(int fd)') as never,
      };
    }
    const io = this.stdio;
    const saved = io.dup(2);
    const devnull = io.open('/dev/null', 1 /* O_WRONLY */);
    if (saved < 0 || devnull < 0) return fn();
    io.dup2(devnull, 2);
    try {
      return fn();
    } finally {
      io.dup2(saved, 2);
      io.close(saved);
      io.close(devnull);
    }
  }

  /** @internal XNNPACK delegate options (see XNNPACK_OPTIONS_BYTES): `threads` and `flags`, every other field zero. */
  xnnpackOptions(threads: number, flags: number): Buffer {
    const buf = Buffer.alloc(XNNPACK_OPTIONS_BYTES);
    buf.writeInt32LE(threads, 0);
    buf.writeUInt32LE(flags >>> 0, 4);
    return buf;
  }
}

/** Quantization as the runtime reports it (`TfLiteTensorQuantizationParams`): real = (q − zero_point) × scale; scale 0 = not quantized. */
export interface RuntimeQuantization {
  readonly scale: number;
  readonly zero_point: number;
}

/** One tensor as the runtime reports it after allocation. */
export interface RuntimeTensor {
  readonly name: string;
  /** e.g. [1,224,224,3]. */
  readonly shape: number[];
  /** `TfLiteType` in lower case: uint8, int8, float32, … */
  readonly dtype: string;
  readonly quantization: RuntimeQuantization;
  /** Bytes of the tensor's buffer. */
  readonly bytes: number;
}

/** How a `TfLiteInterpreter` is made. */
export interface InterpreterOptions {
  /** `TfLiteInterpreterOptionsSetNumThreads`; ≥ 1. */
  readonly threads: number;
  /** Add the XNNPACK delegate with these flags (e.g. XNNPACK_FLAG_QS8) and `threads`. */
  readonly xnnpackFlags?: number;
  /** A delegate created elsewhere (e.g. by libedgetpu's `tflite_plugin_create_delegate`); it must outlive the interpreter. */
  readonly delegate?: bigint;
  /** New shapes for inputs before allocation (`TfLiteInterpreterResizeInputTensor`), by input position. */
  readonly inputShapes?: ReadonlyMap<number, readonly number[]>;
}

/**
 * One TFLite interpreter over one model. `create` loads and allocates; the
 * tensor views (`inputView`, `outputView`) are the interpreter's own memory
 * (zero copy); `invoke` runs synchronously on the calling thread and
 * `invokeAsync` on the libuv thread pool. Not thread-safe: one call at a time.
 */
export class TfLiteInterpreter {
  private deleted = false;
  readonly inputs: RuntimeTensor[];
  readonly outputs: RuntimeTensor[];
  private readonly inputViews: ArrayBuffer[];
  private readonly outputViews: ArrayBuffer[];

  private constructor(
    readonly lib: TfLiteLibrary,
    private readonly model: bigint,
    private readonly interpreter: bigint,
    private readonly xnnpack: bigint | null,
    // The model bytes must stay alive (and in place) as long as the model: TfLiteModelCreate does not copy them.
    private readonly modelBytes: Uint8Array,
  ) {
    const f = lib.fn;
    const n = f.inputCount(interpreter) as number;
    const m = f.outputCount(interpreter) as number;
    const ins = Array.from({ length: n }, (_, i) => f.inputTensor(interpreter, i) as bigint);
    const outs = Array.from({ length: m }, (_, i) => f.outputTensor(interpreter, i) as bigint);
    this.inputs = ins.map((t) => this.describe(t));
    this.outputs = outs.map((t) => this.describe(t));
    this.inputViews = ins.map((t) => this.view(t));
    this.outputViews = outs.map((t) => this.view(t));
  }

  /**
   * Creates the interpreter for `modelBytes` (a whole .tflite file, kept
   * referenced by the interpreter) and allocates its tensors. Throws
   * TfLiteCallError with TFLite's own messages when the model cannot be read
   * or prepared (e.g. "Encountered unresolved custom op: X", "failed to
   * delegate CONV_2D node #0"); the caller words them for the user.
   */
  static create(lib: TfLiteLibrary, modelBytes: Uint8Array, options: InterpreterOptions): TfLiteInterpreter {
    const f = lib.fn;
    lib.takeMessages();
    if (!Number.isInteger(options.threads) || options.threads < 1) throw new Error(`interpreter threads must be a positive integer, got ${options.threads}`);
    const model = f.modelCreate(modelBytes, modelBytes.byteLength) as Ptr;
    if (!model) throw new TfLiteCallError('TFLite could not read the model', lib.takeMessages());
    const opts = f.optionsCreate() as bigint;
    let xnnpack: bigint | null = null;
    let interpreter: Ptr = null;
    try {
      f.optionsSetNumThreads(opts, options.threads);
      f.optionsSetErrorReporter(opts, lib.reporter, null);
      if (options.xnnpackFlags !== undefined) {
        if (!lib.hasXnnpack) throw new TfLiteCallError(`${lib.path} has no XNNPACK delegate`, []);
        const flags = options.xnnpackFlags;
        xnnpack = lib.quietly(() => f.xnnpackCreate!(lib.xnnpackOptions(options.threads, flags)) as Ptr);
        if (!xnnpack) throw new TfLiteCallError('TFLite could not create the XNNPACK delegate', lib.takeMessages());
        f.optionsAddDelegate(opts, xnnpack);
      }
      if (options.delegate) f.optionsAddDelegate(opts, options.delegate);
      interpreter = f.interpreterCreate(model, opts) as Ptr;
      if (!interpreter) throw new TfLiteCallError('TFLite could not create an interpreter for the model', lib.takeMessages());
      for (const [index, shape] of options.inputShapes ?? []) {
        const dims = Int32Array.from(shape);
        if (f.resizeInput(interpreter, index, dims, dims.length) !== 0) {
          throw new TfLiteCallError(`TFLite could not resize input ${index} to [${shape.join(',')}]`, lib.takeMessages());
        }
      }
      if (f.allocate(interpreter) !== 0) throw new TfLiteCallError('TFLite could not allocate the tensors', lib.takeMessages());
      return new TfLiteInterpreter(lib, model, interpreter, xnnpack, modelBytes);
    } catch (err) {
      if (interpreter) f.interpreterDelete(interpreter);
      if (xnnpack) f.xnnpackDelete!(xnnpack);
      f.modelDelete(model);
      throw err;
    } finally {
      f.optionsDelete(opts);
    }
  }

  /** The memory of input `i` as an ArrayBuffer (no copy); write the input here before `invoke`. */
  inputView(i: number): ArrayBuffer {
    this.check();
    const v = this.inputViews[i];
    if (!v) throw new RangeError(`input ${i} does not exist (the model has ${this.inputViews.length})`);
    return v;
  }

  /** The memory of output `i` as an ArrayBuffer (no copy); valid until the next `invoke`. */
  outputView(i: number): ArrayBuffer {
    this.check();
    const v = this.outputViews[i];
    if (!v) throw new RangeError(`output ${i} does not exist (the model has ${this.outputViews.length})`);
    return v;
  }

  /** Runs the model on the calling thread. Throws TfLiteCallError with TFLite's messages on failure. */
  invoke(): void {
    this.check();
    if (this.lib.fn.invoke(this.interpreter) !== 0) throw new TfLiteCallError('TFLite failed to run the model', this.lib.takeMessages());
  }

  /** Runs the model on a libuv thread pool thread; the calling thread stays free. Rejects as `invoke` throws. */
  invokeAsync(): Promise<void> {
    this.check();
    return new Promise((resolve, reject) => {
      (this.lib.fn.invoke.async as (p: bigint, cb: (err: unknown, status: number) => void) => void)(this.interpreter, (err, status) => {
        if (err) reject(err as Error);
        else if (status !== 0) reject(new TfLiteCallError('TFLite failed to run the model', this.lib.takeMessages()));
        else resolve();
      });
    });
  }

  /** Frees the interpreter, its delegate and the model. Idempotent; views become invalid. */
  delete(): void {
    if (this.deleted) return;
    this.deleted = true;
    const f = this.lib.fn;
    f.interpreterDelete(this.interpreter);
    if (this.xnnpack) f.xnnpackDelete!(this.xnnpack);
    f.modelDelete(this.model);
    void this.modelBytes;
  }

  private check(): void {
    if (this.deleted) throw new Error('the TFLite interpreter was deleted');
  }

  private describe(t: bigint): RuntimeTensor {
    const f = this.lib.fn;
    const dims = f.tensorNumDims(t) as number;
    const q = f.tensorQuantization(t) as { scale: number; zero_point: number };
    return {
      name: String(f.tensorName(t) ?? ''),
      shape: Array.from({ length: Math.max(0, dims) }, (_, i) => f.tensorDim(t, i) as number),
      dtype: TFLITE_TYPES[f.tensorType(t) as number] ?? `type ${f.tensorType(t)}`,
      quantization: { scale: q.scale, zero_point: q.zero_point },
      bytes: Number(f.tensorByteSize(t)),
    };
  }

  private view(t: bigint): ArrayBuffer {
    const f = this.lib.fn;
    const bytes = Number(f.tensorByteSize(t));
    const data = f.tensorData(t) as Ptr;
    return data && bytes > 0 ? koffi.view(data, bytes) : new ArrayBuffer(0);
  }
}
