import type { DType, TensorDetails } from '../core/types.js';
import { roundHalfAwayFromZero } from './preprocess/quantize.js';

/*
 * JSON ↔ tensor conversion for `predict`: nested JSON arrays in a tensor's
 * shape on one side, the flat typed array a TFLite tensor holds (row-major,
 * the last dimension fastest) on the other.
 */

/** Typed arrays that hold tensors of the dtypes `predict` reads and writes. */
export type TensorArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

/** A nested JSON array (or a scalar for a shape `[]` tensor). */
export type Nested = number | boolean | Nested[];

/** A JSON value that does not fit the tensor: names the tensor, what was expected and what came. */
export class TensorValueError extends Error {
  override readonly name = 'TensorValueError';
}

interface DTypeInfo {
  readonly array: new (n: number) => TensorArray;
  /** [min, max] for integer dtypes. */
  readonly range?: readonly [number, number];
  readonly bigint?: boolean;
}

const DTYPES: Partial<Record<DType, DTypeInfo>> = {
  float32: { array: Float32Array },
  float64: { array: Float64Array },
  int8: { array: Int8Array, range: [-128, 127] },
  uint8: { array: Uint8Array, range: [0, 255] },
  int16: { array: Int16Array, range: [-32768, 32767] },
  uint16: { array: Uint16Array, range: [0, 65535] },
  int32: { array: Int32Array, range: [-2147483648, 2147483647] },
  uint32: { array: Uint32Array, range: [0, 4294967295] },
  int64: { array: BigInt64Array, range: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER], bigint: true },
  uint64: { array: BigUint64Array, range: [0, Number.MAX_SAFE_INTEGER], bigint: true },
  bool: { array: Uint8Array, range: [0, 1] },
};

/** dtypes `predict` can convert (others, e.g. string or float16, are refused with a message). */
const SUPPORTED_DTYPES: readonly DType[] = Object.keys(DTYPES) as DType[];

/** Name of a tensor in messages: `input 'dense_input' (#0, [1,1] float32)`. */
function describeTensor(t: TensorDetails, role: 'input' | 'output' = 'input'): string {
  return `${role} '${t.name}' (#${t.index}, [${t.shape.join(',')}] ${t.dtype})`;
}

/** Number of elements of a shape (1 for `[]`). */
function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, d) => a * d, 1);
}

/** True when the tensor has affine quantization (one scale, or one per channel). */
function isQuantized(t: TensorDetails): boolean {
  const p = t.quantization_parameters;
  return p.scales.length > 0 && p.scales.some((s) => s !== 0) && DTYPES[t.dtype]?.range !== undefined;
}

/**
 * Scale and zero point applying to each flat element of `t`: per tensor, or
 * per channel along `quantized_dimension` (TFLite's per-axis quantization).
 */
function quantizationOf(t: TensorDetails): (flat: number) => [number, number] {
  const { scales, zero_points: zps, quantized_dimension: dim } = t.quantization_parameters;
  if (scales.length <= 1) {
    const s = scales[0] ?? 0;
    const z = zps[0] ?? 0;
    return () => [s, z];
  }
  const stride = elementCount(t.shape.slice(dim + 1));
  const size = t.shape[dim] ?? 1;
  return (flat) => {
    const c = Math.floor(flat / stride) % size;
    return [scales[c]!, zps[c] ?? 0];
  };
}

function shapeOf(v: unknown): string {
  if (!Array.isArray(v)) return typeof v === 'number' ? 'a number' : (JSON.stringify(v)?.slice(0, 40) ?? String(v));
  const dims: number[] = [];
  let cur: unknown = v;
  while (Array.isArray(cur)) {
    dims.push(cur.length);
    cur = cur[0];
  }
  return `nested arrays of shape [${dims.join(',')}]`;
}

/** An example value of the right shape, e.g. `[[0.5]]` for [1,1], `[[0.5, 0.5, …]]` for [1,3]. */
function example(shape: readonly number[]): string {
  if (shape.length === 0) return '0.5';
  const inner = shape.length === 1 ? (shape[0]! <= 3 ? Array(shape[0]).fill('0.5').join(', ') : '0.5, 0.5, …') : example(shape.slice(1));
  return shape.length === 1 ? `[${inner}]` : `[${inner}${shape[0]! > 1 ? ', …' : ''}]`;
}

/**
 * Converts a nested JSON array in the shape of `t` into a new typed array of
 * its dtype, row-major (e.g. `[[10]]` for a `[1,1]` float32 input → a
 * Float32Array [10]).
 *
 * For a quantized tensor (scale ≠ 0) the JSON holds real values, quantized
 * as q = round(real / scale) + zero_point (half away from zero, as TFLite's
 * Quantize kernel; per channel along `quantized_dimension` for per-axis
 * tensors); a real value outside what the dtype can represent,
 * [(min − zero_point) × scale, (max − zero_point) × scale], is refused.
 * With `raw`, the JSON holds the stored integers as they are. Integer
 * tensors take whole numbers in the dtype's range; bool tensors take
 * true/false or 0/1; float32 values are rounded to the nearest float32.
 *
 * Throws TensorValueError naming the tensor and the first element at fault
 * (`[0][2]`), what was expected and what came: a shape mismatch, a non-number,
 * a value out of range; or an unsupported dtype (string, float16, complex).
 */
export function jsonToTensor(value: unknown, t: TensorDetails, options: { raw?: boolean } = {}): TensorArray {
  const what = describeTensor(t);
  const info = DTYPES[t.dtype];
  if (!info) {
    throw new TensorValueError(`${what}: dtype ${t.dtype} cannot be given as JSON (supported: ${SUPPORTED_DTYPES.join(', ')})`);
  }
  const shape = t.shape;
  const n = elementCount(shape);
  const out = new info.array(n);
  const quantized = !options.raw && isQuantized(t);
  const q = quantizationOf(t);
  let flat = 0;
  const walk = (v: unknown, depth: number, path: string): void => {
    if (depth < shape.length) {
      if (!Array.isArray(v) || v.length !== shape[depth]) {
        const came = Array.isArray(v) ? `an array of ${v.length}` : shapeOf(v);
        throw new TensorValueError(
          `${what}: expected nested arrays of shape [${shape.join(',')}], e.g. ${example(shape)}; at ${path || 'the top level'} expected an array of ${shape[depth]}, got ${came} (the whole value is ${shapeOf(value)})`,
        );
      }
      for (let i = 0; i < v.length; i++) walk(v[i], depth + 1, `${path}[${i}]`);
      return;
    }
    const at = path || 'the value';
    let x: number;
    if (typeof v === 'boolean' && t.dtype === 'bool') x = v ? 1 : 0;
    else if (typeof v === 'number' && Number.isFinite(v)) x = v;
    else {
      const came = Array.isArray(v) ? 'an array (one level too deep)' : JSON.stringify(v);
      throw new TensorValueError(`${what}: ${at} must be a ${t.dtype === 'bool' ? 'boolean' : 'finite number'}, got ${came}`);
    }
    if (quantized) {
      const [scale, zp] = q(flat);
      const [lo, hi] = info.range!;
      const stored = roundHalfAwayFromZero(x / scale) + zp;
      if (stored < lo || stored > hi) {
        const min = (lo - zp) * scale;
        const max = (hi - zp) * scale;
        throw new TensorValueError(
          `${what}: ${at} = ${x} is outside the range the tensor can hold, [${round6(min)}, ${round6(max)}] (${t.dtype}, scale ${scale}, zero point ${zp}); give real values, or --raw to give stored ${t.dtype} values`,
        );
      }
      x = stored;
    } else if (info.range) {
      const [lo, hi] = info.range;
      if (!Number.isInteger(x) || x < lo || x > hi) {
        throw new TensorValueError(`${what}: ${at} = ${x} is not a ${t.dtype} value: expected a whole number in [${lo}, ${hi}]`);
      }
    }
    if (info.bigint) (out as BigInt64Array)[flat] = BigInt(x);
    else (out as Float32Array)[flat] = x;
    flat++;
  };
  walk(value, 0, '');
  return out;
}

/** The value of one output (or input) tensor, as `predict` prints it. */
export interface TensorJson {
  readonly name: string;
  readonly index: number;
  readonly shape: number[];
  readonly dtype: DType;
  /** [scale, zero_point] as `inspect` shows it; [0, 0] when not quantized per tensor. */
  readonly quantization: [number, number];
  /** The stored values, nested in `shape` (float32 values in their shortest round-trip form). */
  readonly values: Nested;
  /** For quantized tensors: (q − zero_point) × scale, nested in `shape`, as float32. */
  readonly dequantized?: Nested;
}

/**
 * The shortest decimal that reads back as the same float32 (e.g. 18.982643
 * rather than 18.982643127441406), as numpy prints float32 values.
 */
export function shortestFloat32(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const f = Math.fround(x);
  for (let p = 1; p < 10; p++) {
    const y = Number(f.toPrecision(p));
    if (Math.fround(y) === f) return y;
  }
  return f;
}

const round6 = (x: number) => Number(x.toPrecision(6));

/** Nests a flat row-major list into `shape` (a scalar for `[]`). */
function nest<T>(flat: ArrayLike<T>, shape: readonly number[]): T | unknown[] {
  if (shape.length === 0) return flat[0] as T;
  let pos = 0;
  const build = (depth: number): unknown[] => {
    const n = shape[depth]!;
    const out = new Array<unknown>(n);
    if (depth === shape.length - 1) for (let i = 0; i < n; i++) out[i] = flat[pos++];
    else for (let i = 0; i < n; i++) out[i] = build(depth + 1);
    return out;
  };
  return build(0);
}

/**
 * Describes a tensor's data for printing: the stored values nested in its
 * shape and, for a quantized tensor, the dequantized values beside them,
 * real = (q − zero_point) × scale (per channel for per-axis tensors).
 * `data` is the tensor's flat row-major contents in its dtype; int64 values
 * beyond 2^53 lose precision (JSON numbers).
 */
export function tensorToJson(data: TensorArray, t: TensorDetails): TensorJson {
  const n = data.length;
  const raw = new Array<number | boolean>(n);
  const float = t.dtype === 'float32';
  for (let i = 0; i < n; i++) {
    const v = data[i]!;
    raw[i] = t.dtype === 'bool' ? v !== 0 : typeof v === 'bigint' ? Number(v) : float ? shortestFloat32(v) : v;
  }
  const base = { name: t.name, index: t.index, shape: t.shape.slice(), dtype: t.dtype, quantization: t.quantization };
  if (!isQuantized(t)) return { ...base, values: nest(raw, t.shape) as Nested };
  const q = quantizationOf(t);
  const real = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const [scale, zp] = q(i);
    real[i] = shortestFloat32(((raw[i] as number) - zp) * scale);
  }
  return { ...base, values: nest(raw, t.shape) as Nested, dequantized: nest(real, t.shape) as Nested };
}

/**
 * Nested values as numpy prints them: `[[18.982643]]`; arrays with more than
 * `threshold` elements are summarised with the first and last 3 entries of
 * each dimension and `...` between (numpy's default threshold is 1000).
 */
export function formatNested(values: Nested, threshold = 1000): string {
  const total = Array.isArray(values) ? countLeaves(values) : 1;
  const summarise = total > threshold;
  const fmt = (v: Nested): string => {
    if (!Array.isArray(v)) return String(v);
    if (summarise && v.length > 6) return `[${[...v.slice(0, 3).map(fmt), '...', ...v.slice(-3).map(fmt)].join(', ')}]`;
    return `[${v.map(fmt).join(', ')}]`;
  };
  return fmt(values);
}

function countLeaves(v: Nested): number {
  return Array.isArray(v) ? v.reduce<number>((a, x) => a + countLeaves(x), 0) : 1;
}

/** One `--input` argument, parsed: which tensor (name, `#index`, or the next in order) and its JSON (text, or a file to read). */
export interface InputSpec {
  /** A tensor name, or a tensor index as `inspect` shows it (`#0` or `0`); undefined: the next input in order. */
  readonly tensor?: string;
  /** The JSON text, when given inline. */
  readonly json?: string;
  /** A file holding the JSON, when given as `@file.json`. */
  readonly file?: string;
  /** The argument as given, for messages. */
  readonly arg: string;
}

/**
 * Parses one `--input` argument: `JSON`, `@FILE`, `NAME=JSON` or
 * `NAME=@FILE`, where NAME is a tensor name or index (`0`, `#0`). JSON starts
 * with `[`, `{`, a digit, `-`, `t`/`f` (true/false) or `@`; anything before
 * the first `=` otherwise names the tensor.
 * Throws TensorValueError for an empty value.
 */
export function parseInputSpec(arg: string): InputSpec {
  const trimmed = arg.trim();
  let tensor: string | undefined;
  let rest = trimmed;
  const byIndex = /^(#?\d+)\s*=(.*)$/s.exec(trimmed);
  if (byIndex) {
    tensor = byIndex[1]!;
    rest = byIndex[2]!.trim();
  } else if (!/^[[{@\d.+-]/.test(trimmed) && !/^(true|false)$/.test(trimmed)) {
    const eq = trimmed.indexOf('=');
    if (eq > 0) {
      tensor = trimmed.slice(0, eq).trim();
      rest = trimmed.slice(eq + 1).trim();
    }
  }
  if (rest === '' || rest === '@') {
    throw new TensorValueError(`--input '${arg}': no value: expected JSON such as '[[10.0]]', NAME=JSON, or NAME=@file.json`);
  }
  const base = tensor === undefined ? { arg } : { arg, tensor };
  return rest.startsWith('@') ? { ...base, file: rest.slice(1) } : { ...base, json: rest };
}

/**
 * Pairs `--input` specs with the model's inputs: named specs by name or
 * index, the others in input order. Returns the details of each spec's
 * tensor, in the order of `specs`. Throws TensorValueError for a name or
 * index no input has (listing the inputs), an input given twice, a spec too
 * many, or an input left without a value.
 */
export function matchInputs(specs: readonly InputSpec[], inputs: readonly TensorDetails[]): TensorDetails[] {
  const list = inputs.map((t) => describeTensor(t)).join('; ');
  const taken = new Set<TensorDetails>();
  const out: TensorDetails[] = [];
  for (const s of specs) {
    if (s.tensor === undefined) continue;
    const key = s.tensor.replace(/^#/, '');
    const found = inputs.find((t) => t.name === s.tensor) ?? (/^\d+$/.test(key) ? inputs.find((t) => t.index === Number(key)) : undefined);
    if (!found) throw new TensorValueError(`--input '${s.arg}': the model has no input named or numbered '${s.tensor}'; its inputs are ${list}`);
    if (taken.has(found)) throw new TensorValueError(`--input '${s.arg}': ${describeTensor(found)} is given twice`);
    taken.add(found);
  }
  const free = inputs.filter((t) => !taken.has(t));
  for (const s of specs) {
    if (s.tensor !== undefined) {
      const key = s.tensor.replace(/^#/, '');
      out.push(inputs.find((t) => t.name === s.tensor) ?? inputs.find((t) => t.index === Number(key))!);
      continue;
    }
    const next = free.shift();
    if (!next) throw new TensorValueError(`--input '${s.arg}': the model has only ${inputs.length} input(s), all given: ${list}`);
    out.push(next);
  }
  if (free.length > 0) {
    throw new TensorValueError(
      `no value for ${free.map((t) => describeTensor(t)).join(', ')}: give one --input per model input (the model's inputs are ${list})`,
    );
  }
  return out;
}
