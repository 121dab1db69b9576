import type { Lifecycle } from '../core/lifecycle.js';
import type { Frame } from '../core/types.js';

/** Smallest frame side asked of a camera, in pixels (`source.width`/`source.height`). */
export const MIN_FRAME_SIDE = 16;
/** Largest frame side asked of a camera, in pixels (4K UHD is 3840; larger is a typo for a classifier's input). */
export const MAX_FRAME_SIDE = 4096;
/** Highest frame rate asked of a camera or a replay, in Hz (`source.fps`). */
export const MAX_FPS = 120;
/** Rotations ffmpeg sources apply, in clockwise degrees (`source.rotation`); the Pi camera only 0 and 180. */
const ROTATIONS = [0, 90, 180, 270] as const;
type Rotation = (typeof ROTATIONS)[number];

/** Counters a source reports; `fps` is measured over recent arrivals, not the configured rate. */
export interface SourceStats {
  readonly frames: number;
  readonly fps: number;
  readonly restarts: number;
  /** Restarts caused by the stall watchdog (a process alive but silent). */
  readonly stalls?: number;
  readonly lastError?: string;
  /** Frames the source itself threw away before delivering them (truncated, malformed or oversized in the stream). */
  readonly discardedFrames?: number;
}

/** Called for every complete frame, on the main thread, in arrival order. */
export type FrameListener = (frame: Frame) => void;
/** Called once when a source finishes by itself (a replay without loop, a video file's end), with the reason. */
export type EndListener = (reason: string) => void;

/**
 * The contract every frame source implements (Pi camera, ffmpeg, replay):
 * the one `Lifecycle`, plus listeners set with `listen()` before `start()`.
 * `start()` begins delivering frames and resolves once the source is running
 * (a child process spawned, a directory listed); `stop()` ends delivery,
 * kills any child process and resolves when it has exited. The end listener
 * is called once if the source finishes by itself and will deliver no more
 * frames.
 */
export interface FrameSource extends Lifecycle {
  /** Human-readable description for logs and the MQTT `source` field, e.g. `rpicam 640x480@10`. */
  readonly description: string;
  /** Sets the frame listener and the end listener (replacing earlier ones). */
  listen(onFrame: FrameListener, onEnd?: EndListener): void;
  stats(): SourceStats;
}

/**
 * What a camera is asked to deliver (the Pi camera, ffmpeg): frame size,
 * rate, orientation and JPEG quality. The configuration (`source:`) always
 * gives every field; its schema holds the bounds ({@link MIN_FRAME_SIDE},
 * {@link MAX_FRAME_SIDE}, {@link MAX_FPS}, {@link ROTATIONS}).
 */
export interface CaptureOptions {
  /** Frame width in pixels, after rotation. */
  readonly width: number;
  /** Frame height in pixels, after rotation. */
  readonly height: number;
  /** Frame rate in Hz: the camera's rate, ffmpeg's output rate (frames above it are dropped before scaling), or the replay rate. */
  readonly fps: number;
  /** Clockwise rotation in degrees: 0, 90, 180 or 270 for ffmpeg sources; only 0 or 180 for the Pi camera. */
  readonly rotation: Rotation;
  /** Mirror left-right. */
  readonly hflip: boolean;
  /** Mirror top-bottom. */
  readonly vflip: boolean;
  /** JPEG quality 1..100 of camera/ffmpeg frames. */
  readonly jpegQuality: number;
}
