import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../service/log.js';
import { checkGeometry, checkInteger, checkOneOf } from './checks.js';
import { ProcessSource } from './process-source.js';

/** Denoise modes of rpicam-vid's `--denoise`. */
export const RPICAM_DENOISE_MODES = ['auto', 'off', 'cdn_off', 'cdn_fast', 'cdn_hq'] as const;
export type RpicamDenoise = (typeof RPICAM_DENOISE_MODES)[number];

/** Settings of the Raspberry Pi camera stream. */
export interface RpicamOptions {
  /** Frame width in pixels (default 640): the camera's ISP scales for free, so ask for small frames. */
  readonly width?: number;
  /** Frame height in pixels (default 480). */
  readonly height?: number;
  /** Frame rate in Hz (default 10). */
  readonly fps?: number;
  /** Camera index as listed by `rpicam-vid --list-cameras` (default 0). */
  readonly camera?: number;
  /** 0 or 180 degrees: the camera can only rotate by flipping both axes (default 0). */
  readonly rotation?: number;
  readonly hflip?: boolean;
  readonly vflip?: boolean;
  /** MJPEG quality 1..100 (`--quality`); rpicam-vid's own default when unset. */
  readonly jpegQuality?: number;
  /** `--denoise` mode; rpicam-vid's default (`auto`) when unset. */
  readonly denoise?: RpicamDenoise;
}

/** Defaults for the Pi camera: small frames at a modest rate, cheap to encode and decode on a Pi Zero 2 W. */
export const RPICAM_DEFAULTS = { width: 640, height: 480, fps: 10 } as const;

/** Install instruction given whenever the camera apps are missing. */
export const RPICAM_INSTALL_HINT =
  "install the Raspberry Pi camera apps with 'sudo apt install rpicam-apps' (or rpicam-apps-lite)";

/**
 * Arguments for `rpicam-vid` writing an endless MJPEG stream to stdout:
 * `-t 0 -n --codec mjpeg -o - --width W --height H --framerate F --flush`
 * plus `--camera N`, `--rotation 180`, `--hflip`, `--vflip`, `--quality Q`
 * and `--denoise MODE` when set. `--flush` makes rpicam-vid flush stdout
 * after every frame; without it the end of each JPEG can wait in stdio's
 * buffer until the next frame is written (one frame of latency).
 * The same arguments work for `libcamera-vid` (older Raspberry Pi OS).
 * @throws RangeError naming the option for a bad size, rate, camera index,
 * quality, denoise mode, or a rotation other than 0 or 180.
 */
export function rpicamArgs(options: RpicamOptions = {}): string[] {
  const width = options.width ?? RPICAM_DEFAULTS.width;
  const height = options.height ?? RPICAM_DEFAULTS.height;
  const fps = options.fps ?? RPICAM_DEFAULTS.fps;
  checkGeometry(width, height, fps);
  const rotation = checkOneOf(
    'rotation',
    options.rotation ?? 0,
    [0, 180],
    'rpicam-vid rotates only by flipping both axes; for 90 or 270 turn the camera, or use hflip/vflip',
  );
  const args = ['-t', '0', '-n', '--codec', 'mjpeg', '-o', '-'];
  args.push('--width', String(width), '--height', String(height), '--framerate', String(fps), '--flush');
  if (options.camera !== undefined) args.push('--camera', String(checkInteger('camera', options.camera, 0, 15)));
  if (rotation === 180) args.push('--rotation', '180');
  if (options.hflip) args.push('--hflip');
  if (options.vflip) args.push('--vflip');
  if (options.jpegQuality !== undefined) {
    args.push('--quality', String(checkInteger('jpegQuality', options.jpegQuality, 1, 100)));
  }
  if (options.denoise !== undefined) args.push('--denoise', checkOneOf('denoise', options.denoise, RPICAM_DENOISE_MODES));
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

/** Short description of a Pi camera source, e.g. `rpicam 640x480@10` or `rpicam:1 1280x720@5`. */
export function rpicamDescription(options: RpicamOptions = {}): string {
  const cam = options.camera ? `rpicam:${options.camera}` : 'rpicam';
  const w = options.width ?? RPICAM_DEFAULTS.width;
  const h = options.height ?? RPICAM_DEFAULTS.height;
  return `${cam} ${w}x${h}@${options.fps ?? RPICAM_DEFAULTS.fps}`;
}

/**
 * A `ProcessSource` running the Pi camera. The program is looked for when the
 * source starts (`start()` rejects with `findRpicamProgram`'s error).
 * @throws RangeError from `rpicamArgs` for bad options.
 */
export function createRpicamSource(
  options: RpicamOptions & { readonly rpicamPath?: string; readonly maxFrameBytes?: number },
  log: Logger,
): ProcessSource {
  return new ProcessSource({
    command: () => findRpicamProgram(options.rpicamPath),
    args: rpicamArgs(options),
    description: rpicamDescription(options),
    log,
    installHint: RPICAM_INSTALL_HINT,
    ...(options.maxFrameBytes !== undefined ? { maxFrameBytes: options.maxFrameBytes } : {}),
  });
}
