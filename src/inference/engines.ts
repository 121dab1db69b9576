import koffi from 'koffi';
import type { DelegateDescriptor } from './delegate.js';
import { ENGINE_NAMES, EngineLoadError, type EngineLoadOptions, type EngineName, type LoadedEngine, typedArrayFor } from './engine-api.js';
import { TfLiteCallError, TfLiteInterpreter, TfLiteLibrary, XNNPACK_FLAG_QS8 } from './tflite-c.js';

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
function firstReason(messages: readonly string[], fallback: string): string {
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
        notes.push(
          `the XNNPACK delegate does not apply to ${options.model} (${firstReason(err.messages, 'delegate refused')}): it runs on the default kernels`,
        );
        interpreter = create(lib, options, base, fail);
      }
    }
  } else if (name === 'edgetpu') {
    if (!options.delegate) throw new EngineLoadError('the edgetpu engine needs the Edge TPU delegate library (checked first)', name);
    const made = createExternalDelegate(options.delegate);
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
function createExternalDelegate(d: DelegateDescriptor): { delegate: bigint; destroy: () => void } {
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
