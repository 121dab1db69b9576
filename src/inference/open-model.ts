import type { TensorDetails } from '../core/types.js';
import type { DelegateDescriptor } from './delegate.js';
import { type TensorArray, typedArrayFor } from './engine-api.js';
import { chooseEngine, defaultCacheFile, type EngineChoice, type EngineSetting, type ThreadsSetting } from './engine-choice.js';
import type { ModelInfo } from './model-info.js';
import { InferenceSession } from './session.js';
import { readModelFile } from './tflite-model.js';

/** Options of `openModel`. */
export interface OpenModelOptions {
  readonly modelPath: string;
  /** Default `auto`: measured (and cached) as the daemon does. */
  readonly engine?: EngineSetting;
  /** Default `auto`. */
  readonly threads?: ThreadsSetting;
  /** The TFLite C library; default the bundled TFLite 2.9. */
  readonly library?: string;
  /** Engine choice cache; default `defaultCacheFile()`; null: measure every time. */
  readonly cacheFile?: string | null;
  /** New input shapes before allocation (by input position), e.g. a free-size input. */
  readonly inputShapes?: ReadonlyMap<number, readonly number[]>;
  /** The Edge TPU delegate for engine `edgetpu`, checked and probed beforehand (see `edgeTpuDelegate`, `probeDelegate`). */
  readonly delegate?: DelegateDescriptor;
  /** Which output the engines' agreement is checked on (default 0). */
  readonly compareOutput?: number;
}

/** What `openModel` gives. */
export interface OpenedModel {
  /** The running model: `inputs`/`outputs` as the runtime reports them, `run()`, slots. Close it when done. */
  readonly session: InferenceSession;
  /** The file's own description: tensor details with full quantization parameters, metadata, labels. */
  readonly info: ModelInfo;
  /** How the engine was chosen (the measured table, or the cached one; empty when given). */
  readonly choice: EngineChoice;
}

/**
 * Opens any TFLite model for inference on the configured engine and
 * threads — measured, checked for agreement and cached for `auto`, like the
 * daemon — in a worker thread. The engines are compared on a deterministic
 * pseudo-random input in each input's dtype (the classifier uses a picture
 * instead). Throws the file reader's error for an unreadable or non-TFLite
 * file, `chooseEngine`'s when no engine runs the model, and SessionLoadError
 * when the chosen engine fails to load it.
 */
export async function openModel(o: OpenModelOptions): Promise<OpenedModel> {
  const { bytes, info } = await readModelFile(o.modelPath);
  const load = {
    modelBytes: bytes,
    model: o.modelPath,
    threads: 1,
    ...(o.library ? { library: o.library } : {}),
    ...(o.inputShapes ? { inputShapes: o.inputShapes } : {}),
  };
  const engine = o.engine ?? 'auto';
  const index = o.compareOutput ?? 0;
  const out = info.outputs[index];
  let choice: EngineChoice;
  if (o.delegate || engine === 'edgetpu') {
    choice = { engine: 'edgetpu', threads: o.threads === 'auto' || o.threads === undefined ? 1 : o.threads, table: [], cached: false, key: '', warnings: [] };
  } else {
    choice = await chooseEngine({
      load,
      engine,
      threads: o.threads ?? 'auto',
      probe: info.inputs.map((t, i) => probeTensor(t, o.inputShapes?.get(i))),
      scores: { index, dtype: out?.dtype ?? 'float32', scale: out?.quantization[0] ?? 0, zero_point: out?.quantization[1] ?? 0 },
      cacheFile: o.cacheFile === undefined ? defaultCacheFile() : o.cacheFile,
    });
  }
  const session = await InferenceSession.open({ ...load, engine: choice.engine, threads: choice.threads, ...(o.delegate ? { delegate: o.delegate } : {}) });
  return { session, info, choice };
}

const BYTES: Record<string, number> = { float32: 4, int32: 4, uint32: 4, float64: 8, int64: 8, uint64: 8, int16: 2, uint16: 2, float16: 2 };

/** A deterministic pseudo-random tensor of `t`'s dtype and shape: floats in [-1, 1], integers over their whole range. */
function probeTensor(t: TensorDetails, shape?: readonly number[]): TensorArray {
  const count = (shape ?? t.shape).reduce((a, b) => a * Math.max(b, 1), 1);
  const bytes = new Uint8Array(count * (BYTES[t.dtype] ?? 1));
  let seed = 0x2545f491;
  for (let i = 0; i < bytes.length; i++) {
    seed = (seed * 1664525 + 1013904223) >>> 0;
    bytes[i] = seed >>> 24;
  }
  const arr = typedArrayFor(t.dtype, bytes.buffer);
  if (arr instanceof Float32Array || arr instanceof Float64Array) for (let i = 0; i < arr.length; i++) arr[i] = ((i * 2654435761) % 2001) / 1000 - 1;
  return arr;
}
