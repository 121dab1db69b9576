import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import { EngineLoadError, type EngineLoadOptions, type LoadedEngine, liteRtVersion, type TensorArray, typedArrayFor } from './engine-api.js';
import type { RuntimeTensor } from './tflite-c.js';
import { parseModel } from './tflite-model.js';

/*
 * The `litert-wasm` engine: Google's LiteRT.js (`@litertjs/core`, pinned), a
 * WebAssembly build of current LiteRT with XNNPACK. It is written for
 * browsers and workers; in Node.js it runs once `self` and `importScripts`
 * exist: `importScripts(url)` must evaluate the Emscripten loader script
 * (a CommonJS file inside a `"type": "module"` package, so `require()`
 * refuses it) and set `self.ModuleFactory` to what it exports.
 *
 * Load it only in a worker thread: `run()` computes on the calling thread.
 * LiteRT.js tensors are float32, int32 or uint8 only (an int8 input is
 * refused at load). Node.js 20 lacks relaxed SIMD, so LiteRT.js picks its
 * single-threaded build: threads is always 1.
 */

interface LiteRtModule {
  loadLiteRt(dir: string): Promise<unknown>;
  loadAndCompile(model: Uint8Array, options: { accelerator: 'wasm' }): Promise<CompiledModel>;
  Tensor: new (data: TensorArray, shape: number[]) => LiteRtTensor;
}
interface LiteRtTensor {
  toTypedArray(): TensorArray;
  delete(): void;
}
interface CompiledModel {
  getInputDetails(): ReadonlyArray<{ name: string; dtype: string; shape: Int32Array }>;
  getOutputDetails(): ReadonlyArray<{ name: string; dtype: string; shape: Int32Array }>;
  run(input: LiteRtTensor[]): Promise<LiteRtTensor[]>;
  delete(): void;
}

/** LiteRT.js tensor dtypes. */
const LITERT_DTYPES = new Set(['float32', 'int32', 'uint8']);

let loading: Promise<LiteRtModule> | null = null;
/** Where LiteRT's console output goes: collected while a model loads, dropped otherwise. */
let sink: string[] | null = null;

function quiet(...args: unknown[]): void {
  sink?.push(args.map(String).join(' '));
}

/**
 * Runs `fn` with LiteRT's output captured into `into` instead of the
 * process's stdout/stderr: Emscripten in Node.js writes its log lines
 * (INFO/WARNING/ERROR, including why a model fails) with
 * `process.stderr.write` and the module start-up with console.*.
 */
async function captured<T>(into: string[], fn: () => Promise<T>): Promise<T> {
  const out = process.stdout.write;
  const err = process.stderr.write;
  const saved = { log: console.log, warn: console.warn, error: console.error, info: console.info, debug: console.debug };
  const write = ((chunk: unknown) => {
    into.push(String(chunk));
    return true;
  }) as typeof process.stdout.write;
  sink = into;
  process.stdout.write = write;
  process.stderr.write = write;
  Object.assign(console, { log: quiet, warn: quiet, error: quiet, info: quiet, debug: quiet });
  try {
    return await fn();
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
    Object.assign(console, saved);
    sink = null;
  }
}

async function loadModule(): Promise<LiteRtModule> {
  const g = globalThis as Record<string, unknown>;
  g.self ??= globalThis;
  g.importScripts ??= (url: string) => {
    const file = url.startsWith('file:') ? fileURLToPath(url) : url;
    const module = { exports: {} as Record<string, unknown> };
    const wrapped = vm.runInThisContext(`(function (exports, require, module, __filename, __dirname) {${readFileSync(file, 'utf8')}\n})`, {
      filename: file,
    }) as (...a: unknown[]) => void;
    wrapped(module.exports, createRequire(file), module, file, path.dirname(file));
    g.ModuleFactory = module.exports.default ?? module.exports;
  };
  const mod = (await import('@litertjs/core')) as unknown as LiteRtModule;
  const dir = path.join(path.dirname(createRequire(import.meta.url).resolve('@litertjs/core')), '..', 'wasm') + path.sep;
  await captured([], () => mod.loadLiteRt(dir));
  return mod;
}

/** Loads a model on LiteRT.js (see the file comment). Throws EngineLoadError with LiteRT's reason. */
export async function loadLiteRtEngine(options: EngineLoadOptions): Promise<LoadedEngine> {
  const version = liteRtVersion();
  if (!version) throw new EngineLoadError('litert-wasm needs the package @litertjs/core: run npm ci', 'litert-wasm');
  if (options.inputShapes && options.inputShapes.size > 0) {
    throw new EngineLoadError(`litert-wasm cannot resize the inputs of ${options.model} (it has free input dimensions)`, 'litert-wasm');
  }
  let mod: LiteRtModule;
  try {
    loading ??= loadModule();
    mod = await loading;
  } catch (err) {
    loading = null;
    throw new EngineLoadError(`LiteRT.js could not start: ${(err as Error).message}`, 'litert-wasm');
  }
  const messages: string[] = [];
  let model: CompiledModel;
  try {
    // LiteRT.js reads the whole ArrayBuffer under the view: give it one holding exactly the model.
    const b = options.modelBytes;
    const exact = b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? b : b.slice();
    model = await captured(messages, () => mod.loadAndCompile(exact, { accelerator: 'wasm' }));
  } catch (err) {
    const all = [...messages, String((err as Error)?.message ?? err)].map((m) => m.trim()).filter((m) => m.startsWith('ERROR:') || !/^(INFO|WARNING):/.test(m));
    const reason = all.find((m) => !/^ERROR: \[/.test(m) && !/litert_web\.cc|litert_compiled_model/.test(m)) ?? all[0] ?? 'unknown error';
    throw new EngineLoadError(`litert-wasm cannot run ${options.model}: ${reason.replace(/^ERROR:\s*/, '').split('\n')[0]}`, 'litert-wasm', all);
  }
  // LiteRT.js 2.5.3 compiles a model with an unknown custom op without a word and runs it to zeros
  // (seen with model_invoking_error.tflite): refuse custom ops from the flatbuffer instead.
  const custom = (await parseModel(options.modelBytes, options.model)).custom_ops;
  if (custom.length > 0) {
    model.delete();
    throw new EngineLoadError(
      `litert-wasm cannot run ${options.model}: it uses the custom op '${custom[0]}', and LiteRT.js does not report custom ops it lacks (it would run the model to zeros)`,
      'litert-wasm',
      messages,
    );
  }
  const describe = (d: { name: string; dtype: string; shape: Int32Array }): RuntimeTensor => {
    const shape = Array.from(d.shape);
    const count = shape.reduce((a, b) => a * b, 1);
    // LiteRT.js does not report quantization; the caller takes scale and zero point from the flatbuffer.
    return { name: d.name, shape, dtype: d.dtype, quantization: { scale: 0, zero_point: 0 }, bytes: count * (d.dtype === 'uint8' ? 1 : 4) };
  };
  const inputs = model.getInputDetails().map(describe);
  const outputs = model.getOutputDetails().map(describe);
  const bad = [...inputs, ...outputs].find((t) => !LITERT_DTYPES.has(t.dtype));
  if (bad) {
    model.delete();
    throw new EngineLoadError(
      `litert-wasm cannot run ${options.model}: tensor '${bad.name}' is ${bad.dtype}, and LiteRT.js handles float32, int32 and uint8 tensors only`,
      'litert-wasm',
    );
  }
  const inputArrays = inputs.map((t) => typedArrayFor(t.dtype, new ArrayBuffer(t.bytes)));
  let outputArrays: TensorArray[] = outputs.map((t) => typedArrayFor(t.dtype, new ArrayBuffer(t.bytes)));
  const engine: LoadedEngine = {
    name: 'litert-wasm',
    threads: 1,
    inputs,
    outputs,
    runtime: `LiteRT.js ${version}`,
    notes: options.threads > 1 ? [`litert-wasm runs single-threaded on Node.js ${process.versions.node} (its threaded build needs relaxed SIMD)`] : [],
    input: (i) => inputArrays[i]!,
    output: (i) => outputArrays[i]!,
    run: async () => {
      const tensors = inputs.map((t, i) => new mod.Tensor(inputArrays[i]!, t.shape));
      try {
        const results = await model.run(tensors);
        outputArrays = results.map((r) => r.toTypedArray());
        for (const r of results) r.delete();
      } finally {
        for (const t of tensors) t.delete();
      }
    },
    close: () => model.delete(),
  };
  return engine;
}
