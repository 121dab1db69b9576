import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../core/log.js';
import type { ProblemReporter } from '../core/problems.js';
import type { RawPictureFormat, ResizeMode, Roi } from '../core/types.js';
import type { CaptureOptions } from './frame-source.js';
import { ProcessSource } from './process-source.js';
import { i420Layout, RPICAM_STRIDE_ALIGN, RPICAM_YUV420_COLORSPACE } from './raw-format.js';
import { isWholeFrame, rawCameraSize } from './roi.js';

/** Denoise modes of rpicam-vid's `--denoise`. */
type RpicamDenoise = 'auto' | 'off' | 'cdn_off' | 'cdn_fast' | 'cdn_hq';

/** Highest camera index `rpicam:N` names (rpicam-vid `--camera`). */
export const MAX_RPICAM_CAMERA = 15;

/**
 * Settings of the Raspberry Pi camera stream: the capture options (the ISP
 * scales for free, so ask for small frames), with rotation 0 or 180 only
 * (the camera rotates by flipping both axes).
 */
export interface RpicamOptions extends Omit<CaptureOptions, 'rotation'> {
  readonly rotation: 0 | 180;
  /** Camera index as listed by `rpicam-vid --list-cameras` (default 0). */
  readonly camera?: number;
  /** `--denoise` mode; rpicam-vid's default (`auto`) when unset. */
  readonly denoise?: RpicamDenoise;
  /**
   * Raw I420 frames for a model input of this size (`--codec yuv420`, sized
   * by `rawCameraSize`) instead of MJPEG at width×height; width/height then
   * only give the picture's aspect ratio.
   */
  readonly raw?: { readonly width: number; readonly height: number; readonly resize: ResizeMode };
  /** Region of interest, applied by the camera (`--roi`: a crop of the sensor picture, before the ISP scales). */
  readonly roi?: Roi;
}

/** The I420 frames rpicam-vid writes at `width`×`height`: 64-byte luma stride, BT.601 full range (see RPICAM_YUV420_COLORSPACE). */
export function rpicamRawFormat(width: number, height: number): RawPictureFormat {
  return { format: 'i420', width, height, layout: i420Layout(width, height, RPICAM_STRIDE_ALIGN), colorSpace: RPICAM_YUV420_COLORSPACE };
}

/** The frame size rpicam-vid is asked for: the capture size for MJPEG, `rawCameraSize` for raw frames. */
function rpicamFrameSize(options: RpicamOptions): { width: number; height: number } {
  if (!options.raw) return { width: options.width, height: options.height };
  return rawCameraSize(options.raw, options.raw.resize, options.width / options.height, isWholeFrame(options.roi) ? undefined : options.roi);
}

/**
 * The frame size libcamera settled on, from the line it logs when it
 * configures the streams (`configuring streams: (0) 304x224-YUV420/sYCC ...`),
 * or undefined for any other line.
 */
export function configuredStreamSize(line: string): { width: number; height: number } | undefined {
  const m = /configuring streams: \(0\) (\d+)x(\d+)-YUV420/.exec(line);
  return m ? { width: Number(m[1]), height: Number(m[2]) } : undefined;
}

/** Install instruction given whenever the camera apps are missing. */
const RPICAM_INSTALL_HINT = "install the Raspberry Pi camera apps with 'sudo apt install rpicam-apps' (or rpicam-apps-lite)";

/**
 * Arguments for `rpicam-vid` writing an endless stream to stdout:
 * `-t 0 -n --codec mjpeg|yuv420 -o - --width W --height H --framerate F --flush`
 * plus `--camera N`, `--rotation 180`, `--hflip`, `--vflip`, `--quality Q`
 * (MJPEG only), `--denoise MODE` and `--roi x,y,w,h` when set. `--flush`
 * makes rpicam-vid flush stdout after every frame; without it the end of a
 * frame can wait in stdio's buffer until the next one is written (one frame
 * of latency). With `raw`, W×H is `rpicamFrameSize` and the frames are
 * I420 (`--codec yuv420`). The same arguments work for `libcamera-vid`
 * (older Raspberry Pi OS).
 */
export function rpicamArgs(options: RpicamOptions): string[] {
  const { width, height } = rpicamFrameSize(options);
  const args = ['-t', '0', '-n', '--codec', options.raw ? 'yuv420' : 'mjpeg', '-o', '-'];
  args.push('--width', String(width), '--height', String(height), '--framerate', String(options.fps), '--flush');
  if (options.camera !== undefined) args.push('--camera', String(options.camera));
  if (options.rotation === 180) args.push('--rotation', '180');
  if (options.hflip) args.push('--hflip');
  if (options.vflip) args.push('--vflip');
  if (!options.raw) args.push('--quality', String(options.jpegQuality));
  if (options.denoise !== undefined) args.push('--denoise', options.denoise);
  if (options.roi && !isWholeFrame(options.roi)) {
    const r = options.roi;
    args.push('--roi', [r.x, r.y, r.width, r.height].map((v) => String(+v.toFixed(6))).join(','));
  }
  return args;
}

function isExecutableFile(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/** First `dir/name` on `searchPath` (a PATH-style list) that is an executable file, or undefined. */
export function findOnPath(name: string, searchPath: string = process.env.PATH ?? ''): string | undefined {
  for (const dir of searchPath.split(path.delimiter)) {
    if (dir === '') continue;
    const candidate = path.join(dir, name);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

/**
 * The camera program to run: `override` when given (a path, or a name looked
 * up on PATH), else `rpicam-vid` on PATH, else `libcamera-vid` (the name
 * before Raspberry Pi OS Bookworm).
 * @throws Error naming both programs and the apt package when neither is found,
 * or naming `rpicamPath` when the override is not an executable file.
 */
export function findRpicamProgram(override?: string, searchPath: string = process.env.PATH ?? ''): string {
  if (override !== undefined && override !== '') {
    const found = override.includes('/') ? (isExecutableFile(override) ? override : undefined) : findOnPath(override, searchPath);
    if (!found) {
      throw new Error(`rpicamPath '${override}' is not an executable file${override.includes('/') ? '' : ' on PATH'}`);
    }
    return found;
  }
  const found = findOnPath('rpicam-vid', searchPath) ?? findOnPath('libcamera-vid', searchPath);
  if (!found) {
    throw new Error(`the Pi camera source needs rpicam-vid (or libcamera-vid), but neither is on PATH: ${RPICAM_INSTALL_HINT}`);
  }
  return found;
}

/** Short description of a Pi camera source, e.g. `rpicam 640x480@10`, `rpicam:1 1280x720@5` or `rpicam 288x224@10 yuv420`. */
export function rpicamDescription(options: RpicamOptions): string {
  const cam = options.camera ? `rpicam:${options.camera}` : 'rpicam';
  const { width, height } = rpicamFrameSize(options);
  return `${cam} ${width}x${height}@${options.fps}${options.raw ? ' yuv420' : ''}`;
}

/**
 * A `ProcessSource` running the Pi camera. The program is looked for when the
 * source starts (`start()` rejects with `findRpicamProgram`'s error). For raw
 * frames, a size libcamera adjusts (its `configuring streams` line names
 * another size than asked) is followed, so frames are still split right.
 */
export function createRpicamSource(
  options: RpicamOptions & {
    readonly rpicamPath?: string;
    readonly maxFrameBytes?: number;
    readonly stallTimeoutMs?: number;
    readonly problems?: ProblemReporter;
  },
  log: Logger,
): ProcessSource {
  const size = rpicamFrameSize(options);
  return new ProcessSource({
    command: () => findRpicamProgram(options.rpicamPath),
    args: rpicamArgs(options),
    description: rpicamDescription(options),
    log,
    installHint: RPICAM_INSTALL_HINT,
    device: options.camera ? `camera ${options.camera}` : 'the Pi camera',
    ...(options.raw
      ? {
          raw: rpicamRawFormat(size.width, size.height),
          adjustRaw: (line: string) => {
            const actual = configuredStreamSize(line);
            return actual && (actual.width !== size.width || actual.height !== size.height) ? rpicamRawFormat(actual.width, actual.height) : undefined;
          },
        }
      : {}),
    ...(options.maxFrameBytes !== undefined ? { maxFrameBytes: options.maxFrameBytes } : {}),
    ...(options.stallTimeoutMs !== undefined ? { stallTimeoutMs: options.stallTimeoutMs } : {}),
    ...(options.problems ? { problems: options.problems } : {}),
  });
}
