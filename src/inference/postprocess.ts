import type { ClassScore, TensorDetails } from '../core/types.js';
import { labelFor } from './labels.js';

/** Typed arrays an output tensor can arrive in. */
export type OutputArray = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array;

/**
 * Dequantizes a whole output tensor: real[i] = (q[i] - zero_point) * scale,
 * for uint8/int8/int16/int32 outputs, into `out` (reused when given and long
 * enough, so the daemon allocates nothing per frame) or a new Float32Array.
 * A Float32Array input is returned untouched (float outputs are already real
 * values), whatever `scale` is. A scale of 0 means "not quantized" in TFLite
 * (`quantization: [0, 0]`): the values are then converted as they are.
 */
export function dequantize(q: OutputArray, scale: number, zeroPoint: number, out?: Float32Array): Float32Array {
  if (q instanceof Float32Array) return q;
  const n = q.length;
  const dst = out && out.length >= n ? (out.length === n ? out : out.subarray(0, n)) : new Float32Array(n);
  if (scale === 0) {
    for (let i = 0; i < n; i++) dst[i] = q[i]!;
  } else {
    for (let i = 0; i < n; i++) dst[i] = (q[i]! - zeroPoint) * scale;
  }
  return dst;
}

/** Labels for `topK`: an array indexed by class, or anything with `labelFor(index)` (e.g. `Labels`). */
export type LabelSource = readonly (string | undefined)[] | { labelFor(index: number): string };

/**
 * The `k` highest scores that are at least `threshold`, highest first; equal
 * scores in ascending class index order. Labels come from `labels`, with
 * `class <index>` for classes without one. NaN scores are never selected.
 * k larger than the number of classes returns every class above the
 * threshold; k ≤ 0 returns [].
 *
 * Cost: one pass over the scores keeping a sorted list of at most k entries
 * (insertion, O(N·k) worst case, O(N) when few scores beat the current k-th),
 * instead of sorting all N (e.g. 1001) scores every frame. Scores keep full
 * float precision; round only for display.
 */
export function topK(scores: ArrayLike<number>, k: number, threshold: number, labels?: LabelSource): ClassScore[] {
  const limit = Math.min(Math.floor(k), scores.length);
  if (!(limit > 0)) return [];
  const bestIndex: number[] = [];
  const bestScore: number[] = [];
  for (let i = 0; i < scores.length; i++) {
    const s = scores[i]!;
    if (!(s >= threshold)) continue; // also skips NaN
    const count = bestScore.length;
    if (count === limit && s <= bestScore[count - 1]!) continue; // ties keep the lower index already held
    // Insertion point: after every entry with a score >= s (stable for ties).
    let pos = count;
    while (pos > 0 && bestScore[pos - 1]! < s) pos--;
    bestScore.splice(pos, 0, s);
    bestIndex.splice(pos, 0, i);
    if (bestScore.length > limit) {
      bestScore.pop();
      bestIndex.pop();
    }
  }
  const lookup =
    labels === undefined
      ? (i: number) => labelFor(undefined, i)
      : 'labelFor' in labels
        ? (i: number) => labels.labelFor(i)
        : (i: number) => labelFor(labels, i);
  return bestIndex.map((index, n) => ({ index, label: lookup(index), score: bestScore[n]! }));
}

/**
 * Checks that a model output holds class scores: shape [1,N] or [N] with
 * N ≥ 1, dtype uint8, int8 or float32. Returns N (the number of classes).
 * Throws an Error naming the tensor, its shape and dtype and what is expected.
 */
export function checkScoresOutput(output: TensorDetails): number {
  const s = output.shape;
  const classes = s[s.length - 1] ?? 0;
  if (!((s.length === 2 && s[0] === 1) || s.length === 1) || classes < 1 || !['uint8', 'int8', 'float32'].includes(output.dtype)) {
    throw new Error(
      `model output '${output.name}' has shape [${s.join(',')}] and dtype ${output.dtype}: expected class scores of shape [1,N] or [N] with dtype uint8, int8 or float32`,
    );
  }
  return classes;
}
