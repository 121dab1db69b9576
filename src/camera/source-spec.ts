import { type Stats, statSync } from 'node:fs';
import path from 'node:path';
import { invalidParameterError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { ProblemReporter } from '../core/problems.js';
import { redactUrl } from '../core/redact.js';
import type { ResizeMode, Roi } from '../core/types.js';
import { createFfmpegSource } from './ffmpeg.js';
import type { CaptureOptions, FrameSource } from './frame-source.js';
import { ReplaySource } from './replay.js';
import { createRpicamSource, MAX_RPICAM_CAMERA } from './rpicam.js';

/**
 * Settings of every source: what the camera is asked for, and whether replay
 * folders and video files loop (the config file's `source:` section maps onto
 * these in `config/options.ts`), plus program paths and a frame size bound
 * that only tests and unusual installs set.
 */
export interface SourceOptions extends CaptureOptions {
  /** Replay directories and video files start again at the end. */
  readonly loop: boolean;
  /** ffmpeg program, a path or a name on PATH (default `ffmpeg`). */
  readonly ffmpegPath?: string;
  /** Pi camera program, a path or a name on PATH (default: `rpicam-vid`, else `libcamera-vid`). */
  readonly rpicamPath?: string;
  /** Largest JPEG frame accepted from a camera stream, in bytes (default 8 MiB). */
  readonly maxFrameBytes?: number;
  /**
   * `raw`: frames made for the model's input without JPEG — the Pi camera's
   * I420 (its ISP scales), ffmpeg's RGB24 at the model's size — when `model`
   * is given; `mjpeg`: JPEG frames at width×height. Replayed files are images
   * either way.
   */
  readonly format: 'raw' | 'mjpeg';
  /** The model input raw frames are made for: its size, and how frames are fitted to it (`preprocess.resize`). */
  readonly model?: { readonly width: number; readonly height: number; readonly resize: ResizeMode };
  /** Region of interest applied by the camera or ffmpeg; replay sources leave it to the preprocessing. */
  readonly roi?: Roi;
  /** Stall watchdog of camera processes, ms (see `stallTimeoutMs`); default none. */
  readonly stallTimeoutMs?: number;
  /** Where camera processes report `source_stalled` and `camera_error`. */
  readonly problems?: ProblemReporter;
}

/** True when `spec`'s source makes raw frames for the model with `format: raw` (every source but a replay folder). */
function sourceMakesRawFrames(kind: ParsedSource['kind'], format: 'raw' | 'mjpeg'): boolean {
  return format === 'raw' && kind !== 'replay';
}

/** What a source spec names. */
export type ParsedSource =
  | { readonly kind: 'rpicam'; readonly camera: number }
  | { readonly kind: 'v4l2'; readonly device: string }
  | { readonly kind: 'rtsp'; readonly url: string }
  | { readonly kind: 'http'; readonly url: string }
  | { readonly kind: 'video'; readonly path: string }
  | { readonly kind: 'replay'; readonly dir: string };

/** The accepted spec forms, as listed in errors. */
export const SOURCE_SPEC_FORMS =
  "'rpicam' or 'rpicam:N' (Pi camera N), a V4L2 device path such as '/dev/video0', " +
  "an 'rtsp://', 'rtsps://', 'http://' or 'https://' URL, a video file, or a directory of images";

function specError(spec: string, why: string): Error {
  return new Error(`source '${spec}' ${why}; accepted sources: ${SOURCE_SPEC_FORMS}`);
}

/**
 * Works out which source `spec` names (DESIGN.md "Source spec"):
 * - `rpicam` or `rpicam:N` → the Pi camera (N: camera index, default 0);
 * - a path under `/dev/` → a V4L2 device through ffmpeg (it need not exist
 *   yet: a USB camera plugged in later is picked up by the restart loop);
 * - `rtsp://`, `rtsps://` → an RTSP camera; `http://`, `https://` → an HTTP stream;
 * - an existing directory → replay of its files; an existing file → a video file.
 * Paths are resolved against the current directory. Reads the file system
 * (stat) for paths. `rotation` is checked against what the named source can
 * do (the Pi camera: 0 or 180).
 * @throws Error naming the spec and listing the accepted forms for an
 * unknown spec (such as a path that does not exist); RangeError naming the
 * option for rotation 90/270 or a camera index above 15 with the Pi camera.
 */
export function parseSourceSpec(spec: string, rotation = 0): ParsedSource {
  const text = spec.trim();
  if (text === '') throw specError(spec, 'is empty');

  const rpicam = /^rpicam(?::(.*))?$/i.exec(text);
  if (rpicam) {
    const index = rpicam[1];
    if (index !== undefined && !/^\d{1,2}$/.test(index)) {
      throw specError(spec, `names camera '${index}': expected a camera index such as rpicam:0 or rpicam:1`);
    }
    const camera = index === undefined ? 0 : Number(index);
    if (camera > MAX_RPICAM_CAMERA) throw invalidParameterError(`camera index of source '${spec}'`, `0 to ${MAX_RPICAM_CAMERA}`, camera);
    if (rotation !== 0 && rotation !== 180) {
      throw invalidParameterError(
        'source.rotation',
        '0 or 180 for the Pi camera (rpicam-vid rotates only by flipping both axes; for 90 or 270 turn the camera, or use hflip/vflip)',
        rotation,
      );
    }
    return { kind: 'rpicam', camera };
  }

  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text);
  if (scheme) {
    const name = scheme[1].toLowerCase();
    if (!['rtsp', 'rtsps', 'http', 'https'].includes(name)) throw specError(redactUrl(text), `has an unsupported URL scheme '${name}'`);
    try {
      new URL(text);
    } catch {
      throw specError(redactUrl(text), 'is not a valid URL');
    }
    return name.startsWith('rtsp') ? { kind: 'rtsp', url: text } : { kind: 'http', url: text };
  }

  if (text.startsWith('/dev/')) return { kind: 'v4l2', device: text };

  const full = path.resolve(text);
  let info: Stats;
  try {
    info = statSync(full);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw specError(spec, 'is not a known source name and no file or directory of that name exists');
    throw specError(spec, `cannot be examined: ${(err as Error).message}`);
  }
  if (info.isDirectory()) return { kind: 'replay', dir: full };
  if (info.isFile()) return { kind: 'video', path: full };
  if (info.isCharacterDevice()) return { kind: 'v4l2', device: full };
  throw specError(spec, 'is neither a file, a directory nor a device');
}

/**
 * Builds the `FrameSource` for `spec` (see `parseSourceSpec`): a
 * `ProcessSource` running rpicam-vid or ffmpeg, or a `ReplaySource`. No
 * process is started and no camera is opened until `start()`.
 * @throws as `parseSourceSpec`; RangeError for a `maxFrameBytes` outside 1 KiB..1 GiB.
 */
export function createFrameSource(spec: string, options: SourceOptions, log: Logger): FrameSource {
  const parsed = parseSourceSpec(spec, options.rotation);
  const { loop, ffmpegPath, rpicamPath, maxFrameBytes, format, model, roi, stallTimeoutMs, problems, ...capture } = options;
  if (maxFrameBytes !== undefined && !(Number.isInteger(maxFrameBytes) && maxFrameBytes >= 1024 && maxFrameBytes <= 2 ** 30)) {
    throw invalidParameterError('maxFrameBytes', 'an integer from 1024 to 1073741824 (bytes)', maxFrameBytes);
  }
  const bound = {
    ...(maxFrameBytes !== undefined ? { maxFrameBytes } : {}),
    ...(stallTimeoutMs !== undefined ? { stallTimeoutMs } : {}),
    ...(problems ? { problems } : {}),
    ...(roi ? { roi } : {}),
    ...(model && sourceMakesRawFrames(parsed.kind, format) ? { raw: model } : {}),
  };
  const ffmpeg = { ...capture, ...bound, ...(ffmpegPath !== undefined ? { ffmpegPath } : {}) };
  switch (parsed.kind) {
    case 'rpicam':
      return createRpicamSource(
        {
          ...capture,
          ...bound,
          rotation: capture.rotation === 180 ? 180 : 0,
          ...(parsed.camera !== 0 ? { camera: parsed.camera } : {}),
          ...(rpicamPath !== undefined ? { rpicamPath } : {}),
        },
        log,
      );
    case 'v4l2':
      return createFfmpegSource({ kind: 'v4l2', device: parsed.device }, ffmpeg, log);
    case 'rtsp':
      return createFfmpegSource({ kind: 'rtsp', url: parsed.url }, ffmpeg, log);
    case 'http':
      return createFfmpegSource({ kind: 'http', url: parsed.url }, ffmpeg, log);
    case 'video':
      return createFfmpegSource({ kind: 'file', path: parsed.path, loop }, ffmpeg, log);
    case 'replay':
      return new ReplaySource({ dir: parsed.dir, fps: capture.fps, loop, log });
  }
}
