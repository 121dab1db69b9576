import sharp from 'sharp';

/** A raw frame: packed pixels, row-major (HWC), `channels` bytes per pixel (3 = RGB, 1 = grey). */
export interface RawImage {
  readonly data: Buffer;
  readonly width: number;
  readonly height: number;
  readonly channels: 1 | 3 | 4;
}

/** A JPEG snapshot and its size in pixels. */
export interface EncodedSnapshot {
  readonly jpeg: Buffer;
  readonly width: number;
  readonly height: number;
}

/** Options of `encodeSnapshot`. */
export interface SnapshotEncodeOptions {
  /** Largest width of the JPEG in pixels (aspect ratio kept, never enlarged), 16..4096. Default 640. */
  readonly width?: number;
  /** JPEG quality 1..100. Default 75. */
  readonly quality?: number;
}

/**
 * Encodes a frame as a JPEG snapshot for `<base>/snapshot` and the
 * snapshot folder: orientation from EXIF applied, scaled down to at most
 * `width` pixels wide, baseline JPEG at `quality`, metadata stripped.
 * `frame`: an encoded image (JPEG, PNG, WebP… as frames arrive from a
 * camera or a replay folder) or a raw one.
 * Throws when an option is out of range or sharp cannot decode the frame
 * (message from libvips).
 */
export async function encodeSnapshot(frame: Buffer | RawImage, options: SnapshotEncodeOptions = {}): Promise<EncodedSnapshot> {
  const width = options.width ?? 640;
  if (!Number.isInteger(width) || width < 16 || width > 4096) throw new Error(`snapshot width ${width}: expected a whole number of pixels 16..4096`);
  const quality = options.quality ?? 75;
  if (!Number.isInteger(quality) || quality < 1 || quality > 100) throw new Error(`snapshot quality ${quality}: expected a whole number 1..100`);
  const image = Buffer.isBuffer(frame)
    ? sharp(frame, { failOn: 'error' })
    : sharp(frame.data, { raw: { width: frame.width, height: frame.height, channels: frame.channels } });
  const { data, info } = await image
    .rotate()
    .resize({ width, withoutEnlargement: true })
    .jpeg({ quality, mozjpeg: false })
    .toBuffer({ resolveWithObject: true });
  return { jpeg: data, width: info.width, height: info.height };
}
