/**
 * Layouts of the raw (uncompressed) frames the camera sources deliver.
 *
 * - `i420`: planar YUV 4:2:0 as `rpicam-vid --codec yuv420` writes it: the
 *   Y plane (H rows of `yStride` bytes), then U (Cb) and V (Cr), each
 *   ceil(H/2) rows of `cStride` bytes holding ceil(W/2) samples; every row
 *   may end in padding bytes that carry no picture.
 * - `rgb24`: packed RGB, 3 bytes per pixel, rows of exactly 3 × W bytes, as
 *   `ffmpeg -f rawvideo -pix_fmt rgb24` writes it (the layout of a uint8 NHWC
 *   image tensor).
 */

/** Pixel formats of raw frames. */
export type RawPixelFormat = 'i420' | 'rgb24';

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
 * The colour space of `rpicam-vid --codec yuv420` frames, at every size:
 * BT.601 matrix, full range (libcamera's `ColorSpace::Sycc`, the JPEG colour
 * space). rpicam-vid asks libcamera for it whenever the codec is `mjpeg` or
 * `yuv420` (`get_colourspace_flags()` in apps/rpicam_vid.cpp returns
 * FLAG_VIDEO_JPEG_COLOURSPACE, which `RPiCamApp::ConfigureVideo` turns into
 * `ColorSpace::Sycc`). Only the H.264/libav codecs get a video colour space:
 * `Smpte170m` (BT.601, limited range) below 1280×720 and `Rec709` (BT.709,
 * limited range) from 1280 wide or 720 high.
 */
export const RPICAM_YUV420_COLORSPACE: YuvColorSpace = Object.freeze({ matrix: 'bt601', range: 'full' });

/** Byte alignment of rpicam-vid's luma rows: the stride is the width rounded up to a multiple of 64 (raspberrypi/rpicam-apps #188: 780 wide gives 832). */
export const RPICAM_STRIDE_ALIGN = 64;

/** Where the planes of an I420 frame lie in its buffer; all values in bytes except the sizes (pixels/samples). */
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
  /** Bytes of one whole frame, padding included: yStride × height + 2 × cStride × chromaHeight. */
  readonly frameBytes: number;
}

/**
 * The I420 layout of a W×H frame whose luma stride is the width rounded up
 * to a multiple of `align` bytes and whose chroma stride is half of it, as
 * libcamera lays out YUV420 buffers (`align` 64 for rpicam-vid, 1 for
 * unpadded frames such as ffmpeg's `yuv420p`). For an even height the frame
 * is yStride × H × 1.5 bytes; e.g. 224×224 at align 64: stride 256, 86016
 * bytes.
 * @throws RangeError for a size that is not a positive integer, or an
 * `align` that is not a power of two.
 */
export function i420Layout(width: number, height: number, align = 1): I420Layout {
  if (!Number.isInteger(width) || width < 1 || !Number.isInteger(height) || height < 1) {
    throw new RangeError(`I420 frame size must be positive whole pixels, got ${width}x${height}`);
  }
  if (!Number.isInteger(align) || align < 1 || (align & (align - 1)) !== 0) {
    throw new RangeError(`I420 stride alignment must be a power of two, got ${align}`);
  }
  const chromaWidth = Math.ceil(width / 2);
  const chromaHeight = Math.ceil(height / 2);
  const yStride = Math.ceil(width / align) * align;
  // Half the luma stride, as libcamera does (an odd stride only occurs unaligned: then the chroma width).
  const cStride = yStride % 2 === 0 ? yStride / 2 : chromaWidth;
  const uOffset = yStride * height;
  const vOffset = uOffset + cStride * chromaHeight;
  return {
    width,
    height,
    yStride,
    cStride,
    chromaWidth,
    chromaHeight,
    uOffset,
    vOffset,
    frameBytes: vOffset + cStride * chromaHeight,
  };
}

/**
 * What a raw frame holds: its size and pixel format, and for `i420` the
 * plane layout and colour space. Frames of one source all share one
 * description.
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

/** Bytes of one frame of `picture` (rgb24: 3 × W × H; i420: the layout's frameBytes). */
export function rawFrameBytes(picture: RawPictureFormat): number {
  return picture.format === 'rgb24' ? picture.width * picture.height * 3 : picture.layout.frameBytes;
}

/** Short text for logs, e.g. `i420 224x224 (stride 256, bt601 full)` or `rgb24 224x224`. */
export function describeRawPicture(picture: RawPictureFormat): string {
  if (picture.format === 'rgb24') return `rgb24 ${picture.width}x${picture.height}`;
  return `i420 ${picture.width}x${picture.height} (stride ${picture.layout.yStride}, ${picture.colorSpace.matrix} ${picture.colorSpace.range})`;
}
