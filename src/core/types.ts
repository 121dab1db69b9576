/**
 * Value types shared by the stages: tensor details and dtypes (inference and
 * its preprocessing), class scores and timings (inference, MQTT, GPIO), and
 * frames (camera, inference, the daemon). Field names of `TensorDetails`
 * follow TFLite's Python `Interpreter.get_input_details()` (snake_case) so
 * that `inspect --json` reads like what TensorFlow users know.
 */

/** Highest BCM GPIO number on the Raspberry Pi 40-pin header (GPIO 0..27): GPIO rules and `<base>/gpio/<pin>` topics. */
export const MAX_BCM_PIN = 27;

/** Tensor element types, named as TFLite's `TensorType` enum in lower case. */
export type DType =
  | 'float32'
  | 'float16'
  | 'float64'
  | 'int8'
  | 'uint8'
  | 'int16'
  | 'uint16'
  | 'int32'
  | 'uint32'
  | 'int64'
  | 'uint64'
  | 'bool'
  | 'string'
  | 'complex64'
  | 'complex128'
  | 'resource'
  | 'variant'
  | 'int4';

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
  /** How a sparse tensor is stored (schema.fbs SparsityParameters); `{}` for a dense tensor, as TensorFlow prints it. */
  readonly sparsity_parameters?: SparsityParameters | Record<string, never>;
}

/**
 * The storage of a sparse tensor, as TFLite's Python `get_input_details()`
 * names it: `traversal_order` and `block_map` of the dimensions, and per
 * traversed dimension its format (0 dense, with `dense_size`; 1 sparse CSR,
 * with `array_segments` and `array_indices`).
 */
export interface SparsityParameters {
  readonly traversal_order: number[];
  readonly block_map: number[];
  readonly dim_metadata: Array<{ format: number; dense_size?: number; array_segments?: number[]; array_indices?: number[] }>;
}

/** Normalization of a float input: x = (pixel - mean[c]) / std[c], per RGB channel. */
export interface Normalization {
  readonly mean: number[];
  readonly std: number[];
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

/**
 * How Y'CbCr samples map to R'G'B': the matrix (ITU-R BT.601 or BT.709
 * luma coefficients) and the range (`full`: Y, Cb, Cr use 0..255, as JPEG;
 * `limited`: Y 16..235 and Cb/Cr 16..240, as broadcast video).
 */
export interface YuvColorSpace {
  readonly matrix: 'bt601' | 'bt709';
  readonly range: 'full' | 'limited';
}

/**
 * Where the planes of a planar YUV 4:2:0 (I420) frame lie in its buffer: the
 * Y plane (`height` rows of `yStride` bytes), then U (Cb) and V (Cr), each
 * `chromaHeight` rows of `cStride` bytes holding `chromaWidth` samples. Row
 * ends may hold padding bytes that carry no picture. Sizes in pixels or
 * samples, strides and offsets in bytes.
 */
export interface I420Layout {
  readonly width: number;
  readonly height: number;
  /** Bytes per Y row, ≥ width. */
  readonly yStride: number;
  /** Bytes per U or V row, ≥ chromaWidth. */
  readonly cStride: number;
  /** Chroma samples per row: ceil(width / 2). */
  readonly chromaWidth: number;
  /** Chroma rows per plane: ceil(height / 2). */
  readonly chromaHeight: number;
  /** Offset of the U (Cb) plane: yStride × height. */
  readonly uOffset: number;
  /** Offset of the V (Cr) plane: uOffset + cStride × chromaHeight. */
  readonly vOffset: number;
  /** Bytes of one whole frame, padding included. */
  readonly frameBytes: number;
}

/**
 * What a raw (uncompressed) frame holds: its size in pixels and pixel format.
 * - `i420`: planar YUV 4:2:0 (`rpicam-vid --codec yuv420`), with its plane
 *   layout and colour space;
 * - `rgb24`: packed RGB, 3 bytes per pixel, rows of exactly 3 × width bytes
 *   (`ffmpeg -f rawvideo -pix_fmt rgb24`): the layout of a uint8 NHWC image tensor.
 * All frames of one source run share one description.
 */
export type RawPictureFormat =
  | {
      readonly format: 'i420';
      readonly width: number;
      readonly height: number;
      readonly layout: I420Layout;
      readonly colorSpace: YuvColorSpace;
    }
  | { readonly format: 'rgb24'; readonly width: number; readonly height: number };

/**
 * How a frame is fitted to the model's H×W input (`preprocess.resize`):
 * - `stretch`: the whole image scaled to H×W, aspect ratio not kept (sharp `fit: 'fill'`);
 *   what the reference MobileNet scores in the test assets were measured with;
 * - `crop`: scaled to cover H×W, the centre kept (sharp `fit: 'cover'`);
 * - `letterbox`: scaled to fit inside H×W, black bars added (sharp `fit: 'contain'`).
 */
export type ResizeMode = 'stretch' | 'crop' | 'letterbox';

/**
 * A region of interest: part of a frame as fractions of its width and height
 * (x, y of the top-left corner; all in 0..1, x + width ≤ 1, y + height ≤ 1),
 * so that it holds at any frame size. `{x: 0.5, y: 0, width: 0.5, height: 1}`
 * is the right half.
 */
export interface Roi {
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
}

/**
 * One camera frame as it came from a source: encoded bytes, or raw pixels.
 *
 * Without `raw`, `data` is a whole encoded image (JPEG from MJPEG streams;
 * JPEG/PNG/WebP/... from a replay directory), never a partial one. With
 * `raw`, `data` holds exactly one raw frame as `raw` describes it (I420 or
 * RGB24, whole, padding included). `seq` starts at 1 for the first frame a
 * source yields and increases by 1 per frame (across restarts of a child
 * process too). `arrivedAt` is `performance.now()` in ms when the last byte
 * of the frame arrived (monotonic: unaffected by clock changes).
 */
export interface Frame {
  readonly seq: number;
  readonly data: Buffer;
  readonly arrivedAt: number;
  /** File name for replayed images (for logs and EXIF handling); undefined for streams. */
  readonly file?: string;
  /** The pixel format of a raw frame; undefined for encoded images. */
  readonly raw?: RawPictureFormat;
}

/** The firmware's throttling state (`vcgencmd get_throttled`, see `stats/system.ts`), decoded; bits 0–3 now, 16–19 since boot. */
export interface Throttled {
  /** The raw bit field, e.g. `0x50005`. */
  readonly raw: string;
  readonly under_voltage: boolean;
  readonly frequency_capped: boolean;
  readonly throttled: boolean;
  readonly soft_temperature_limit: boolean;
  readonly under_voltage_occurred: boolean;
  readonly frequency_capped_occurred: boolean;
  readonly throttled_occurred: boolean;
  readonly soft_temperature_limit_occurred: boolean;
}

/** The `system` object of `<base>/stats`. */
export interface SystemStats {
  /** Resident set size of the process, bytes. */
  readonly rss_bytes: number;
  readonly heap_used_bytes: number;
  /** CPU time of the process since the previous sample, percent of one core. */
  readonly cpu_percent: number;
  readonly load_1m: number;
  readonly cpu_temperature_c: number | null;
  readonly cpu_temperature_source: string | null;
  readonly throttled: Throttled | null;
}
