import { statSync } from 'node:fs';
import path from 'node:path';
import { redactUrl, type Logger } from '../service/log.js';
import { checkGeometry, checkInteger, checkOneOf } from './checks.js';
import { createFfmpegSource } from './ffmpeg.js';
import type { CaptureOptions, FrameSource } from './frame-source.js';
import { ReplaySource } from './replay.js';
import { createRpicamSource } from './rpicam.js';

/**
 * Settings common to every source (the config file's `source:` section and
 * the command line map onto these). Every field is optional; defaults are
 * in `SOURCE_DEFAULTS`.
 */
export interface SourceOptions extends CaptureOptions {
  /** Replay directories and video files start again at the end (default true). */
  readonly loop?: boolean;
  /** ffmpeg program, a path or a name on PATH (default `ffmpeg`). */
  readonly ffmpegPath?: string;
  /** Pi camera program, a path or a name on PATH (default: `rpicam-vid`, else `libcamera-vid`). */
  readonly rpicamPath?: string;
  /** Largest JPEG frame accepted from a camera stream, in bytes (default 8 MiB). */
  readonly maxFrameBytes?: number;
}

/** Defaults of `SourceOptions`. */
export const SOURCE_DEFAULTS = {
  width: 640,
  height: 480,
  fps: 10,
  rotation: 0,
  hflip: false,
  vflip: false,
  loop: true,
} as const;

/** `SourceOptions` with defaults applied and values checked. */
export interface ResolvedSourceOptions {
  readonly width: number;
  readonly height: number;
  readonly fps: number;
  readonly rotation: 0 | 90 | 180 | 270;
  readonly hflip: boolean;
  readonly vflip: boolean;
  readonly loop: boolean;
  readonly jpegQuality?: number;
  readonly ffmpegPath?: string;
  readonly rpicamPath?: string;
  readonly maxFrameBytes?: number;
}

/** What a source spec names, with the settings that apply to it. */
export type ParsedSource =
  | { readonly kind: 'rpicam'; readonly camera: number; readonly options: ResolvedSourceOptions }
  | { readonly kind: 'v4l2'; readonly device: string; readonly options: ResolvedSourceOptions }
  | { readonly kind: 'rtsp'; readonly url: string; readonly options: ResolvedSourceOptions }
  | { readonly kind: 'http'; readonly url: string; readonly options: ResolvedSourceOptions }
  | { readonly kind: 'video'; readonly path: string; readonly options: ResolvedSourceOptions }
  | { readonly kind: 'replay'; readonly dir: string; readonly options: ResolvedSourceOptions };

/** The accepted spec forms, as listed in errors. */
export const SOURCE_SPEC_FORMS =
  "'rpicam' or 'rpicam:N' (Pi camera N), a V4L2 device path such as '/dev/video0', " +
  "an 'rtsp://', 'rtsps://', 'http://' or 'https://' URL, a video file, or a directory of images";

function specError(spec: string, why: string): Error {
  return new Error(`source '${spec}' ${why}; accepted sources: ${SOURCE_SPEC_FORMS}`);
}

/**
 * Applies defaults to `options` and checks every value.
 * @throws RangeError naming the option (e.g. `source option 'width' must be an integer from 16 to 8192 (pixels), got 0`).
 */
export function resolveSourceOptions(options: SourceOptions = {}): ResolvedSourceOptions {
  const width = options.width ?? SOURCE_DEFAULTS.width;
  const height = options.height ?? SOURCE_DEFAULTS.height;
  const fps = options.fps ?? SOURCE_DEFAULTS.fps;
  checkGeometry(width, height, fps);
  const rotation = checkOneOf('rotation', options.rotation ?? SOURCE_DEFAULTS.rotation, [0, 90, 180, 270] as const);
  for (const key of ['hflip', 'vflip', 'loop'] as const) {
    if (options[key] !== undefined && typeof options[key] !== 'boolean') {
      throw new RangeError(`source option '${key}' must be true or false, got ${String(options[key])}`);
    }
  }
  if (options.jpegQuality !== undefined) checkInteger('jpegQuality', options.jpegQuality, 1, 100);
  if (options.maxFrameBytes !== undefined) checkInteger('maxFrameBytes', options.maxFrameBytes, 1024, 2 ** 30, 'bytes');
  return {
    width,
    height,
    fps,
    rotation,
    hflip: options.hflip ?? SOURCE_DEFAULTS.hflip,
    vflip: options.vflip ?? SOURCE_DEFAULTS.vflip,
    loop: options.loop ?? SOURCE_DEFAULTS.loop,
    ...(options.jpegQuality !== undefined ? { jpegQuality: options.jpegQuality } : {}),
    ...(options.ffmpegPath ? { ffmpegPath: options.ffmpegPath } : {}),
    ...(options.rpicamPath ? { rpicamPath: options.rpicamPath } : {}),
    ...(options.maxFrameBytes !== undefined ? { maxFrameBytes: options.maxFrameBytes } : {}),
  };
}

/**
 * Works out which source `spec` names (DESIGN.md "Source spec"):
 * - `rpicam` or `rpicam:N` → the Pi camera (N: camera index, default 0);
 * - a path under `/dev/` → a V4L2 device through ffmpeg (it need not exist
 *   yet: a USB camera plugged in later is picked up by the restart loop);
 * - `rtsp://`, `rtsps://` → an RTSP camera; `http://`, `https://` → an HTTP stream;
 * - an existing directory → replay of its files; an existing file → a video file.
 * Paths are resolved against the current directory. Reads the file system
 * (stat) for paths.
 * @throws Error naming the spec and listing the accepted forms for an
 * unknown spec (such as a path that does not exist); RangeError naming the
 * option for a bad option value, including rotation 90/270 with the Pi camera.
 */
export function parseSourceSpec(spec: string, options: SourceOptions = {}): ParsedSource {
  const text = spec.trim();
  if (text === '') throw specError(spec, 'is empty');
  const resolved = resolveSourceOptions(options);

  const rpicam = /^rpicam(?::(.*))?$/i.exec(text);
  if (rpicam) {
    const index = rpicam[1];
    if (index !== undefined && !/^\d{1,2}$/.test(index)) {
      throw specError(spec, `names camera '${index}': expected a camera index such as rpicam:0 or rpicam:1`);
    }
    if (resolved.rotation !== 0 && resolved.rotation !== 180) {
      throw new RangeError(
        `source option 'rotation' must be 0 or 180 for the Pi camera (rpicam-vid rotates only by flipping both axes), got ${resolved.rotation}`,
      );
    }
    return { kind: 'rpicam', camera: index === undefined ? 0 : Number(index), options: resolved };
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
    return name.startsWith('rtsp')
      ? { kind: 'rtsp', url: text, options: resolved }
      : { kind: 'http', url: text, options: resolved };
  }

  if (text.startsWith('/dev/')) return { kind: 'v4l2', device: text, options: resolved };

  const full = path.resolve(text);
  let info;
  try {
    info = statSync(full);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw specError(spec, 'is not a known source name and no file or directory of that name exists');
    throw specError(spec, `cannot be examined: ${(err as Error).message}`);
  }
  if (info.isDirectory()) return { kind: 'replay', dir: full, options: resolved };
  if (info.isFile()) return { kind: 'video', path: full, options: resolved };
  if (info.isCharacterDevice()) return { kind: 'v4l2', device: full, options: resolved };
  throw specError(spec, 'is neither a file, a directory nor a device');
}

/**
 * Builds the `FrameSource` for `spec` (see `parseSourceSpec`): a
 * `ProcessSource` running rpicam-vid or ffmpeg, or a `ReplaySource`. No
 * process is started and no camera is opened until `start()`.
 * @throws as `parseSourceSpec`.
 */
export function createFrameSource(spec: string, options: SourceOptions, log: Logger): FrameSource {
  const parsed = parseSourceSpec(spec, options);
  const o = parsed.options;
  const output = {
    width: o.width,
    height: o.height,
    fps: o.fps,
    rotation: o.rotation,
    hflip: o.hflip,
    vflip: o.vflip,
    ...(o.jpegQuality !== undefined ? { jpegQuality: o.jpegQuality } : {}),
    ...(o.maxFrameBytes !== undefined ? { maxFrameBytes: o.maxFrameBytes } : {}),
  };
  const ffmpeg = { ...output, ...(o.ffmpegPath !== undefined ? { ffmpegPath: o.ffmpegPath } : {}) };
  switch (parsed.kind) {
    case 'rpicam':
      return createRpicamSource(
        { ...output, ...(parsed.camera !== 0 ? { camera: parsed.camera } : {}), ...(o.rpicamPath !== undefined ? { rpicamPath: o.rpicamPath } : {}) },
        log,
      );
    case 'v4l2':
      return createFfmpegSource({ kind: 'v4l2', device: parsed.device }, ffmpeg, log);
    case 'rtsp':
      return createFfmpegSource({ kind: 'rtsp', url: parsed.url }, ffmpeg, log);
    case 'http':
      return createFfmpegSource({ kind: 'http', url: parsed.url }, ffmpeg, log);
    case 'video':
      return createFfmpegSource({ kind: 'file', path: parsed.path, loop: o.loop }, ffmpeg, log);
    case 'replay':
      return new ReplaySource({ dir: parsed.dir, fps: o.fps, loop: o.loop, log });
  }
}
