/**
 * Shapes shared by the inference stage and its users. Field names of
 * `TensorDetails` follow TFLite's Python `Interpreter.get_input_details()`
 * (snake_case) so that `inspect --json` reads like what TensorFlow users know.
 */

/** Tensor element types, named as TFLite's `TensorType` enum in lower case. */
export type DType =
  | 'float32' | 'float16' | 'float64'
  | 'int8' | 'uint8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'int64' | 'uint64'
  | 'bool' | 'string' | 'complex64' | 'complex128' | 'resource' | 'variant' | 'int4';

/** Per-tensor or per-axis quantization: real = (q - zero_point) * scale. */
export interface QuantizationParameters {
  readonly scales: number[];
  readonly zero_points: number[];
  readonly quantized_dimension: number;
}

/** One input or output tensor, read from the .tflite flatbuffer. */
export interface TensorDetails {
  readonly name: string;
  /** Index of the tensor in the subgraph's tensor list. */
  readonly index: number;
  /** e.g. [1,224,224,3] for an NHWC image input. */
  readonly shape: number[];
  /** As `shape`, with -1 for dynamic dimensions. */
  readonly shape_signature: number[];
  readonly dtype: DType;
  /** [scale, zero_point] of per-tensor quantization; [0, 0] when not quantized. */
  readonly quantization: [number, number];
  readonly quantization_parameters: QuantizationParameters;
}

/** Normalization of a float input: x = (pixel - mean[c]) / std[c], per RGB channel. */
export interface Normalization {
  readonly mean: number[];
  readonly std: number[];
}

/** What TFLite metadata (the `TFLITE_METADATA` buffer and its appended zip) says about a model. */
export interface ModelMetadata {
  readonly name?: string;
  readonly description?: string;
  readonly version?: string;
  readonly author?: string;
  readonly license?: string;
  /** Input normalization from the input tensor's NormalizationOptions process unit. */
  readonly normalization?: Normalization;
  /** Labels from the associated file of type TENSOR_AXIS_LABELS of the first output. */
  readonly labels?: string[];
  /** Name of the file the labels came from, e.g. `labels.txt`. */
  readonly labels_file?: string;
  /** Names of every file in the appended zip archive. */
  readonly associated_files: string[];
}

/**
 * Something wrong with a model file that does not stop it from running, e.g. a
 * malformed TFLite metadata buffer or a labels file missing from the appended
 * zip archive. `inspect` prints these; the classifier logs them at warn level.
 */
export interface ModelProblem {
  readonly level: 'warning';
  readonly message: string;
}

/** Everything the daemon knows about a model before running it. */
export interface ModelInfo {
  readonly path: string;
  readonly size_bytes: number;
  /** Schema version from the flatbuffer. */
  readonly version: number;
  readonly description?: string;
  readonly inputs: TensorDetails[];
  readonly outputs: TensorDetails[];
  readonly metadata: ModelMetadata | null;
  /** Custom operator codes used by the model, e.g. ['edgetpu-custom-op']. */
  readonly custom_ops: string[];
  /** True when the model was compiled by edgetpu_compiler and cannot run on the CPU. */
  readonly requires_edgetpu: boolean;
  /** The `min_runtime_version` metadata entry written by the converter, e.g. `1.5.0`. */
  readonly min_runtime_version?: string;
  /** Non-fatal problems found while reading the file (warnings). */
  readonly problems: ModelProblem[];
}

/** One class of a classification result; `score` is a dequantized probability in [0,1] for softmax outputs. */
export interface ClassScore {
  readonly index: number;
  readonly label: string;
  readonly score: number;
}

/** Stage timings of one classification, in milliseconds. */
export interface Timings {
  /** Decode + resize + tensor fill (sharp). */
  readonly preprocess_ms: number;
  /** Time inside the interpreter's invoke(), measured in the worker. */
  readonly inference_ms: number;
  /** Dequantize + top-k. */
  readonly postprocess_ms: number;
  /** From frame arrival (or call) to result. */
  readonly total_ms: number;
}

/** The result of classifying one frame or file: what `classify --json` and the MQTT prediction carry. */
export interface Classification {
  /** Top-k classes above the score threshold, highest score first. */
  readonly classes: ClassScore[];
  readonly timings: Timings;
}
