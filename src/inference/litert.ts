import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import { EngineLoadError, liteRtVersion, typedArrayFor, type EngineLoadOptions, type LoadedEngine, type TensorArray } from './engines.js';
import type { RuntimeTensor } from './tflite-c.js';

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
  // Emscripten binds console.* when the module starts: route them through `quiet` for good.
  const saved = { log: console.log, warn: console.warn, error: console.error, info: console.info, debug: console.debug };
  Object.assign(console, { log: quiet, warn: quiet, error: quiet, info: quiet, debug: quiet });
  try {
    await mod.loadLiteRt(dir);
  } finally {
    Object.assign(console, saved);
  }
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
  sink = messages;
  let model: CompiledModel;
  try {
    model = await mod.loadAndCompile(options.modelBytes, { accelerator: 'wasm' });
  } catch (err) {
    sink = null;
    const all = [...messages, String((err as Error)?.message ?? err)].map((m) => m.trim()).filter((m) => m.startsWith('ERROR:') || !/^(INFO|WARNING):/.test(m));
    const reason = all.find((m) => !/^ERROR: \[/.test(m) && !/litert_web\.cc|litert_compiled_model/.test(m)) ?? all[0] ?? 'unknown error';
    throw new EngineLoadError(`litert-wasm cannot run ${options.model}: ${reason.replace(/^ERROR:\s*/, '').split('\n')[0]}`, 'litert-wasm', all);
  }
  sink = null;
  // LiteRT.js compiles a model with an unknown custom op and then runs it to zeros: refuse it as TFLite does.
  const unresolved = messages.map((m) => /unresolved custom op: ([^\s.]+(?:\.[^\s.]+)*)/.exec(m)).find((m) => m);
  if (unresolved) {
    model.delete();
    throw new EngineLoadError(`litert-wasm cannot run ${options.model}: Encountered unresolved custom op: ${unresolved[1]}.`, 'litert-wasm', messages);
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
    throw new EngineLoadError(`litert-wasm cannot run ${options.model}: tensor '${bad.name}' is ${bad.dtype}, and LiteRT.js handles float32, int32 and uint8 tensors only`, 'litert-wasm');
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
