import type { I420Layout, RawPictureFormat, YuvColorSpace } from '../core/types.js';

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

/** Bytes of one frame of `picture` (rgb24: 3 × W × H; i420: the layout's frameBytes). */
export function rawFrameBytes(picture: RawPictureFormat): number {
  return picture.format === 'rgb24' ? picture.width * picture.height * 3 : picture.layout.frameBytes;
}

/** Short text for logs, e.g. `i420 224x224 (stride 256, bt601 full)` or `rgb24 224x224`. */
export function describeRawPicture(picture: RawPictureFormat): string {
  if (picture.format === 'rgb24') return `rgb24 ${picture.width}x${picture.height}`;
  return `i420 ${picture.width}x${picture.height} (stride ${picture.layout.yStride}, ${picture.colorSpace.matrix} ${picture.colorSpace.range})`;
}
