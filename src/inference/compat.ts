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

/** How a model is going to be run, for {@link modelProblems}. */
export interface RunPlan {
  /** The Edge TPU op may be in the model: it runs with the Edge TPU delegate, or a CPU fallback model replaces it. */
  readonly edgeTpu: boolean;
  /** preprocess.mean/std are configured (a float32 input then needs no metadata normalization). */
  readonly normalizationConfigured: boolean;
}

/**
 * The model-compatibility check, shared by preflight (`--check-config`, and
 * before `run` and a reload) and the classifier: every reason the daemon
 * cannot feed `info` and read its result as planned, one sentence each
 * naming the model — not one RGB image input `[1,H,W,3]` uint8/int8/float32
 * (NHWC), no class-score output `[1,N]`/`[N]` uint8/int8/float32, a custom op
 * this runtime lacks ({@link customOpMessage}; the Edge TPU op unless
 * `plan.edgeTpu`), a float32 input without normalization
 * ({@link missingNormalizationMessage}). Empty when the model can run.
 */
export function modelProblems(info: ModelInfo, plan: RunPlan): string[] {
  const problems: string[] = [];
  const input = info.inputs[0];
  if (info.inputs.length !== 1 || input === undefined) {
    problems.push(`${info.path} has ${info.inputs.length} inputs: expected one image input`);
  } else {
    try {
      checkImageInput(input);
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  const output = info.outputs[0];
  if (output === undefined) problems.push(`${info.path} has no output tensor`);
  else {
    try {
      checkScoresOutput(output);
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
