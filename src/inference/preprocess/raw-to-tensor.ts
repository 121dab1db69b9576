import type { RawPictureFormat, ResizeMode, YuvColorSpace } from '../../core/types.js';
import type { InputTensorArray, PixelMapping } from './quantize.js';

/** A rectangle in whole pixels of a frame. */
interface PixelRect {
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
}

/** Options of a `RawToTensor`. */
export interface RawToTensorOptions {
  /** The part of the frame to use, in pixels (default: the whole frame). */
  readonly crop?: PixelRect;
  /** How the (cropped) frame is fitted to the tensor's H×W (default `stretch`); see `ResizeMode`. */
  readonly resize?: ResizeMode;
  /** How 8-bit RGB becomes tensor values (see `resolvePixelMapping`); default: identity uint8. */
  readonly mapping?: PixelMapping;
}

const FIX = 16; // fixed-point fraction bits of the colour tables
const HALF = 1 << (FIX - 1);
const W_BITS = 8; // fraction bits of the bilinear weights
const W_ONE = 1 << W_BITS;

/**
 * Fixed-point Y'CbCr → R'G'B' tables for one colour space. With Kr, Kb the
 * matrix's luma coefficients (BT.601: 0.299, 0.114; BT.709: 0.2126, 0.0722,
 * from ITU-R BT.601-7 and BT.709-6) and Kg = 1 − Kr − Kb:
 *   R = Y' + 2(1−Kr)·Cr
 *   G = Y' − 2(1−Kb)Kb/Kg·Cb − 2(1−Kr)Kr/Kg·Cr
 *   B = Y' + 2(1−Kb)·Cb
 * where full range has Y' = Y and Cb, Cr = U − 128, V − 128, and limited
 * range has Y' = (Y − 16)·255/219 and Cb, Cr = (U or V − 128)·255/224.
 * Each table holds its term × 2^16 (the Y table with the rounding half added).
 */
function colourTables(cs: YuvColorSpace): { y: Int32Array; rv: Int32Array; gu: Int32Array; gv: Int32Array; bu: Int32Array } {
  const [kr, kb] = cs.matrix === 'bt709' ? [0.2126, 0.0722] : [0.299, 0.114];
  const kg = 1 - kr - kb;
  const limited = cs.range === 'limited';
  const ys = limited ? 255 / 219 : 1;
  const yo = limited ? 16 : 0;
  const cs2 = limited ? 255 / 224 : 1;
  const one = 1 << FIX;
  const y = new Int32Array(256);
  const rv = new Int32Array(256);
  const gu = new Int32Array(256);
  const gv = new Int32Array(256);
  const bu = new Int32Array(256);
  for (let i = 0; i < 256; i++) {
    const c = (i - 128) * cs2;
    y[i] = Math.round((i - yo) * ys * one) + HALF;
    rv[i] = Math.round(2 * (1 - kr) * c * one);
    gu[i] = Math.round(-((2 * (1 - kb) * kb) / kg) * c * one);
    gv[i] = Math.round(-((2 * (1 - kr) * kr) / kg) * c * one);
    bu[i] = Math.round(2 * (1 - kb) * c * one);
  }
  return { y, rv, gu, gv, bu };
}

/** Per destination column (or row): the two source indices and the weight of the second, for bilinear sampling. */
interface Taps {
  readonly i0: Int32Array;
  readonly i1: Int32Array;
  /** Weight of i1 in 0..256. */
  readonly w: Int32Array;
  /** Nearest source index (for chroma). */
  readonly near: Int32Array;
}

/**
 * Sample positions for `n` destination pixels covering source pixels
 * [start, start + span), pixel centres aligned (half-pixel centres, as
 * OpenCV's INTER_LINEAR and TensorFlow's `half_pixel_centers`), clamped to
 * [0, limit − 1].
 */
function taps(n: number, start: number, span: number, limit: number): Taps {
  const i0 = new Int32Array(n);
  const i1 = new Int32Array(n);
  const w = new Int32Array(n);
  const near = new Int32Array(n);
  const scale = span / n;
  for (let d = 0; d < n; d++) {
    let s = start + (d + 0.5) * scale - 0.5;
    if (s < 0) s = 0;
    if (s > limit - 1) s = limit - 1;
    const f = Math.floor(s);
    i0[d] = f;
    i1[d] = Math.min(f + 1, limit - 1);
    w[d] = Math.round((s - f) * W_ONE);
    near[d] = Math.min(Math.round(s), limit - 1);
  }
  return { i0, i1, w, near };
}

/** Where the picture lands in the tensor and which source pixels feed it. */
interface Placement {
  readonly dst: PixelRect;
  readonly src: PixelRect;
}

function place(crop: PixelRect, width: number, height: number, resize: ResizeMode): Placement {
  const full = { x: 0, y: 0, width, height };
  if (resize === 'stretch') return { dst: full, src: crop };
  const srcAspect = crop.width / crop.height;
  const dstAspect = width / height;
  if (resize === 'crop') {
    // The largest centred part of the crop with the tensor's aspect ratio.
    if (srcAspect > dstAspect) {
      const w = crop.height * dstAspect;
      return { dst: full, src: { x: crop.x + (crop.width - w) / 2, y: crop.y, width: w, height: crop.height } };
    }
    const h = crop.width / dstAspect;
    return { dst: full, src: { x: crop.x, y: crop.y + (crop.height - h) / 2, width: crop.width, height: h } };
  }
  // letterbox: the whole crop, scaled to fit, centred, bars around it.
  if (srcAspect > dstAspect) {
    const h = Math.max(1, Math.round(width / srcAspect));
    return { dst: { x: 0, y: Math.floor((height - h) / 2), width, height: h }, src: crop };
  }
  const w = Math.max(1, Math.round(height * srcAspect));
  return { dst: { x: Math.floor((width - w) / 2), y: 0, width: w, height }, src: crop };
}

function tensorType(mapping: PixelMapping): typeof Uint8Array | typeof Int8Array | typeof Float32Array {
  return mapping.dtype === 'uint8' ? Uint8Array : mapping.dtype === 'int8' ? Int8Array : Float32Array;
}

/** The byte table of the identity mapping: channel c, value p → p. */
const IDENTITY_BYTES = Uint8Array.from({ length: 768 }, (_, i) => i & 255);

const IDENTITY: PixelMapping = { kind: 'identity', dtype: 'uint8', source: 'quantization', normalization: { mean: [0, 0, 0], std: [1, 1, 1] } };

/**
 * Converts raw frames (I420 or packed RGB24, see `RawPictureFormat`) straight
 * into an image input tensor `[1,H,W,3]` NHWC — uint8, int8 or float32, with
 * the tensor's scale and zero point or normalization folded into the
 * `PixelMapping`'s lookup table — in one pass over the output: no
 * intermediate RGB image.
 *
 * - I420 → RGB uses the frame's colour space (matrix and range, see
 *   `colourTables`) in 16-bit fixed point, each chroma sample shared by the
 *   2×2 luma pixels it covers (nearest chroma, as libyuv and ffmpeg's
 *   default swscale path do); stride padding is skipped.
 * - When the (cropped) frame already has the tensor's size, each tensor pixel
 *   is one source pixel (the fast path: the camera or ffmpeg scaled). Else
 *   the picture is fitted by `resize` (stretch / crop / letterbox with black
 *   bars) and sampled bilinearly with half-pixel centres (no antialiasing
 *   filter: downscaling by more than 2× aliases, so ask the source for
 *   frames near the tensor's size).
 *
 * Construction precomputes the tables (no I/O); `fill()` is the per-frame work.
 */
export class RawToTensor {
  readonly picture: RawPictureFormat;
  /** Tensor height and width in pixels. */
  readonly height: number;
  readonly width: number;
  /** Elements of one tensor: H × W × 3. */
  readonly length: number;
  readonly mapping: PixelMapping;
  /** True when no scaling happens (the cropped frame has the tensor's size). */
  readonly direct: boolean;
  private readonly placement: Placement;
  private readonly cols: Taps;
  private readonly rows: Taps;
  private readonly tables: ReturnType<typeof colourTables> | undefined;
  private readonly offsetX: number;
  private readonly offsetY: number;
  /** The row kernel for this frame format and placement. */
  private readonly kernel: (frame: Uint8Array, row: number, out: Uint8Array, o: number, lut: Uint8Array) => void;
  /** One row of RGB bytes, for mappings that are not the uint8 identity. */
  private readonly scratch: Uint8Array;
  /** The mapping's table as bytes (uint8, or int8 two's complement); undefined for identity and float. */
  private readonly lutBytes: Uint8Array | undefined;
  private readonly lutFloat: Float32Array | undefined;

  /**
   * @param picture the frames' format (all frames of a source share it)
   * @param width tensor width W in pixels
   * @param height tensor height H in pixels
   * @throws RangeError when the crop is empty or outside the frame, or the tensor size is not positive.
   */
  constructor(picture: RawPictureFormat, width: number, height: number, options: RawToTensorOptions = {}) {
    if (!Number.isInteger(width) || width < 1 || !Number.isInteger(height) || height < 1) {
      throw new RangeError(`tensor size must be positive whole pixels, got ${width}x${height}`);
    }
    const crop = options.crop ?? { x: 0, y: 0, width: picture.width, height: picture.height };
    if (!(crop.width >= 1 && crop.height >= 1 && crop.x >= 0 && crop.y >= 0) || crop.x + crop.width > picture.width || crop.y + crop.height > picture.height) {
      throw new RangeError(`crop ${crop.width}x${crop.height} at (${crop.x},${crop.y}) does not lie inside the ${picture.width}x${picture.height} frame`);
    }
    this.picture = picture;
    this.width = width;
    this.height = height;
    this.length = width * height * 3;
    this.mapping = options.mapping ?? IDENTITY;
    this.placement = place(crop, width, height, options.resize ?? 'stretch');
    const { src, dst } = this.placement;
    this.direct =
      dst.width === width && dst.height === height && src.width === width && src.height === height && Number.isInteger(src.x) && Number.isInteger(src.y);
    this.offsetX = src.x;
    this.offsetY = src.y;
    this.cols = taps(dst.width, src.x, src.width, picture.width);
    this.rows = taps(dst.height, src.y, src.height, picture.height);
    this.tables = picture.format === 'i420' ? colourTables(picture.colorSpace) : undefined;
    const i420 = picture.format === 'i420';
    this.kernel = (i420 ? (this.direct ? this.i420DirectRow : this.i420ScaledRow) : this.direct ? this.rgbDirectRow : this.rgbScaledRow).bind(this);
    this.scratch = new Uint8Array(dst.width * 3);
    const m = this.mapping;
    this.lutFloat = m.kind === 'table' && m.lut instanceof Float32Array ? m.lut : undefined;
    this.lutBytes = m.kind === 'table' && !(m.lut instanceof Float32Array) ? new Uint8Array(m.lut.buffer, m.lut.byteOffset, 768) : undefined;
  }

  /** Bytes a frame must have. */
  get frameBytes(): number {
    return this.picture.format === 'rgb24' ? this.picture.width * this.picture.height * 3 : this.picture.layout.frameBytes;
  }

  /** A new, zeroed tensor buffer of the mapping's dtype. */
  allocate(): InputTensorArray {
    return new (tensorType(this.mapping))(this.length);
  }

  /**
   * Writes one frame into `out` ([1,H,W,3] NHWC, the mapping's dtype, at
   * least H×W×3 elements; allocated when absent) and returns it.
   *
   * Row by row: a kernel (I420 or RGB, direct or scaled) computes each
   * pixel's RGB and writes it through the mapping's byte table straight into
   * the tensor (uint8 values, or int8 values as their bytes through a
   * Uint8Array view, so every loop sees one array type and stays fast); for
   * float32 inputs it writes a one-row scratch buffer that the float table
   * then maps.
   * @throws RangeError when `frame` is shorter than a whole frame or `out`
   * has the wrong type or length.
   */
  fill(frame: Uint8Array, out?: InputTensorArray): InputTensorArray {
    if (frame.length < this.frameBytes) {
      throw new RangeError(
        `raw frame has ${frame.length} bytes: expected ${this.frameBytes} for ${this.picture.format} ${this.picture.width}x${this.picture.height}`,
      );
    }
    const expected = tensorType(this.mapping);
    const dst = out ?? new expected(this.length);
    if (!(dst instanceof expected) || dst.length < this.length) {
      throw new RangeError(
        `input tensor buffer is a ${dst.constructor.name} of ${dst.length} elements: expected a ${expected.name} of at least ${this.length}`,
      );
    }
    const area = this.placement.dst;
    const float = dst instanceof Float32Array ? dst : undefined;
    const bytes = float ? undefined : new Uint8Array(dst.buffer, dst.byteOffset, this.length);
    if (area.width !== this.width || area.height !== this.height) this.fillBars(bytes, float);
    const rowLen = area.width * 3;
    const scratch = this.scratch;
    const lut = this.lutBytes ?? IDENTITY_BYTES;
    for (let row = 0; row < area.height; row++) {
      const o = ((area.y + row) * this.width + area.x) * 3;
      if (float) {
        this.kernel(frame, row, scratch, 0, IDENTITY_BYTES);
        mapFloat(scratch, rowLen, this.lutFloat!, float, o);
      } else {
        this.kernel(frame, row, bytes!, o, lut);
      }
    }
    return dst;
  }

  /** Letterbox bars: every pixel the mapped value of black. */
  private fillBars(bytes: Uint8Array | undefined, float: Float32Array | undefined): void {
    if (float) {
      const lut = this.lutFloat!;
      for (let o = 0; o < this.length; o += 3) {
        float[o] = lut[0]!;
        float[o + 1] = lut[256]!;
        float[o + 2] = lut[512]!;
      }
      return;
    }
    const lut = this.lutBytes;
    const r = lut ? lut[0]! : 0;
    const g = lut ? lut[256]! : 0;
    const b = lut ? lut[512]! : 0;
    for (let o = 0; o < this.length; o += 3) {
      bytes![o] = r;
      bytes![o + 1] = g;
      bytes![o + 2] = b;
    }
  }

  /** The RGB bytes of output row `row` of the placement area, I420 source, one source pixel per tensor pixel. */
  private i420DirectRow(frame: Uint8Array, row: number, out: Uint8Array, o: number, lut: Uint8Array): void {
    const layout = (this.picture as Extract<RawPictureFormat, { format: 'i420' }>).layout;
    const { y: yT, rv, gu, gv, bu } = this.tables!;
    const { yStride, cStride, uOffset, vOffset } = layout;
    const w = this.width;
    const x0 = this.offsetX;
    const sy = row + this.offsetY;
    const yRow = sy * yStride + x0;
    const cRow = (sy >> 1) * cStride;
    let col = 0;
    while (col < w) {
      // One chroma sample covers two luma columns: look it up once for both.
      const sx = col + x0;
      const c = cRow + (sx >> 1);
      const u = frame[uOffset + c]!;
      const v = frame[vOffset + c]!;
      const cr = rv[v]!;
      const cg = gu[u]! + gv[v]!;
      const cb = bu[u]!;
      const run = (sx & 1) === 0 && col + 1 < w ? 2 : 1;
      for (let k = 0; k < run; k++, col++) {
        const yy = yT[frame[yRow + col]!]!;
        const r = (yy + cr) >> FIX;
        const g = (yy + cg) >> FIX;
        const b = (yy + cb) >> FIX;
        out[o] = lut[r < 0 ? 0 : Math.min(r, 255)]!;
        out[o + 1] = lut[256 + (g < 0 ? 0 : Math.min(g, 255))]!;
        out[o + 2] = lut[512 + (b < 0 ? 0 : Math.min(b, 255))]!;
        o += 3;
      }
    }
  }

  /** As `i420DirectRow`, sampling the luma bilinearly and the chroma at the nearest sample. */
  private i420ScaledRow(frame: Uint8Array, row: number, out: Uint8Array, o: number, lut: Uint8Array): void {
    const layout = (this.picture as Extract<RawPictureFormat, { format: 'i420' }>).layout;
    const { y: yT, rv, gu, gv, bu } = this.tables!;
    const { yStride, cStride, uOffset, vOffset } = layout;
    const cols = this.cols;
    const rows = this.rows;
    const r0 = rows.i0[row]! * yStride;
    const r1 = rows.i1[row]! * yStride;
    const wy = rows.w[row]!;
    const cRow = (rows.near[row]! >> 1) * cStride;
    const n = this.placement.dst.width;
    for (let col = 0; col < n; col++) {
      const a = cols.i0[col]!;
      const bb = cols.i1[col]!;
      const wx = cols.w[col]!;
      const top = frame[r0 + a]! * (W_ONE - wx) + frame[r0 + bb]! * wx;
      const bottom = frame[r1 + a]! * (W_ONE - wx) + frame[r1 + bb]! * wx;
      const luma = (top * (W_ONE - wy) + bottom * wy + (1 << (2 * W_BITS - 1))) >> (2 * W_BITS);
      const c = cRow + (cols.near[col]! >> 1);
      const u = frame[uOffset + c]!;
      const v = frame[vOffset + c]!;
      const yy = yT[luma]!;
      const r = (yy + rv[v]!) >> FIX;
      const g = (yy + gu[u]! + gv[v]!) >> FIX;
      const b = (yy + bu[u]!) >> FIX;
      out[o] = lut[r < 0 ? 0 : Math.min(r, 255)]!;
      out[o + 1] = lut[256 + (g < 0 ? 0 : Math.min(g, 255))]!;
      out[o + 2] = lut[512 + (b < 0 ? 0 : Math.min(b, 255))]!;
      o += 3;
    }
  }

  private rgbDirectRow(frame: Uint8Array, row: number, out: Uint8Array, o: number, lut: Uint8Array): void {
    const s = (row + this.offsetY) * this.picture.width * 3 + this.offsetX * 3;
    const n = this.width * 3;
    if (lut === IDENTITY_BYTES) {
      out.set(frame.subarray(s, s + n), o);
      return;
    }
    for (let i = 0; i < n; i += 3) {
      out[o + i] = lut[frame[s + i]!]!;
      out[o + i + 1] = lut[256 + frame[s + i + 1]!]!;
      out[o + i + 2] = lut[512 + frame[s + i + 2]!]!;
    }
  }

  private rgbScaledRow(frame: Uint8Array, row: number, out: Uint8Array, o: number, lut: Uint8Array): void {
    const rowBytes = this.picture.width * 3;
    const cols = this.cols;
    const rows = this.rows;
    const round = 1 << (2 * W_BITS - 1);
    const r0 = rows.i0[row]! * rowBytes;
    const r1 = rows.i1[row]! * rowBytes;
    const wy = rows.w[row]!;
    const n = this.placement.dst.width;
    for (let col = 0; col < n; col++) {
      const a = cols.i0[col]! * 3;
      const bb = cols.i1[col]! * 3;
      const wx = cols.w[col]!;
      for (let ch = 0; ch < 3; ch++) {
        const top = frame[r0 + a + ch]! * (W_ONE - wx) + frame[r0 + bb + ch]! * wx;
        const bottom = frame[r1 + a + ch]! * (W_ONE - wx) + frame[r1 + bb + ch]! * wx;
        out[o + ch] = lut[ch * 256 + ((top * (W_ONE - wy) + bottom * wy + round) >> (2 * W_BITS))]!;
      }
      o += 3;
    }
  }
}

/** Maps `n` RGB bytes through a 768-entry float table into `out` at `o`. */
function mapFloat(rgb: Uint8Array, n: number, lut: Float32Array, out: Float32Array, o: number): void {
  for (let i = 0; i < n; i += 3) {
    out[o + i] = lut[rgb[i]!]!;
    out[o + i + 1] = lut[256 + rgb[i + 1]!]!;
    out[o + i + 2] = lut[512 + rgb[i + 2]!]!;
  }
}

/**
 * Packed RGB24 (HWC uint8, W×H×3 bytes) of a whole raw frame at its own size,
 * e.g. to encode a snapshot JPEG with sharp (`{raw: {width, height,
 * channels: 3}}`). An rgb24 frame is returned as is.
 * @throws RangeError when the frame is short.
 */
export function rawFrameToRgb(picture: RawPictureFormat, frame: Uint8Array): Uint8Array {
  if (picture.format === 'rgb24') return frame.subarray(0, picture.width * picture.height * 3);
  return new RawToTensor(picture, picture.width, picture.height).fill(frame) as Uint8Array;
}
