/**
 * What the inference stage knows about a model file before running it
 * (`inspect --json` prints `ModelInfo` as it is).
 */
import type { Normalization, TensorDetails } from '../core/types.js';

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
