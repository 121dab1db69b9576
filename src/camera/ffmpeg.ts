import type { Logger } from '../core/log.js';
import { redactUrl, urlRedactor } from '../core/redact.js';
import type { CaptureOptions } from './frame-source.js';
import { ProcessSource } from './process-source.js';

/** What ffmpeg reads. */
export type FfmpegInput =
  /** A V4L2 capture device (USB webcam), e.g. `/dev/video0` or `/dev/v4l/by-id/...`; asks it for MJPEG unless `inputFormat` says otherwise. */
  | { readonly kind: 'v4l2'; readonly device: string; readonly inputFormat?: string }
  /** An RTSP camera, `rtsp://` or `rtsps://`, read over TCP. */
  | { readonly kind: 'rtsp'; readonly url: string }
  /** An HTTP(S) stream or file, e.g. an MJPEG-over-HTTP camera. */
  | { readonly kind: 'http'; readonly url: string }
  /** A video file read at its native rate; `loop` restarts it at the end forever. */
  | { readonly kind: 'file'; readonly path: string; readonly loop: boolean };

/** Install instruction given when ffmpeg is missing. */
export const FFMPEG_INSTALL_HINT = "install it with 'sudo apt install ffmpeg'";

/** Socket and read timeout handed to ffmpeg for network inputs, in microseconds (10 s): a dead camera ends ffmpeg, which is then restarted. */
const NETWORK_TIMEOUT_US = 10_000_000;

/**
 * Maps a JPEG quality 1..100 (100 best, as libjpeg and rpicam-vid count) to
 * ffmpeg's MJPEG quantizer scale `-q:v` 2..31 (2 best), linearly:
 * `round(2 + (100 - quality) * 29 / 99)`; 100 → 2, 90 → 5, 50 → 17, 1 → 31.
 */
export function jpegQualityToQscale(quality: number): number {
  return Math.round(2 + ((100 - quality) * 29) / 99);
}

/**
 * ffmpeg arguments that read `input` and write an MJPEG stream (concatenated
 * JPEGs) to stdout at the requested size and rate:
 *
 * `-hide_banner -loglevel warning -nostdin <input options> -i <input>
 *  -map 0:v:0 -an -vf fps=F[,rotation/flips],scale=W:H -f mjpeg -q:v Q -flush_packets 1 -`
 *
 * Input options: V4L2 `-f v4l2 -input_format mjpeg -video_size WxH
 * -framerate F` (the driver picks the nearest mode it has; the scale filter
 * then gives the exact size); RTSP `-rtsp_transport tcp -timeout 10000000`
 * (socket timeout in µs; ffmpeg 5 or later, as on Raspberry Pi OS Bookworm);
 * HTTP `-rw_timeout 10000000`; file `-re` (native rate) and
 * `-stream_loop -1` when looping. The fps filter comes first so that frames
 * over the rate are dropped before they are scaled and encoded.
 */
export function ffmpegArgs(input: FfmpegInput, output: CaptureOptions): string[] {
  const { width, height, fps, rotation } = output;
  const qscale = jpegQualityToQscale(output.jpegQuality);

  const args = ['-hide_banner', '-loglevel', 'warning', '-nostdin'];
  switch (input.kind) {
    case 'v4l2':
      args.push('-f', 'v4l2', '-input_format', input.inputFormat ?? 'mjpeg');
      args.push('-video_size', `${width}x${height}`, '-framerate', String(fps), '-i', input.device);
      break;
    case 'rtsp':
      args.push('-rtsp_transport', 'tcp', '-timeout', String(NETWORK_TIMEOUT_US), '-i', input.url);
      break;
    case 'http':
      args.push('-rw_timeout', String(NETWORK_TIMEOUT_US), '-i', input.url);
      break;
    case 'file':
      args.push('-re');
      if (input.loop) args.push('-stream_loop', '-1');
      args.push('-i', input.path);
      break;
  }

  const filters = [`fps=${fps}`];
  if (rotation === 90) filters.push('transpose=clock');
  if (rotation === 180) filters.push('hflip', 'vflip');
  if (rotation === 270) filters.push('transpose=cclock');
  if (output.hflip) filters.push('hflip');
  if (output.vflip) filters.push('vflip');
  filters.push(`scale=${width}:${height}`);

  args.push('-map', '0:v:0', '-an', '-vf', filters.join(','));
  args.push('-f', 'mjpeg', '-q:v', String(qscale), '-flush_packets', '1', '-');
  return args;
}

/** Short description of an ffmpeg source, e.g. `v4l2 /dev/video0 640x480@10`; URL passwords are hidden. */
export function ffmpegDescription(input: FfmpegInput, output: Pick<CaptureOptions, 'width' | 'height' | 'fps'>): string {
  const size = `${output.width}x${output.height}@${output.fps}`;
  switch (input.kind) {
    case 'v4l2':
      return `v4l2 ${input.device} ${size}`;
    case 'rtsp':
    case 'http':
      return `${input.kind} ${redactUrl(input.url)} ${size}`;
    case 'file':
      return `video ${input.path}${input.loop ? ' (loop)' : ''} ${size}`;
  }
}

/**
 * A `ProcessSource` running ffmpeg on `input`. A video file that does not
 * loop ends the source when ffmpeg exits with status 0; every other input
 * (and a looping file) is restarted with backoff when ffmpeg exits.
 */
export function createFfmpegSource(
  input: FfmpegInput,
  output: CaptureOptions & { readonly ffmpegPath?: string; readonly maxFrameBytes?: number },
  log: Logger,
): ProcessSource {
  const url = input.kind === 'rtsp' || input.kind === 'http' ? input.url : undefined;
  return new ProcessSource({
    command: output.ffmpegPath !== undefined && output.ffmpegPath !== '' ? output.ffmpegPath : 'ffmpeg',
    args: ffmpegArgs(input, output),
    description: ffmpegDescription(input, output),
    log,
    restart: !(input.kind === 'file' && !input.loop),
    installHint: FFMPEG_INSTALL_HINT,
    ...(url !== undefined ? { redact: urlRedactor(url) } : {}),
    ...(output.maxFrameBytes !== undefined ? { maxFrameBytes: output.maxFrameBytes } : {}),
  });
}
