import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../core/log.js';
import type { CaptureOptions } from './frame-source.js';
import { ProcessSource } from './process-source.js';

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
}

/** Install instruction given whenever the camera apps are missing. */
const RPICAM_INSTALL_HINT = "install the Raspberry Pi camera apps with 'sudo apt install rpicam-apps' (or rpicam-apps-lite)";

/**
 * Arguments for `rpicam-vid` writing an endless MJPEG stream to stdout:
 * `-t 0 -n --codec mjpeg -o - --width W --height H --framerate F --flush`
 * plus `--camera N`, `--rotation 180`, `--hflip`, `--vflip`, `--quality Q`
 * and `--denoise MODE` when set. `--flush` makes rpicam-vid flush stdout
 * after every frame; without it the end of each JPEG can wait in stdio's
 * buffer until the next frame is written (one frame of latency).
 * The same arguments work for `libcamera-vid` (older Raspberry Pi OS).
 */
export function rpicamArgs(options: RpicamOptions): string[] {
  const args = ['-t', '0', '-n', '--codec', 'mjpeg', '-o', '-'];
  args.push('--width', String(options.width), '--height', String(options.height), '--framerate', String(options.fps), '--flush');
  if (options.camera !== undefined) args.push('--camera', String(options.camera));
  if (options.rotation === 180) args.push('--rotation', '180');
  if (options.hflip) args.push('--hflip');
  if (options.vflip) args.push('--vflip');
  args.push('--quality', String(options.jpegQuality));
  if (options.denoise !== undefined) args.push('--denoise', options.denoise);
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
export function rpicamDescription(options: Pick<RpicamOptions, 'camera' | 'width' | 'height' | 'fps'>): string {
  const cam = options.camera ? `rpicam:${options.camera}` : 'rpicam';
  return `${cam} ${options.width}x${options.height}@${options.fps}`;
}

/**
 * A `ProcessSource` running the Pi camera. The program is looked for when the
 * source starts (`start()` rejects with `findRpicamProgram`'s error).
 */
export function createRpicamSource(options: RpicamOptions & { readonly rpicamPath?: string; readonly maxFrameBytes?: number }, log: Logger): ProcessSource {
  return new ProcessSource({
    command: () => findRpicamProgram(options.rpicamPath),
    args: rpicamArgs(options),
    description: rpicamDescription(options),
    log,
    installHint: RPICAM_INSTALL_HINT,
    ...(options.maxFrameBytes !== undefined ? { maxFrameBytes: options.maxFrameBytes } : {}),
  });
}
