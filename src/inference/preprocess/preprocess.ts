import type { OutputInfo, default as Sharp } from 'sharp';
import { NotLoadableError } from '../../core/errors.js';
import type { RawPictureFormat, ResizeMode, Roi, TensorDetails } from '../../core/types.js';
import { applyPixelMapping, type InputDType, type InputTensorArray, type PixelMapping, type PixelMappingOptions, resolvePixelMapping } from './quantize.js';
import { RawToTensor } from './raw-to-tensor.js';

/** Image formats recognised from their first bytes. `bmp` and `heic` are recognised but not decoded. */
export type ImageFormat = 'jpeg' | 'png' | 'gif' | 'webp' | 'tiff' | 'avif' | 'heif' | 'heic' | 'bmp';

/** Formats the prebuilt sharp (libvips) decodes, as a sentence fragment for messages. */
const READABLE_FORMATS = 'JPEG, PNG, WebP, GIF, TIFF or AVIF';

let sharpModule: typeof Sharp | undefined;

/**
 * Loads sharp (libvips) once, on first use rather than at import, so that a
 * sharp whose native part is missing or built for another platform, arch or
 * Node.js fails with a message naming the fix instead of an uncaught stack
 * trace before anything can report it.
 * @throws NotLoadableError (`sharp`).
 */
export async function loadSharp(): Promise<typeof Sharp> {
  if (sharpModule) return sharpModule;
  try {
    sharpModule = (await import('sharp')).default;
    // libvips keeps recent operations and their images in a cache (50 MB by default) to reuse them; every
    // camera frame is new, so the cache only holds memory.
    sharpModule.cache(false);
  } catch (err) {
    const first = (err as Error).message.split('\n').find((l) => l.trim() !== '') ?? String(err);
    throw new NotLoadableError(
      'sharp',
      `sharp cannot load on linux-${process.arch} with Node.js ${process.version} (${first}): its native part is missing or built for another platform; run npm rebuild sharp in the program's folder, or install the release packed for this machine`,
      { cause: err },
    );
  }
  return sharpModule;
}

/**
 * Why a frame could not be decoded, for counting and logging once per kind:
 * `unsupported-format` (a real image in a format the decoder does not read:
 * BMP, HEIC), `not-an-image` (no known image signature, or empty),
 * `corrupt` (a known format that fails to decode, e.g. a truncated JPEG),
 * `too-large` (more pixels than the decoder's limit).
 */
export type FrameDecodeErrorKind = 'unsupported-format' | 'not-an-image' | 'corrupt' | 'too-large';

/** A frame or file that could not be turned into an input tensor; `message` names it and says what would work. */
export class FrameDecodeError extends Error {
  override readonly name = 'FrameDecodeError';
  constructor(
    readonly kind: FrameDecodeErrorKind,
    message: string,
    /** The file name or frame description the message names. */
    readonly subject: string,
    /** The format recognised from the bytes, if any. */
    readonly format: ImageFormat | null = null,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const ascii = (bytes: Uint8Array, start: number, length: number): string => String.fromCharCode(...bytes.subarray(start, start + length));

/**
 * Recognises an image format from its first bytes (magic numbers):
 * JPEG `FF D8 FF`; PNG `89 50 4E 47 0D 0A 1A 0A`; GIF `GIF87a`/`GIF89a`;
 * WebP `RIFF....WEBP`; TIFF `II*\0` (little-endian) or `MM\0*` (big-endian);
 * ISO-BMFF `....ftyp<brand>` with brands avif/avis → avif, heic/heix/hevc/hevx/
 * heim/heis/hevm/hevs → heic (HEVC-coded), other (e.g. mif1) → heif; BMP `BM`
 * followed by a plausible header (4 zero reserved bytes at offset 6).
 * Returns null for anything else (including empty data).
 */
export function sniffImageFormat(bytes: Uint8Array): ImageFormat | null {
  const n = bytes.length;
  if (n >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  if (n >= 8 && bytes[0] === 0x89 && ascii(bytes, 1, 3) === 'PNG' && bytes[4] === 0x0d && bytes[5] === 0x0a && bytes[6] === 0x1a && bytes[7] === 0x0a) {
    return 'png';
  }
  if (n >= 6 && (ascii(bytes, 0, 6) === 'GIF87a' || ascii(bytes, 0, 6) === 'GIF89a')) return 'gif';
  if (n >= 12 && ascii(bytes, 0, 4) === 'RIFF' && ascii(bytes, 8, 4) === 'WEBP') return 'webp';
  if (
    n >= 4 &&
    ((bytes[0] === 0x49 && bytes[1] === 0x49 && bytes[2] === 0x2a && bytes[3] === 0) ||
      (bytes[0] === 0x4d && bytes[1] === 0x4d && bytes[2] === 0 && bytes[3] === 0x2a))
  ) {
    return 'tiff';
  }
  if (n >= 12 && ascii(bytes, 4, 4) === 'ftyp') {
    const boxSize = Math.min(((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0, n, 256);
    const brands = [ascii(bytes, 8, 4)];
    for (let o = 16; o + 4 <= boxSize; o += 4) brands.push(ascii(bytes, o, 4));
    if (brands.some((b) => b === 'avif' || b === 'avis')) return 'avif';
    if (brands.some((b) => ['heic', 'heix', 'hevc', 'hevx', 'heim', 'heis', 'hevm', 'hevs'].includes(b))) return 'heic';
    if (brands.some((b) => b === 'mif1' || b === 'msf1')) return 'heif';
    return null;
  }
  if (n >= 14 && bytes[0] === 0x42 && bytes[1] === 0x4d && bytes[6] === 0 && bytes[7] === 0 && bytes[8] === 0 && bytes[9] === 0) return 'bmp';
  return null;
}

/** Height, width and dtype of an image input tensor, checked by `checkImageInput`. */
export interface ImageInputShape {
  readonly height: number;
  readonly width: number;
  readonly dtype: InputDType;
}

/**
 * Checks that a model input can be fed RGB images: rank 4, shape [1,H,W,3]
 * (NHWC) with H, W ≥ 1, dtype uint8, int8 or float32. Throws an Error naming
 * the tensor, its shape and dtype and what can be fed, e.g. `model input
 * 'input' has shape [1,3,224,224] and dtype float32: expected an RGB image
 * tensor of shape [1,H,W,3] (NHWC) with dtype uint8, int8 or float32`.
 */
export function checkImageInput(input: TensorDetails): ImageInputShape {
  const s = input.shape;
  const okShape = s.length === 4 && s[0] === 1 && s[3] === 3 && s[1]! >= 1 && s[2]! >= 1;
  const okType = input.dtype === 'uint8' || input.dtype === 'int8' || input.dtype === 'float32';
  if (!okShape || !okType) {
    throw new Error(
      `model input '${input.name}' has shape [${s.join(',')}] and dtype ${input.dtype}: expected an RGB image tensor of shape [1,H,W,3] (NHWC) with dtype uint8, int8 or float32`,
    );
  }
  return { height: s[1]!, width: s[2]!, dtype: input.dtype as InputDType };
}

/** Options of a `Preprocessor`. */
export interface PreprocessorOptions extends PixelMappingOptions {
  /** Default `stretch`. */
  readonly resize?: ResizeMode;
  /** Largest accepted image in pixels (width × height); default 0x3FFF², sharp's default. */
  readonly limitInputPixels?: number;
  /** Part of each encoded image to use (after EXIF orientation), as fractions; default the whole image. Raw frames come cropped by their source. */
  readonly roi?: Roi;
}

/** The input tensor made from one image. */
export interface PreparedInput {
  /** [1,H,W,3] NHWC packed RGB in the input's dtype; for the uint8 identity mapping, sharp's own buffer. */
  readonly tensor: InputTensorArray;
  /** The format recognised from the image bytes, or the raw frame's pixel format. */
  readonly format: ImageFormat | RawPictureFormat['format'];
}

/** The ROI in whole pixels of the image as displayed (EXIF orientations 5-8 swap width and height), at least 1×1. */
async function roiBox(
  sharp: typeof Sharp,
  image: Uint8Array,
  roi: Roi,
  limitInputPixels: number,
): Promise<{ left: number; top: number; width: number; height: number }> {
  const meta = await sharp(image, { limitInputPixels }).metadata();
  const swap = (meta.orientation ?? 1) >= 5;
  const w = (swap ? meta.height : meta.width) ?? 1;
  const h = (swap ? meta.width : meta.height) ?? 1;
  const left = Math.min(w - 1, Math.round(roi.x * w));
  const top = Math.min(h - 1, Math.round(roi.y * h));
  return {
    left,
    top,
    width: Math.max(1, Math.min(w, Math.round((roi.x + roi.width) * w)) - left),
    height: Math.max(1, Math.min(h, Math.round((roi.y + roi.height) * h)) - top),
  };
}

/**
 * Turns encoded images (JPEG, PNG, WebP, GIF, TIFF, AVIF) into the input
 * tensor of one model input: sharp decodes, applies the EXIF orientation,
 * drops any alpha channel (as PIL's `convert('RGB')` does), converts to 8-bit
 * sRGB (grayscale and CMYK become RGB), resizes to the input's H×W by
 * `resize`, and outputs packed RGB HWC uint8, which is then mapped through the
 * `PixelMapping` (see `resolvePixelMapping`: identity for most uint8 models,
 * a 768-entry lookup table otherwise).
 *
 * The constructor validates the input (see `checkImageInput`) and builds the
 * lookup table; it does no I/O. `warnings` holds the mapping's warnings for
 * the caller to log.
 */
export class Preprocessor {
  readonly height: number;
  readonly width: number;
  readonly dtype: InputDType;
  readonly resize: ResizeMode;
  readonly mapping: PixelMapping;
  readonly warnings: readonly string[];
  /** Elements of one input tensor: H × W × 3. */
  readonly length: number;
  private readonly limitInputPixels: number;
  private readonly roi: Roi | undefined;
  /** Raw-frame converters by pixel format (a source keeps one format; a restart may change it). */
  private readonly rawConverters = new Map<string, RawToTensor>();

  constructor(input: TensorDetails, options: PreprocessorOptions = {}) {
    const { height, width, dtype } = checkImageInput(input);
    this.height = height;
    this.width = width;
    this.dtype = dtype;
    this.length = height * width * 3;
    this.resize = options.resize ?? 'stretch';
    if (!['stretch', 'crop', 'letterbox'].includes(this.resize)) {
      throw new Error(`resize mode ${JSON.stringify(this.resize)} is not one of stretch, crop, letterbox`);
    }
    const { mapping, warnings } = resolvePixelMapping(input, options);
    this.mapping = mapping;
    this.warnings = warnings;
    this.limitInputPixels = options.limitInputPixels ?? 0x3fff * 0x3fff;
    const roi = options.roi;
    this.roi = roi && !(roi.x <= 0 && roi.y <= 0 && roi.width >= 1 && roi.height >= 1) ? roi : undefined;
  }

  /**
   * Converts one raw frame (I420 or RGB24, see `RawPictureFormat`) straight
   * into the input tensor with `RawToTensor`: the colour conversion, the fit
   * by `resize` when the frame is not at the input's size, and the pixel
   * mapping in one pass, into `into` when given. Rejects with
   * FrameDecodeError `corrupt` when `frame` is not one whole frame of `raw`.
   */
  private prepareRaw(frame: Uint8Array, raw: RawPictureFormat, subject: string, into?: InputTensorArray): PreparedInput {
    const key =
      raw.format === 'i420'
        ? `i420 ${raw.width}x${raw.height} ${raw.layout.yStride} ${raw.colorSpace.matrix} ${raw.colorSpace.range}`
        : `rgb24 ${raw.width}x${raw.height}`;
    let converter = this.rawConverters.get(key);
    if (!converter) {
      converter = new RawToTensor(raw, this.width, this.height, { resize: this.resize, mapping: this.mapping });
      this.rawConverters.set(key, converter);
    }
    if (frame.length !== converter.frameBytes) {
      throw new FrameDecodeError('corrupt', `${subject} has ${frame.length} bytes: expected ${converter.frameBytes} for a ${key} frame`, subject);
    }
    return { tensor: converter.fill(frame, into), format: raw.format };
  }

  /**
   * Decodes and converts one image into an input tensor. `file` names it in
   * errors (a file name, or e.g. `frame 17`; default `frame`). `into`, when
   * given, receives the tensor (it must be a typed array of the input's dtype
   * with H×W×3 elements) so that a caller can reuse one buffer per frame;
   * otherwise uint8-identity inputs get sharp's buffer as is and others a new
   * array.
   *
   * Rejects with FrameDecodeError: kind `unsupported-format` for BMP
   * ("cat.bmp is a BMP image, which this decoder does not read: use JPEG, PNG,
   * WebP, GIF, TIFF or AVIF") and HEIC, `not-an-image` for unknown or empty
   * bytes, `corrupt` when decoding fails (e.g. a truncated JPEG: sharp runs
   * with `failOn: 'truncated'`, which rejects truncated data but tolerates the
   * minor warnings cheap webcams' MJPEG frames often carry), `too-large` past
   * the pixel limit.
   *
   * With `raw`, `image` is one raw frame of that format, converted without
   * sharp (see `prepareRaw`); the ROI option applies to encoded images only.
   */
  async prepare(image: Uint8Array, file?: string, into?: InputTensorArray, raw?: RawPictureFormat): Promise<PreparedInput> {
    const subject = file ?? 'frame';
    if (raw) return this.prepareRaw(image, raw, subject, into);
    const format = sniffImageFormat(image);
    if (format === null) {
      const head = Array.from(image.subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join(' ');
      throw new FrameDecodeError(
        'not-an-image',
        image.length === 0
          ? `${subject} is empty (0 bytes): expected a ${READABLE_FORMATS} image`
          : `${subject} is not an image: its first bytes (${head}) match no image format; expected ${READABLE_FORMATS}`,
        subject,
      );
    }
    if (format === 'bmp') {
      throw new FrameDecodeError('unsupported-format', `${subject} is a BMP image, which this decoder does not read: use ${READABLE_FORMATS}`, subject, format);
    }
    if (format === 'heic') {
      throw new FrameDecodeError(
        'unsupported-format',
        `${subject} is a HEIC image (HEVC-coded HEIF), which this decoder does not read: use ${READABLE_FORMATS}`,
        subject,
        format,
      );
    }
    const fit = this.resize === 'stretch' ? 'fill' : this.resize === 'crop' ? 'cover' : 'contain';
    let data: Buffer;
    let info: OutputInfo;
    const sharp = await loadSharp();
    try {
      let pipeline = sharp(image, { failOn: 'truncated', limitInputPixels: this.limitInputPixels }).rotate();
      if (this.roi) pipeline = pipeline.extract(await roiBox(sharp, image, this.roi, this.limitInputPixels));
      ({ data, info } = await pipeline
        .removeAlpha()
        .toColourspace('srgb')
        .resize(this.width, this.height, { fit, position: 'centre', background: { r: 0, g: 0, b: 0, alpha: 1 } })
        .raw()
        .toBuffer({ resolveWithObject: true }));
    } catch (err) {
      const message = (err as Error).message;
      const name = format.toUpperCase();
      if (/pixel limit/i.test(message)) {
        throw new FrameDecodeError('too-large', `${subject} is too large to decode: ${message}`, subject, format, { cause: err });
      }
      if (/unsupported (image format|codec|feature)/i.test(message)) {
        throw new FrameDecodeError(
          'unsupported-format',
          `${subject} is a ${name} image that this decoder cannot read (${message}): use ${READABLE_FORMATS}`,
          subject,
          format,
          { cause: err },
        );
      }
      throw new FrameDecodeError('corrupt', `${subject} is a corrupt or truncated ${name} image: ${message}`, subject, format, {
        cause: err,
      });
    }
    if (info.channels !== 3 || info.width !== this.width || info.height !== this.height || data.length !== this.length) {
      throw new FrameDecodeError(
        'corrupt',
        `${subject}: decoding gave ${info.width}x${info.height} with ${info.channels} channels: expected ${this.width}x${this.height} RGB`,
        subject,
        format,
      );
    }
    return { tensor: applyPixelMapping(data, this.mapping, into), format };
  }
}
