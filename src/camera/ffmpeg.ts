import type { Logger } from '../core/log.js';
import type { ProblemReporter } from '../core/problems.js';
import { redactUrl, urlRedactor } from '../core/redact.js';
import type { RawPictureFormat, ResizeMode, Roi } from '../core/types.js';
import type { CaptureOptions } from './frame-source.js';
import { ProcessSource } from './process-source.js';
import { isWholeFrame } from './roi.js';

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
 * URL paths of HTTP inputs that carry their own timestamps (an HLS playlist,
 * a video file): those keep them; any other HTTP input is taken for a live
 * MJPEG camera, whose frames get their arrival time.
 */
const CONTAINER_PATH = /\.(m3u8|mp4|m4v|mkv|webm|mov|avi|ts|flv)$/i;

/**
 * Maps a JPEG quality 1..100 (100 best, as libjpeg and rpicam-vid count) to
 * ffmpeg's MJPEG quantizer scale `-q:v` 2..31 (2 best), linearly:
 * `round(2 + (100 - quality) * 29 / 99)`; 100 → 2, 90 → 5, 50 → 17, 1 → 31.
 */
export function jpegQualityToQscale(quality: number): number {
  return Math.round(2 + ((100 - quality) * 29) / 99);
}

/** What ffmpeg writes besides the capture options: raw RGB frames at a model's size, and the region of interest. */
export interface FfmpegOutputOptions extends CaptureOptions {
  /** Raw RGB24 frames of this size, fitted by `resize` (`-f rawvideo -pix_fmt rgb24`), instead of MJPEG at width×height. */
  readonly raw?: { readonly width: number; readonly height: number; readonly resize: ResizeMode };
  /** Region of interest, cropped by ffmpeg after rotation and flips, before scaling. */
  readonly roi?: Roi;
}

/** The RGB24 frames `ffmpegArgs` makes ffmpeg write for `raw`. */
function ffmpegRawFormat(raw: { readonly width: number; readonly height: number }): RawPictureFormat {
  return { format: 'rgb24', width: raw.width, height: raw.height };
}

/**
 * The filters that fit a picture into W×H: `stretch` scales to W×H;
 * `crop` scales to cover and crops the centre; `letterbox` scales to fit and
 * pads with black, centred (ffmpeg's `force_original_aspect_ratio`).
 */
function fitFilters(width: number, height: number, resize: ResizeMode): string[] {
  switch (resize) {
    case 'stretch':
      return [`scale=${width}:${height}`];
    case 'crop':
      return [`scale=${width}:${height}:force_original_aspect_ratio=increase`, `crop=${width}:${height}`];
    case 'letterbox':
      return [`scale=${width}:${height}:force_original_aspect_ratio=decrease`, `pad=${width}:${height}:(ow-iw)/2:(oh-ih)/2:black`];
  }
}

/**
 * ffmpeg arguments that read `input` and write frames to stdout at the
 * requested size, at most `fps` per second:
 *
 * `-hide_banner -loglevel warning -nostdin <input options> -i <input>
 *  -map 0:v:0 -an -vf [rotation/flips,][crop=ROI,]<fit> -fps_mode vfr -r F <output>`
 *
 * Output: MJPEG `-f mjpeg -q:v Q -flush_packets 1 -` scaled to W×H, or with
 * `raw` RGB24 `-f rawvideo -pix_fmt rgb24 -` at the raw size, fitted by its
 * resize mode (`fitFilters`), so that frames need no decoding and no resizing
 * afterwards.
 *
 * Rate: `-fps_mode vfr -r F` keeps frames with their own timestamps and
 * drops those that would land on the same 1/F tick: at most F per second,
 * never a duplicate (the `fps` filter, used before, duplicated frames of a
 * slower camera and, fed a live multipart MJPEG stream stamped at an assumed
 * 25 fps, kept only F/25 of them). For HTTP inputs the timestamps are the
 * arrival times (`-use_wallclock_as_timestamps 1`): an MJPEG-over-HTTP camera
 * carries none (HLS playlists and video files over HTTP, recognised by their
 * extension, keep their own).
 *
 * Input options: V4L2 `-f v4l2 -input_format mjpeg -video_size WxH
 * -framerate F` (the driver picks the nearest mode it has; the scale filter
 * then gives the exact size); RTSP `-rtsp_transport tcp -timeout 10000000`
 * (socket timeout in µs; ffmpeg 5 or later, as on Raspberry Pi OS Bookworm);
 * HTTP `-rw_timeout 10000000 [-use_wallclock_as_timestamps 1]`; file `-re`
 * (native rate) and `-stream_loop -1` when looping.
 */
export function ffmpegArgs(input: FfmpegInput, output: FfmpegOutputOptions): string[] {
  const { width, height, fps, rotation } = output;

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
      args.push('-rw_timeout', String(NETWORK_TIMEOUT_US));
      if (!CONTAINER_PATH.test(new URL(input.url).pathname)) args.push('-use_wallclock_as_timestamps', '1');
      args.push('-i', input.url);
      break;
    case 'file':
      args.push('-re');
      if (input.loop) args.push('-stream_loop', '-1');
      args.push('-i', input.path);
      break;
  }

  const filters: string[] = [];
  if (rotation === 90) filters.push('transpose=clock');
  if (rotation === 180) filters.push('hflip', 'vflip');
  if (rotation === 270) filters.push('transpose=cclock');
  if (output.hflip) filters.push('hflip');
  if (output.vflip) filters.push('vflip');
  const roi = output.roi;
  if (roi && !isWholeFrame(roi)) {
    const f = (v: number) => String(+v.toFixed(6));
    filters.push(`crop=iw*${f(roi.width)}:ih*${f(roi.height)}:iw*${f(roi.x)}:ih*${f(roi.y)}`);
  }
  const raw = output.raw;
  if (raw) filters.push(...fitFilters(raw.width, raw.height, raw.resize), 'setsar=1', 'format=rgb24');
  else filters.push(`scale=${width}:${height}`);

  args.push('-map', '0:v:0', '-an', '-vf', filters.join(','), '-fps_mode', 'vfr', '-r', String(fps));
  if (raw) args.push('-f', 'rawvideo', '-pix_fmt', 'rgb24', '-');
  else args.push('-f', 'mjpeg', '-q:v', String(jpegQualityToQscale(output.jpegQuality)), '-flush_packets', '1', '-');
  return args;
}

/** Short description of an ffmpeg source, e.g. `v4l2 /dev/video0 640x480@10` or `http://cam/stream 224x224@10 rgb24`; URL passwords are hidden. */
export function ffmpegDescription(input: FfmpegInput, output: Pick<FfmpegOutputOptions, 'width' | 'height' | 'fps' | 'raw'>): string {
  const size = output.raw ? `${output.raw.width}x${output.raw.height}@${output.fps} rgb24` : `${output.width}x${output.height}@${output.fps}`;
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
  output: FfmpegOutputOptions & {
    readonly ffmpegPath?: string;
    readonly maxFrameBytes?: number;
    readonly stallTimeoutMs?: number;
    readonly problems?: ProblemReporter;
  },
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
    ...(output.raw ? { raw: ffmpegRawFormat(output.raw) } : {}),
    ...(output.stallTimeoutMs !== undefined ? { stallTimeoutMs: output.stallTimeoutMs } : {}),
    ...(output.problems ? { problems: output.problems } : {}),
    ...(input.kind === 'v4l2' ? { device: input.device } : {}),
  });
}
