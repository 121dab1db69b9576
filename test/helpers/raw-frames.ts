import { spawnSync } from 'node:child_process';
import { i420Layout } from '../../src/camera/raw-format.js';
import type { I420Layout, YuvColorSpace } from '../../src/core/types.js';

/** Runs ffmpeg with `args`, returns its stdout; throws with its stderr on failure. */
export function ffmpegBytes(args: string[], input?: Buffer): Buffer {
  const r = spawnSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', ...args], {
    input,
    maxBuffer: 1 << 28,
  });
  if (r.status !== 0) throw new Error(`ffmpeg ${args.join(' ')} failed: ${String(r.stderr)}`);
  return r.stdout;
}

const ffRange = (cs: YuvColorSpace): string => (cs.range === 'full' ? 'pc' : 'tv');

/** An unpadded yuv420p frame of `file` scaled to W×H by ffmpeg in colour space `cs`. */
export function i420Unpadded(file: string, width: number, height: number, cs: YuvColorSpace): Buffer {
  return ffmpegBytes([
    '-i',
    file,
    '-frames:v',
    '1',
    '-vf',
    `scale=${width}:${height}:out_range=${ffRange(cs)}:out_color_matrix=${cs.matrix},format=yuv420p`,
    '-f',
    'rawvideo',
    '-',
  ]);
}

/** Copies an unpadded I420 frame into `layout`, filling every padding byte with `pad`. */
export function padI420(unpadded: Buffer, layout: I420Layout, pad = 0xa5): Buffer {
  const { width: w, height: h, chromaWidth: cw, chromaHeight: ch } = layout;
  const out = Buffer.alloc(layout.frameBytes, pad);
  for (let y = 0; y < h; y++) unpadded.copy(out, y * layout.yStride, y * w, y * w + w);
  const u0 = w * h;
  const v0 = u0 + cw * ch;
  for (let y = 0; y < ch; y++) {
    unpadded.copy(out, layout.uOffset + y * layout.cStride, u0 + y * cw, u0 + y * cw + cw);
    unpadded.copy(out, layout.vOffset + y * layout.cStride, v0 + y * cw, v0 + y * cw + cw);
  }
  return out;
}

/** An I420 frame as rpicam-vid writes it: rows padded to a multiple of `align` bytes (64). */
export function i420Frame(file: string, width: number, height: number, cs: YuvColorSpace, align = 64, pad = 0xa5): Buffer {
  return padI420(i420Unpadded(file, width, height, cs), i420Layout(width, height, align), pad);
}

/** ffmpeg's own conversion of an unpadded yuv420p frame to packed rgb24 (its default nearest-chroma path, bit-exact). */
export function ffmpegI420ToRgb(unpadded: Buffer, width: number, height: number, cs: YuvColorSpace): Buffer {
  return ffmpegBytes(
    [
      '-f',
      'rawvideo',
      '-pix_fmt',
      'yuv420p',
      '-s',
      `${width}x${height}`,
      '-i',
      '-',
      '-vf',
      `scale=in_range=${ffRange(cs)}:in_color_matrix=${cs.matrix}:flags=bitexact,format=rgb24`,
      '-f',
      'rawvideo',
      '-',
    ],
    unpadded,
  );
}

/**
 * ffmpeg's conversion of the same frame with each chroma sample repeated over
 * its 2×2 pixels first (yuv444p), through swscale's accurate full-chroma path:
 * checks the matrix and range alone, whatever ffmpeg's 4:2:0 table precision.
 */
export function ffmpegI420ToRgbVia444(unpadded: Buffer, width: number, height: number, cs: YuvColorSpace): Buffer {
  const cw = Math.ceil(width / 2);
  const ch = Math.ceil(height / 2);
  const out = Buffer.alloc(width * height * 3);
  unpadded.copy(out, 0, 0, width * height);
  for (let p = 0; p < 2; p++) {
    const src = width * height + p * cw * ch;
    const dst = width * height * (1 + p);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) out[dst + y * width + x] = unpadded[src + (y >> 1) * cw + (x >> 1)]!;
    }
  }
  return ffmpegBytes(
    [
      '-f',
      'rawvideo',
      '-pix_fmt',
      'yuv444p',
      '-s',
      `${width}x${height}`,
      '-i',
      '-',
      '-vf',
      `scale=in_range=${ffRange(cs)}:in_color_matrix=${cs.matrix}:flags=accurate_rnd+full_chroma_int+bitexact,format=rgb24`,
      '-f',
      'rawvideo',
      '-',
    ],
    out,
  );
}

/** Largest absolute difference between two equally long byte arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}
