/**
 * One encoded camera frame as it came from a source.
 *
 * `data` is a whole encoded image (JPEG from MJPEG streams; JPEG/PNG/WebP/...
 * from a replay directory), never a partial one. `seq` starts at 1 for the
 * first frame a source yields and increases by 1 per frame (across restarts
 * of a child process too). `arrivedAt` is `performance.now()` in ms when the
 * last byte of the frame arrived (monotonic: unaffected by clock changes).
 */
export interface Frame {
  readonly seq: number;
  readonly data: Buffer;
  readonly arrivedAt: number;
  /** File name for replayed images (for logs and EXIF handling); undefined for streams. */
  readonly file?: string;
}

/** Counters a source reports; `fps` is measured over recent arrivals, not the configured rate. */
export interface SourceStats {
  readonly frames: number;
  readonly fps: number;
  readonly restarts: number;
  readonly lastError?: string;
  /** Frames the source itself threw away before delivering them (truncated, malformed or oversized in the stream). */
  readonly discardedFrames?: number;
}

/** Called for every complete frame, on the main thread, in arrival order. */
export type FrameListener = (frame: Frame) => void;

/**
 * The contract every frame source implements (Pi camera, ffmpeg, replay).
 * The constructor does no I/O; `start()` begins delivering frames and resolves
 * once the source is running (a child process spawned, a directory listed);
 * `stop()` ends delivery, kills any child process and resolves when it has
 * exited, and may be called more than once. `onEnd` is called once if the
 * source finishes by itself (a replay without loop, a video file without
 * restart) and will deliver no more frames.
 */
export interface FrameSource {
  /** Human-readable description for logs and the MQTT `source` field, e.g. `rpicam 640x480@10`. */
  readonly description: string;
  start(onFrame: FrameListener, onEnd?: (reason: string) => void): Promise<void>;
  stop(): Promise<void>;
  stats(): SourceStats;
}

/**
 * What a camera is asked to deliver (the Pi camera, ffmpeg): frame size,
 * rate, orientation and JPEG quality. Every field is optional; each source
 * documents its defaults.
 */
export interface CaptureOptions {
  /** Frame width in pixels, 16..8192, after rotation (default 640). */
  readonly width?: number;
  /** Frame height in pixels, 16..8192, after rotation (default 480). */
  readonly height?: number;
  /** Frame rate in Hz, above 0 and at most 240 (default 10): the camera's rate, ffmpeg's output rate (frames above it are dropped before scaling), or the replay rate. */
  readonly fps?: number;
  /** Clockwise rotation in degrees: 0, 90, 180 or 270 for ffmpeg sources; only 0 or 180 for the Pi camera (default 0). */
  readonly rotation?: number;
  /** Mirror left-right (default false). */
  readonly hflip?: boolean;
  /** Mirror top-bottom (default false). */
  readonly vflip?: boolean;
  /** JPEG quality 1..100 of camera/ffmpeg frames (default: rpicam-vid's own, ffmpeg `-q:v 5`). */
  readonly jpegQuality?: number;
}
