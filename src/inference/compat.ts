import type { TensorDetails } from '../core/types.js';
import type { ModelInfo } from './model-info.js';
import { checkScoresOutput } from './postprocess.js';
import { checkImageInput } from './preprocess/preprocess.js';
import { missingNormalizationMessage } from './preprocess/quantize.js';
import { EDGETPU_CUSTOM_OP } from './tflite-model.js';

/**
 * The one message for a model compiled by edgetpu_compiler that is asked to
 * run on the CPU: TFLite fails at allocation with "Encountered unresolved
 * custom op: edgetpu-custom-op", so this is said before it is loaded.
 */
export function edgeTpuOnlyMessage(model: string): string {
  return `${model} is compiled for the Edge TPU and cannot run on the CPU (it holds the custom op ${EDGETPU_CUSTOM_OP}): set inference.delegate to edgetpu, or use the model's CPU version (the .tflite before edgetpu_compiler, usually the same name without _edgetpu)`;
}

/**
 * Why `model` cannot run because of the custom op `op`: for
 * `edgetpu-custom-op` {@link edgeTpuOnlyMessage}; for any other op, that this
 * runtime (builtin ops only) lacks it.
 */
export function customOpMessage(op: string, model: string): string {
  if (op === EDGETPU_CUSTOM_OP) return edgeTpuOnlyMessage(model);
  return `${model} uses the custom op '${op}', which this TFLite runtime does not provide (only builtin ops are available): re-convert the model without custom ops`;
}

/** Custom op of SSD object detection heads (boxes, classes, scores, count), which TFLite's builtin op resolver registers. */
const DETECTION_POSTPROCESS_OP = 'TFLite_Detection_PostProcess';

/** Height and width given to an input with free height/width when `preprocess.input_size` is not set. */
const DEFAULT_INPUT_SIZE = 224;

/** Why an object detection model is refused: what it is, and what the daemon runs. */
function detectionModelMessage(model: string): string {
  return `${model} is an object detection model (its ${DETECTION_POSTPROCESS_OP} op outputs boxes, classes and scores): the daemon runs image classifiers, whose output is one class-scores tensor [1,N]; use an image classification model`;
}

/** How a model is going to be run, for {@link modelProblems}. */
export interface RunPlan {
  /** The Edge TPU op may be in the model: it runs with the Edge TPU delegate, or a CPU fallback model replaces it. */
  readonly edgeTpu: boolean;
  /** preprocess.mean/std are configured (a float32 input then needs no metadata normalization). */
  readonly normalizationConfigured: boolean;
  /** preprocess.input_size: [height, width] for an input with free height/width. */
  readonly inputSize?: readonly [number, number] | undefined;
}

/** True when the input's height or width is free: -1 in `shape_signature` (or a non-positive size in `shape`). */
export function hasFreeSize(input: TensorDetails): boolean {
  const free = (i: number) => (input.shape_signature[i] ?? 1) < 0 || (input.shape[i] ?? 1) <= 0;
  return input.shape.length === 4 && (free(1) || free(2));
}

/**
 * The input as it is fed: unchanged when its size is fixed; with free
 * height/width (what the converter writes for a Keras model without a fixed
 * input size: shape [1,1,1,3] or [1,-1,-1,3], shape_signature [1,-1,-1,3]),
 * shape [1,H,W,C] from `inputSize` or DEFAULT_INPUT_SIZE — the interpreter is
 * resized to it (`TfLiteInterpreterResizeInputTensor`) before allocation.
 */
export function effectiveInput(input: TensorDetails, inputSize?: readonly [number, number]): TensorDetails {
  if (!hasFreeSize(input)) return input;
  const [h, w] = inputSize ?? [DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE];
  return { ...input, shape: [1, h, w, input.shape[3] ?? 3] };
}

const SCORE_NAMES = /prob|score|softmax|predict|logit|class/i;

/**
 * Which output holds the class scores: the outputs of shape [1,N] or [N] with
 * N ≥ 2 and dtype uint8/int8/float32 are candidates; output 0 when it is one
 * (what every single-output classifier has); else the candidate whose name
 * says scores (prob, score, softmax, predictions, logits, class), else the
 * first candidate. Null when no output can hold class scores.
 */
export function scoresOutputIndex(info: ModelInfo): number | null {
  const candidates: number[] = [];
  info.outputs.forEach((o, i) => {
    const s = o.shape;
    const n = s[s.length - 1] ?? 0;
    if (((s.length === 2 && s[0] === 1) || s.length === 1) && n >= 2 && ['uint8', 'int8', 'float32'].includes(o.dtype)) candidates.push(i);
  });
  if (candidates.length === 0) return null;
  if (candidates[0] === 0) return 0;
  return candidates.find((i) => SCORE_NAMES.test(info.outputs[i]!.name)) ?? candidates[0]!;
}

/**
 * The model-compatibility check, shared by preflight (`--check-config`, and
 * before `run` and a reload) and the classifier: every reason the daemon
 * cannot feed `info` and read its result as planned, one sentence each
 * naming the model — an object detection model ({@link detectionModelMessage},
 * alone), not one RGB image input `[1,H,W,3]` uint8/int8/float32 (NHWC; a
 * free height/width takes `plan.inputSize`), no class-score output
 * (`[1,N]`/`[N]`, N ≥ 2, uint8/int8/float32, see {@link scoresOutputIndex}),
 * a custom op this runtime lacks ({@link customOpMessage}; the Edge TPU op
 * unless `plan.edgeTpu`), a float32 input without normalization
 * ({@link missingNormalizationMessage}). Empty when the model can run.
 */
export function modelProblems(info: ModelInfo, plan: RunPlan): string[] {
  if (info.custom_ops.includes(DETECTION_POSTPROCESS_OP)) return [detectionModelMessage(info.path)];
  const problems: string[] = [];
  const input = info.inputs[0];
  if (info.inputs.length !== 1 || input === undefined) {
    problems.push(`${info.path} has ${info.inputs.length} inputs: expected one image input`);
  } else {
    try {
      checkImageInput(effectiveInput(input, plan.inputSize));
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  const output = info.outputs[0];
  if (output === undefined) problems.push(`${info.path} has no output tensor`);
  else if (scoresOutputIndex(info) === null) {
    try {
      checkScoresOutput(output);
      problems.push(`${info.path} has no output of class scores: expected [1,N] or [N] with N ≥ 2 classes`);
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  for (const op of info.custom_ops) {
    if (op === EDGETPU_CUSTOM_OP && plan.edgeTpu) continue;
    problems.push(customOpMessage(op, info.path));
  }
  if (input?.dtype === 'float32' && !info.metadata?.normalization && !plan.normalizationConfigured) {
    problems.push(missingNormalizationMessage(info.path));
  }
  return problems;
}
