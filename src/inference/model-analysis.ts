import { ByteBuffer } from 'flatbuffers';
import type { DType } from '../core/types.js';
import type { ModelInfo } from './model-info.js';
import { EDGETPU_CUSTOM_OP, TENSOR_TYPES, TflModel } from './tflite-model.js';

/*
 * What kind of quantization a .tflite model carries, read from its operators
 * and constant tensors. The converter paths it tells apart (TensorFlow's
 * "Post-training quantization" guide and the TF1 QAT flow):
 *
 * | kind            | constant weights                | activations (non-constant tensors)  |
 * | float32         | float32                         | float32                             |
 * | float16         | FLOAT16, each read through a DEQUANTIZE op | float32                  |
 * | dynamic-range   | int8 feeding CONV_2D/FC/... directly (hybrid kernels) | float32       |
 * | full-integer    | int8 (int32 biases)             | int8 (or int16 for 16x8); I/O float32, uint8 or int8 |
 * | uint8-qat       | uint8 (TF1 quantization-aware training / quantized_uint8) | uint8     |
 * | edgetpu         | compiled into the `edgetpu-custom-op` by edgetpu_compiler |          |
 */

/** The quantization kinds `inspect`, `eval` and `compare` report. */
type QuantizationKind = 'float32' | 'float16' | 'dynamic-range' | 'full-integer' | 'uint8-qat' | 'edgetpu';

/** How each kind is written for people (the TensorFlow guide's names). */
const KIND_LABELS: Readonly<Record<QuantizationKind, string>> = {
  float32: 'float32',
  float16: 'float16',
  'dynamic-range': 'dynamic-range',
  'full-integer': 'full-integer',
  'uint8-qat': 'uint8 (TF1 quantization-aware)',
  edgetpu: 'edgetpu',
};

/** The quantization of a model, as `inspect --json` prints it under `quantization_kind`. */
export interface QuantizationAnalysis {
  readonly kind: QuantizationKind;
  /** `KIND_LABELS[kind]`, e.g. `uint8 (TF1 quantization-aware)`. */
  readonly label: string;
  /** One line, e.g. `full-integer: int8 activations, uint8 input, uint8 output`. */
  readonly summary: string;
  /** dtypes of the activations (non-constant tensors other ops compute on), e.g. ['int8']; index dtypes (int32, int64, bool) left out. */
  readonly activation_dtypes: DType[];
  /** dtypes of the model's inputs and outputs, in order. */
  readonly input_dtypes: DType[];
  readonly output_dtypes: DType[];
  /**
   * Number of weight values: the elements of every constant tensor except
   * unquantized int32/int64 ones (shapes and axes, e.g. a RESHAPE's target
   * shape). null for an Edge TPU model: its weights are inside the compiled
   * op, in a format only the Edge TPU runtime reads.
   */
  readonly parameters: number | null;
  /** Bytes of constant data by dtype (the same tensors as `parameters`, each buffer counted once), e.g. `{"int8": 470000, "int32": 4000}`. */
  readonly weight_bytes: Partial<Record<DType, number>>;
  /** Number of constant weight tensors by dtype. */
  readonly weight_tensors: Partial<Record<DType, number>>;
  /** True when some weight tensor has one scale per output channel (the TF2 converter's default for CONV_2D and DEPTHWISE_CONV_2D). */
  readonly per_channel: boolean;
}

/** `BuiltinOperator` values of schema.fbs the analysis tells apart. */
const OP_DEQUANTIZE = 6;
const OP_QUANTIZE = 114;

/** dtypes that hold indices, shapes or flags rather than activations. */
const INDEX_DTYPES: ReadonlySet<DType> = new Set<DType>(['int32', 'int64', 'bool', 'string', 'resource', 'variant']);

const add = <K extends string>(to: Partial<Record<K, number>>, key: K, n: number) => {
  to[key] = (to[key] ?? 0) + n;
};

/**
 * Reads the quantization kind, parameter count and weight bytes by dtype of
 * a TFLite model from its bytes (the whole .tflite file) and its `info`
 * (from `parseModel`, which has already checked the identifier).
 *
 * Rules, first match wins: the custom op `edgetpu-custom-op` → `edgetpu`;
 * int8 or int16 activations → `full-integer`; uint8 activations with uint8
 * weights → `uint8-qat`; float activations with an int8/uint8 weight that an
 * op other than DEQUANTIZE reads (hybrid kernels), or int8 weights read
 * through DEQUANTIZE → `dynamic-range`; FLOAT16 weights read through
 * DEQUANTIZE → `float16`; else `float32`. Activations are the non-constant
 * inputs and outputs of every op but QUANTIZE and DEQUANTIZE (those only
 * convert at the model's edges). Only the main subgraph (0) is read.
 *
 * Throws FlatbufferFormatError when the file is corrupt.
 */
export function analyzeModel(bytes: Uint8Array, info: ModelInfo): QuantizationAnalysis {
  const bb = new ByteBuffer(bytes);
  const model = TflModel.getRootAsModel(bb, info.path);
  const subgraph = model.subgraphs(0);
  const tensorCount = subgraph.tensorsLength();
  const bufferCount = model.buffersLength();

  const dtypes: DType[] = new Array<DType>(tensorCount);
  const constant: boolean[] = new Array<boolean>(tensorCount).fill(false);
  let parameters = 0;
  let perChannel = false;
  const weightBytes: Partial<Record<DType, number>> = {};
  const weightTensors: Partial<Record<DType, number>> = {};
  const seenBuffers = new Set<number>();
  for (let i = 0; i < tensorCount; i++) {
    const tensor = subgraph.tensors(i);
    const dtype = TENSOR_TYPES[tensor.type()] ?? 'variant';
    dtypes[i] = dtype;
    const b = tensor.buffer();
    if (b === 0 || b >= bufferCount) continue;
    const data = model.buffers(b).dataArray();
    if (data.length === 0) continue;
    constant[i] = true;
    const q = tensor.quantization();
    const scales = q ? q.scaleArray().length : 0;
    if (INDEX_DTYPES.has(dtype) && scales === 0) continue; // a shape or an axis, not a weight
    if (scales > 1) perChannel = true;
    if (seenBuffers.has(b)) continue;
    seenBuffers.add(b);
    parameters += tensor.shapeArray().reduce((a, d) => a * d, 1);
    add(weightBytes, dtype, data.length);
    add(weightTensors, dtype, 1);
  }

  const codes: number[] = [];
  for (let i = 0; i < model.operatorCodesLength(); i++) codes.push(model.operatorCodes(i).builtinCode());
  const activations = new Set<DType>();
  const computeWeights = new Set<DType>();
  const dequantizedWeights = new Set<DType>();
  for (let o = 0; o < subgraph.operatorsLength(); o++) {
    const op = subgraph.operators(o);
    const code = codes[op.opcodeIndex()];
    const inputs = op.inputsArray().filter((i) => i >= 0 && i < tensorCount);
    const outputs = op.outputsArray().filter((i) => i >= 0 && i < tensorCount);
    if (code === OP_DEQUANTIZE) {
      for (const i of inputs) if (constant[i]) dequantizedWeights.add(dtypes[i]!);
      continue;
    }
    if (code === OP_QUANTIZE) continue;
    for (const i of [...inputs, ...outputs]) {
      const d = dtypes[i]!;
      if (constant[i]) computeWeights.add(d);
      else if (!INDEX_DTYPES.has(d)) activations.add(d);
    }
  }

  const inputDtypes = info.inputs.map((t) => t.dtype);
  const outputDtypes = info.outputs.map((t) => t.dtype);
  const io = `${inputDtypes.join('+') || 'no'} input, ${outputDtypes.join('+') || 'no'} output`;
  let kind: QuantizationKind;
  let summary: string;
  if (info.custom_ops.includes(EDGETPU_CUSTOM_OP)) {
    kind = 'edgetpu';
    summary = `compiled for the Coral Edge TPU by edgetpu_compiler (weights inside ${EDGETPU_CUSTOM_OP}), ${io}`;
  } else if (activations.has('int8') || activations.has('int16')) {
    kind = 'full-integer';
    const act = activations.has('int16') ? 'int16 activations with int8 weights (16x8)' : 'int8 activations';
    summary = `${act}, ${io}`;
  } else if (activations.has('uint8') && computeWeights.has('uint8')) {
    kind = 'uint8-qat';
    summary = `uint8 weights and activations (TF1 quantization-aware training), ${io}`;
  } else if (activations.has('uint8') && computeWeights.has('int8')) {
    kind = 'full-integer';
    summary = `uint8 activations, int8 weights, ${io}`;
  } else if (computeWeights.has('int8') || computeWeights.has('uint8') || dequantizedWeights.has('int8')) {
    kind = 'dynamic-range';
    const n = (weightTensors.int8 ?? 0) + (weightTensors.uint8 ?? 0);
    summary = `${n} int8 weight tensors${perChannel ? ' (per channel)' : ''}, float32 activations, ${io}`;
  } else if (dequantizedWeights.has('float16')) {
    kind = 'float16';
    summary = `${weightTensors.float16 ?? 0} float16 weight tensors dequantized at run time, float32 activations, ${io}`;
  } else {
    kind = 'float32';
    summary = `no quantization, ${io}`;
  }
  return {
    kind,
    label: KIND_LABELS[kind],
    summary: `${KIND_LABELS[kind]}: ${summary}`,
    activation_dtypes: [...activations].sort(),
    input_dtypes: inputDtypes,
    output_dtypes: outputDtypes,
    parameters: kind === 'edgetpu' ? null : parameters,
    weight_bytes: weightBytes,
    weight_tensors: weightTensors,
    per_channel: perChannel,
  };
}

/**
 * A number of bytes for people: `1.88 MB`, `584 kB`, `640 B` (SI units,
 * 1 kB = 1000 bytes, as file managers on Linux show sizes).
 */
export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toPrecision(3)} kB`;
  if (n < 1e9) return `${(n / 1e6).toPrecision(3)} MB`;
  return `${(n / 1e9).toPrecision(3)} GB`;
}
