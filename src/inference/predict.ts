import { readFile } from 'node:fs/promises';
import { customOpMessage } from './compat.js';
import type { EngineName } from './engine-api.js';
import { InferenceSession } from './session.js';
import { type InputSpec, jsonToTensor, matchInputs, type TensorJson, TensorValueError, tensorToJson } from './tensor-json.js';
import { readModelFile } from './tflite-model.js';

/** Options of `predict`. */
export interface PredictOptions {
  readonly modelPath: string;
  /** One per model input (see `parseInputSpec`). */
  readonly inputs: readonly InputSpec[];
  /** Values of quantized inputs are the stored integers, not real values. */
  readonly raw?: boolean;
  /** Interpreter threads; default 1. */
  readonly threads?: number;
  /**
   * Engine to run on (default `tflite`, the TFLite C API's default kernels: the
   * reference the other engines are compared with). `edgetpu` is not offered:
   * a model compiled for the Edge TPU is checked with `classify`.
   */
  readonly engine?: Exclude<EngineName, 'edgetpu'>;
  /** TFLite C library (default: the bundled one). */
  readonly library?: string;
  /** What the engine says the user should know (e.g. that XNNPACK did not apply); default: ignored. */
  readonly onNote?: (note: string) => void;
}

/** What `predict` prints. */
export interface PredictResult {
  readonly model: string;
  readonly outputs: TensorJson[];
  /** Time inside invoke, ms. */
  readonly inference_ms: number;
}

async function readJson(spec: InputSpec): Promise<unknown> {
  let text = spec.json;
  const where = spec.file ? `--input '${spec.arg}' (file ${spec.file})` : `--input '${spec.arg}'`;
  if (spec.file !== undefined) {
    try {
      text = await readFile(spec.file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new TensorValueError(`${where}: cannot read the file: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
    }
  }
  try {
    return JSON.parse(text!);
  } catch (err) {
    throw new TensorValueError(`${where}: not JSON (${(err as Error).message}): expected nested arrays such as [[10.0]]`);
  }
}

/**
 * The interpreter's own loop for any model: set_tensor (each `--input`
 * converted to its tensor's dtype and shape, quantized with its scale and
 * zero point), invoke, get_tensor for every output (nested in its shape,
 * dequantized values beside the raw ones for quantized outputs).
 *
 * Throws TensorValueError for input values that do not fit (see
 * `jsonToTensor`, `matchInputs`), FlatbufferFormatError for a file that is
 * not a TFLite model, and an Error when the runtime cannot load or run it.
 */
export async function predict(options: PredictOptions): Promise<PredictResult> {
  const { bytes, info } = await readModelFile(options.modelPath);
  if (info.custom_ops.length) throw new Error(customOpMessage(info.custom_ops[0]!, options.modelPath));
  const targets = matchInputs(options.inputs, info.inputs);
  const values = new Map<number, ArrayBufferView>();
  for (let i = 0; i < options.inputs.length; i++) {
    const t = targets[i]!;
    values.set(t.index, jsonToTensor(await readJson(options.inputs[i]!), t, { raw: options.raw ?? false }) as ArrayBufferView);
  }
  const session = await InferenceSession.open({
    modelBytes: bytes,
    model: options.modelPath,
    engine: options.engine ?? 'tflite',
    threads: options.threads ?? 1,
    ...(options.library !== undefined ? { library: options.library } : {}),
  });
  for (const note of session.notes) options.onNote?.(note);
  try {
    const result = await session.run(info.inputs.map((t) => values.get(t.index)!));
    return {
      model: options.modelPath,
      outputs: info.outputs.map((t, i) => tensorToJson(result.outputs[i] as Parameters<typeof tensorToJson>[0], t)),
      inference_ms: result.inference_ms,
    };
  } finally {
    await session.close();
  }
}
