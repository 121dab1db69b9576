import { invalidParameterError } from '../../core/errors.js';
import type { Normalization, TensorDetails } from '../../core/types.js';

/** Integer dtypes a quantized tensor can have here. */
export type QuantizedDType = 'uint8' | 'int8' | 'int16';

/** Input tensor dtypes the preprocessor can fill. */
export type InputDType = 'uint8' | 'int8' | 'float32';

/** The typed array holding an input tensor of each `InputDType`, NHWC packed RGB. */
export type InputTensorArray = Uint8Array | Int8Array | Float32Array;

/** [min, max] of each integer dtype. */
const DTYPE_RANGES: Readonly<Record<QuantizedDType, readonly [number, number]>> = {
  uint8: [0, 255],
  int8: [-128, 127],
  int16: [-32768, 32767],
};

/**
 * Rounds half away from zero (2.5 → 3, -2.5 → -3), as C's `round()` which
 * TFLite's reference Quantize kernel uses (`TfLiteRound`); JavaScript's
 * `Math.round` rounds -2.5 to -2.
 */
export function roundHalfAwayFromZero(x: number): number {
  return x < 0 ? -Math.round(-x) : Math.round(x);
}

/**
 * Quantizes a real value for a tensor with the given scale and zero point:
 * `q = clamp(round(real / scale) + zero_point, dtype min, dtype max)` — the
 * affine quantization of the TFLite quantization spec (real = (q − zero_point)
 * × scale), rounding half away from zero. E.g. real 0.5, scale 1/128, zero
 * point 128, uint8 → 192; real −2, same → 0 (clamped); int8 with zero point 0
 * and real 200×scale → 127. Throws a RangeError when scale is not a positive
 * finite number.
 */
export function quantize(real: number, scale: number, zeroPoint: number, dtype: QuantizedDType): number {
  if (!(scale > 0) || !Number.isFinite(scale)) {
    throw invalidParameterError('quantization scale', 'a positive number', scale);
  }
  const [lo, hi] = DTYPE_RANGES[dtype];
  const q = roundHalfAwayFromZero(real / scale) + zeroPoint;
  return q < lo ? lo : Math.min(q, hi);
}

/** Where the mean/std of a pixel mapping came from. */
type NormalizationSource = 'config' | 'metadata' | 'quantization';

/**
 * How 8-bit RGB pixels become an input tensor.
 * - `identity`: the uint8 tensor IS the pixel bytes (no pass over the data).
 * - `table`: `lut[c * 256 + p]` is the tensor value for pixel value p on
 *   channel c (0 R, 1 G, 2 B) — one 768-entry lookup per element.
 */
export type PixelMapping =
  | {
      readonly kind: 'identity';
      readonly dtype: 'uint8';
      readonly source: NormalizationSource;
      /** The mean/std in effect, per channel (R, G, B). */
      readonly normalization: Normalization;
    }
  | {
      readonly kind: 'table';
      readonly dtype: InputDType;
      readonly source: NormalizationSource;
      readonly normalization: Normalization;
      readonly lut: InputTensorArray;
    };

/** What to resolve a pixel mapping from: a configured normalization wins over the model's metadata. */
export interface PixelMappingOptions {
  /** preprocess.mean / preprocess.std from the configuration. */
  readonly normalization?: Normalization;
  /** NormalizationOptions from the model's TFLite metadata. */
  readonly metadataNormalization?: Normalization;
  /** The model file, for messages. */
  readonly model?: string;
}

/**
 * The one message for a float32 input whose normalization is unknown (used by
 * the model-compatibility check and by `resolvePixelMapping`): without mean
 * and std the pixel values cannot be mapped onto the range the model was
 * trained on.
 */
export function missingNormalizationMessage(model: string): string {
  return `${model} has a float32 input and no normalization in its metadata: set preprocess.mean and preprocess.std (e.g. 127.5 and 127.5 for inputs in [-1,1], 0 and 255 for [0,1])`;
}

/**
 * Decides how pixels p ∈ 0..255 become the values of `input` (a uint8, int8
 * or float32 tensor), and builds the lookup table once.
 *
 * The rule: a pixel p on channel c represents the real value
 * r = (p − mean[c]) / std[c]. mean/std come from the configuration, else from
 * the model's metadata (NormalizationOptions; the TFLite metadata schema says
 * quantized models share their float model's normalization and the real value
 * is then quantized), else — for quantized inputs only — from the input's
 * quantization itself: its representable real range IS the pixel range, so
 * mean = zero_point − dtype_min and std = 1 / scale, which makes uint8 q = p
 * (raw bytes: how MobileNet quant models are fed) and int8 q = p − 128 (the
 * converter's uint8 → int8 input shift). Quantized values are
 * q = clamp(round(r / scale) + zero_point) (see `quantize`); float32 values
 * are r itself.
 *
 * A metadata normalization that would saturate a quantized input (a pixel
 * value landing more than one step outside the dtype's range, e.g. the AutoML
 * flowers model: mean 0, std 1 on an input with scale 1/127) is not used:
 * the quantization-implied mapping is, with a warning — TFLite's task library
 * likewise copies pixel bytes straight into uint8 inputs
 * (tflite-support image_preprocessor.cc). A configured normalization is used
 * as given, with the same warning.
 *
 * Returns the mapping and the warnings (sentences). Throws when the input is
 * float32 and no normalization is known ({@link missingNormalizationMessage}),
 * when a mean/std has neither 1 nor 3 values or a std is 0, and when the dtype
 * is not uint8, int8 or float32.
 */
export function resolvePixelMapping(input: TensorDetails, options: PixelMappingOptions = {}): { mapping: PixelMapping; warnings: string[] } {
  const model = options.model ?? 'the model';
  const warnings: string[] = [];
  const dtype = input.dtype;
  if (dtype !== 'uint8' && dtype !== 'int8' && dtype !== 'float32') {
    throw new Error(`model input '${input.name}' has dtype ${dtype}: expected uint8, int8 or float32`);
  }
  const configured = options.normalization ? perChannel(options.normalization, 'preprocess.mean/std') : undefined;
  const fromMetadata = options.metadataNormalization ? perChannel(options.metadataNormalization, `the metadata NormalizationOptions of ${model}`) : undefined;

  if (dtype === 'float32') {
    const normalization = configured ?? fromMetadata;
    if (!normalization) {
      throw new Error(missingNormalizationMessage(model));
    }
    return { mapping: floatTable(normalization, configured ? 'config' : 'metadata'), warnings };
  }

  const [scale, zeroPoint] = input.quantization;
  const [lo] = DTYPE_RANGES[dtype];
  if (!(scale > 0)) {
    // An integer input without quantization parameters takes raw integers.
    const given = configured ?? fromMetadata;
    if (given) {
      warnings.push(
        `${model}: input '${input.name}' is ${dtype} without quantization parameters, so real values cannot be mapped to it: the ${configured ? 'configured' : 'metadata'} normalization is ignored and pixel values are fed as they are${dtype === 'int8' ? ' (minus 128)' : ''}`,
      );
    }
    // scale 1 and zero point = dtype min: q = p + min, i.e. uint8 p, int8 p - 128.
    return { mapping: quantizedMapping(dtype, 1, lo, { mean: [0, 0, 0], std: [1, 1, 1] }, 'quantization'), warnings };
  }

  const implied: Normalization = { mean: [zeroPoint - lo, zeroPoint - lo, zeroPoint - lo], std: [1 / scale, 1 / scale, 1 / scale] };
  let normalization = implied;
  let source: NormalizationSource = 'quantization';
  if (configured) {
    normalization = configured;
    source = 'config';
    const saturated = saturatedPixelValues(configured, scale, zeroPoint, dtype);
    if (saturated > 0) warnings.push(saturationMessage(model, input, configured, 'configured preprocess.mean/std', saturated, false));
  } else if (fromMetadata) {
    const saturated = saturatedPixelValues(fromMetadata, scale, zeroPoint, dtype);
    if (saturated > 0) {
      warnings.push(saturationMessage(model, input, fromMetadata, 'metadata normalization', saturated, true));
    } else {
      normalization = fromMetadata;
      source = 'metadata';
    }
  }
  return { mapping: quantizedMapping(dtype, scale, zeroPoint, normalization, source), warnings };
}

/** Expands a 1- or 3-value mean/std to 3 channels; throws naming `what` when lengths or values are invalid. */
function perChannel(n: Normalization, what: string): Normalization {
  const expand = (values: number[], name: string): number[] => {
    if (values.length !== 1 && values.length !== 3) {
      throw new Error(`${what}: ${name} has ${values.length} values: expected 1 (all channels) or 3 (R, G, B)`);
    }
    for (const v of values) {
      if (!Number.isFinite(v)) throw new Error(`${what}: ${name} holds ${v}: expected finite numbers`);
    }
    return values.length === 1 ? [values[0]!, values[0]!, values[0]!] : values.slice();
  };
  const mean = expand(n.mean, 'mean');
  const std = expand(n.std, 'std');
  if (std.some((s) => s === 0)) throw new Error(`${what}: std holds 0: the normalization (pixel - mean) / std would divide by zero`);
  return { mean, std };
}

/** Number of (channel, pixel value) pairs whose quantized value lands more than one step outside the dtype range. */
function saturatedPixelValues(n: Normalization, scale: number, zeroPoint: number, dtype: QuantizedDType): number {
  const [lo, hi] = DTYPE_RANGES[dtype];
  let count = 0;
  for (let c = 0; c < 3; c++) {
    for (let p = 0; p < 256; p++) {
      const q = roundHalfAwayFromZero((p - n.mean[c]!) / n.std[c]! / scale) + zeroPoint;
      if (q < lo - 1 || q > hi + 1) count++;
    }
  }
  return count;
}

function saturationMessage(model: string, input: TensorDetails, n: Normalization, what: string, saturated: number, ignored: boolean): string {
  const [scale, zeroPoint] = input.quantization;
  const [lo, hi] = DTYPE_RANGES[input.dtype as QuantizedDType];
  const fmt = (x: number): string => String(Number(x.toPrecision(4)));
  const realLo = (0 - n.mean[0]!) / n.std[0]!;
  const realHi = (255 - n.mean[0]!) / n.std[0]!;
  return (
    `${model}: the ${what} (mean ${n.mean.map(fmt).join(',')}, std ${n.std.map(fmt).join(',')}) maps pixels 0..255 to ` +
    `${fmt(Math.min(realLo, realHi))}..${fmt(Math.max(realLo, realHi))}, but input '${input.name}' (${input.dtype}, scale ${fmt(scale)}, ` +
    `zero point ${zeroPoint}) represents only ${fmt((lo - zeroPoint) * scale)}..${fmt((hi - zeroPoint) * scale)}: ` +
    `${saturated} of 768 channel values would saturate. ` +
    (ignored
      ? `Feeding the pixels as the input's quantization implies instead (${input.dtype === 'uint8' ? 'raw bytes' : 'pixel - 128'}), as TFLite's task library does; set preprocess.mean and preprocess.std to override`
      : 'Using it as configured')
  );
}

function floatTable(n: Normalization, source: NormalizationSource): PixelMapping {
  const lut = new Float32Array(768);
  for (let c = 0; c < 3; c++) {
    for (let p = 0; p < 256; p++) lut[c * 256 + p] = (p - n.mean[c]!) / n.std[c]!;
  }
  return { kind: 'table', dtype: 'float32', source, normalization: n, lut };
}

function quantizedMapping(dtype: 'uint8' | 'int8', scale: number, zeroPoint: number, n: Normalization, source: NormalizationSource): PixelMapping {
  const lut = dtype === 'uint8' ? new Uint8Array(768) : new Int8Array(768);
  let identity = dtype === 'uint8';
  for (let c = 0; c < 3; c++) {
    for (let p = 0; p < 256; p++) {
      const q = quantize((p - n.mean[c]!) / n.std[c]!, scale, zeroPoint, dtype);
      lut[c * 256 + p] = q;
      if (q !== p) identity = false;
    }
  }
  if (identity) return { kind: 'identity', dtype: 'uint8', source, normalization: n };
  return { kind: 'table', dtype, source, normalization: n, lut };
}

/** Allocates an empty input tensor of `length` elements for `dtype`. */
function allocateInput(dtype: InputDType, length: number): InputTensorArray {
  return dtype === 'uint8' ? new Uint8Array(length) : dtype === 'int8' ? new Int8Array(length) : new Float32Array(length);
}

/**
 * Fills an input tensor from packed RGB (HWC) uint8 pixels in one pass.
 * `identity` returns `rgb` itself when no `out` is given (no copy), else
 * copies into `out`; `table` maps every element through the lookup table into
 * `out` (allocated when absent). `out` must have the mapping's dtype and at
 * least `rgb.length` elements; throws a RangeError otherwise or when
 * `rgb.length` is not a multiple of 3.
 */
export function applyPixelMapping(rgb: Uint8Array, mapping: PixelMapping, out?: InputTensorArray): InputTensorArray {
  const n = rgb.length;
  if (n % 3 !== 0) throw new RangeError(`RGB pixel data has ${n} bytes: expected a multiple of 3`);
  if (out) {
    const expected = mapping.dtype === 'uint8' ? Uint8Array : mapping.dtype === 'int8' ? Int8Array : Float32Array;
    if (!(out instanceof expected) || out.length < n) {
      throw new RangeError(`input tensor buffer is a ${out.constructor.name} of ${out.length} elements: expected a ${expected.name} of at least ${n}`);
    }
  }
  if (mapping.kind === 'identity') {
    if (!out) return rgb;
    out.set(rgb);
    return out;
  }
  const dst = out ?? allocateInput(mapping.dtype, n);
  const lut = mapping.lut;
  for (let i = 0; i < n; i += 3) {
    dst[i] = lut[rgb[i]!]!;
    dst[i + 1] = lut[256 + rgb[i + 1]!]!;
    dst[i + 2] = lut[512 + rgb[i + 2]!]!;
  }
  return dst;
}
