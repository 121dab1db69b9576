import type { Logger } from '../core/log.js';
import { PROBLEM, type ProblemReporter } from '../core/problems.js';
import type { Frame } from '../core/types.js';
import { type CaptureMode, FrameSelector } from './capture-mode.js';
import type { EndListener, FrameListener, FrameSource, SourceStats } from './frame-source.js';
import { FrozenDetector, lumaThumbnail, MotionGate, type MotionGateOptions, pictureFingerprint, THUMB_COLS, THUMB_ROWS } from './picture-checks.js';

/** From this interval on (seconds), the Pi camera runs only around each interval capture, to save power. */
export const POWER_SAVE_INTERVAL_S = 10;

/**
 * Camera warm-up of a power-saving capture, in ms: frames in the first 1.5 s
 * after the camera starts are not used, because its automatic exposure and
 * white balance start from defaults and need some frames to settle.
 */
const SETTLE_MS = 1500;

/** Settings of a `CaptureSource`. */
export interface CaptureSettings {
  /** Which frames are classified: continuous, interval or trigger. */
  readonly mode: CaptureMode;
  /**
   * Interval mode only: stop the source between captures and start it again
   * for each one (the Pi camera at intervals of {@link POWER_SAVE_INTERVAL_S} s
   * or more). Frames are used from `settleMs` after each start.
   */
  readonly powerSave?: boolean;
  /** Warm-up of a power-saving capture, ms (default 1500). */
  readonly settleMs?: number;
  /** Report `camera_frozen` after the picture has not changed for this many ms; 0 turns it off. */
  readonly frozenAfterMs: number;
  /** Skip frames that look like the background (see `MotionGate`); undefined: off. */
  readonly motion?: MotionGateOptions;
  readonly problems?: ProblemReporter;
  readonly log: Logger;
}

/** A source's counters plus what the capture decided. */
export interface CaptureStats extends SourceStats {
  /** Frames passed on for classification. */
  readonly selected: number;
  /** Frames the motion gate skipped (no inference). */
  readonly motionSkipped: number;
  /** Triggers received (trigger mode). */
  readonly triggers: number;
  /** The picture is frozen now. */
  readonly frozen: boolean;
}

/**
 * A frame source that decides which frames of another one are classified,
 * and watches the picture. For every frame of the inner source:
 *
 * 1. the frozen-picture check (`FrozenDetector` on `pictureFingerprint`):
 *    the same picture for `frozenAfterMs` raises `camera_frozen` — a
 *    camera or relay repeating its last frame, told apart from a stall,
 *    where no frame comes at all; cleared when the picture changes;
 * 2. the capture mode (`FrameSelector`): every frame, one per interval, or a
 *    burst after `trigger()`; in power-saving interval mode the inner source
 *    runs only from each capture's start until its first frame after
 *    `settleMs`, then is stopped until the next one is due;
 * 3. the motion gate (optional): a 32×24 luma thumbnail — from the raw
 *    frame's own pixels, or for an encoded frame decoded by sharp at 1/8
 *    scale — is compared with the running background; frames without motion
 *    are counted (`motionSkipped`) and not passed on. While an encoded frame
 *    is being checked, a newer frame waits in its place (latest wins);
 * 4. the frame is passed on to the listener.
 *
 * Lifecycle: `start()` starts the inner source (at once, or the first
 * power-saving capture), `stop()` stops it and every timer.
 */
export class CaptureSource implements FrameSource {
  readonly name = 'source';
  private readonly inner: FrameSource;
  private readonly settings: CaptureSettings;
  private readonly log: Logger;
  private readonly selector: FrameSelector;
  private readonly frozen: FrozenDetector | undefined;
  private readonly gate: MotionGate | undefined;
  private onFrame: FrameListener | undefined;
  private onEnd: EndListener | undefined;
  private onFirstFrame: (() => void) | undefined;

  private running = false;
  private selected = 0;
  private motionSkipped = 0;
  private lastSkipAt = 0;
  private lastFrameAt = 0;
  private sawFrame = false;
  // Power-saving interval captures.
  private cycleStartedAt = 0;
  private cycleTimer: NodeJS.Timeout | undefined;
  private capturing = false;
  private cameraOff = false;
  // Motion checks of encoded frames (async).
  private checking = false;
  private waiting: Frame | undefined;

  constructor(inner: FrameSource, settings: CaptureSettings) {
    this.inner = inner;
    this.settings = settings;
    this.log = settings.log;
    this.selector = new FrameSelector(settings.mode);
    this.frozen = settings.frozenAfterMs > 0 ? new FrozenDetector(settings.frozenAfterMs) : undefined;
    this.gate = settings.motion ? new MotionGate(settings.motion) : undefined;
  }

  get description(): string {
    return this.inner.description;
  }

  /** `onFirstFrame` is called once, when the inner source delivers its first frame (frames flow, whether or not any is classified). */
  listen(onFrame: FrameListener, onEnd?: EndListener, onFirstFrame?: () => void): void {
    this.onFrame = onFrame;
    this.onEnd = onEnd;
    this.onFirstFrame = onFirstFrame;
  }

  /** Starts the inner source, or the first power-saving capture. @throws what the inner source's start throws. */
  async start(signal: AbortSignal): Promise<void> {
    this.inner.listen(
      (frame) => this.arrived(frame),
      (reason) => this.onEnd?.(reason),
    );
    this.running = true;
    this.lastFrameAt = performance.now();
    if (this.powerSaving) {
      this.cycleStartedAt = performance.now();
      this.capturing = true;
    }
    await this.inner.start(signal);
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.cycleTimer) clearTimeout(this.cycleTimer);
    this.cycleTimer = undefined;
    this.waiting = undefined;
    await this.inner.stop();
  }

  /**
   * Starts a burst of frames (trigger mode): from a GPIO input edge, an MQTT
   * command, or any caller. Returns false (and does nothing) in other modes.
   */
  trigger(): boolean {
    const taken = this.selector.trigger();
    if (taken) this.log.info({ burst: this.selector.burstRemaining, triggers: this.selector.triggerCount }, 'trigger: classifying the next frames');
    return taken;
  }

  /**
   * True while the capture is alive at `now`: a frame arrived within
   * `windowMs`, or the camera is off on purpose between power-saving
   * captures with the next one scheduled.
   */
  alive(now: number, windowMs: number): boolean {
    if (this.cameraOff && this.cycleTimer !== undefined) return true;
    return now - this.lastFrameAt < windowMs;
  }

  stats(): CaptureStats {
    return {
      ...this.inner.stats(),
      selected: this.selected,
      motionSkipped: this.motionSkipped,
      triggers: this.selector.triggerCount,
      frozen: this.frozen?.frozen ?? false,
    };
  }

  private get powerSaving(): boolean {
    return this.settings.powerSave === true && this.settings.mode.kind === 'interval';
  }

  private arrived(frame: Frame): void {
    if (!this.running) return;
    const now = frame.arrivedAt;
    this.lastFrameAt = now;
    if (!this.sawFrame) {
      this.sawFrame = true;
      this.onFirstFrame?.();
    }
    this.checkFrozen(frame, now);
    if (this.powerSaving) {
      if (!this.capturing || now - this.cycleStartedAt < (this.settings.settleMs ?? SETTLE_MS)) return;
      this.capturing = false;
      this.pauseCamera();
    } else if (!this.selector.offer(now)) {
      return;
    }
    this.gateAndPass(frame);
  }

  private checkFrozen(frame: Frame, now: number): void {
    if (!this.frozen) return;
    const event = this.frozen.update(pictureFingerprint(frame.raw, frame.data), now);
    if (event === 'frozen') {
      const seconds = Math.round(this.frozen.unchangedMs(now) / 1000);
      const message = `the picture of ${this.description} has not changed for ${seconds} s: the camera repeats one frame`;
      this.log.warn(message);
      this.settings.problems?.raise(
        PROBLEM.cameraFrozen,
        message,
        'a live camera changes every frame (sensor noise): check the camera or the stream relay; restart the camera program or the camera',
        'error',
      );
    } else if (event === 'live') {
      this.log.info(`the picture of ${this.description} changes again`);
      this.settings.problems?.clear(PROBLEM.cameraFrozen);
    }
  }

  private gateAndPass(frame: Frame): void {
    const gate = this.gate;
    if (!gate) {
      this.pass(frame);
      return;
    }
    if (frame.raw) {
      if (gate.check(lumaThumbnail(frame.raw, frame.data)).motion) this.pass(frame);
      else this.skipped();
      return;
    }
    if (this.checking) {
      this.waiting = frame; // latest wins; the one it replaces was never classified either
      return;
    }
    void this.checkEncoded(frame, gate);
  }

  private async checkEncoded(first: Frame, gate: MotionGate): Promise<void> {
    this.checking = true;
    let frame: Frame | undefined = first;
    while (frame && this.running) {
      let motion = true;
      try {
        // sharp is loaded on first use (the daemon loads it anyway; a broken install is reported by the preprocessing).
        const sharp = (await import('sharp')).default;
        const thumb = await sharp(frame.data, { failOn: 'truncated' }).resize(THUMB_COLS, THUMB_ROWS, { fit: 'fill' }).greyscale().raw().toBuffer();
        motion = gate.check(thumb).motion;
      } catch {
        // An undecodable frame goes on to the classifier, which counts it as a bad frame.
      }
      if (!this.running) break;
      if (motion) this.pass(frame);
      else this.skipped();
      frame = this.waiting;
      this.waiting = undefined;
    }
    this.checking = false;
  }

  private skipped(): void {
    this.motionSkipped += 1;
    this.lastSkipAt = performance.now();
  }

  /** When the motion gate last skipped a frame (`performance.now()` ms; 0 never): a frame dealt with, without inference. */
  get lastSkippedAt(): number {
    return this.lastSkipAt;
  }

  private pass(frame: Frame): void {
    this.selected += 1;
    try {
      this.onFrame?.(frame);
    } catch (err) {
      this.log.error({ err, seq: frame.seq }, 'frame listener threw');
    }
  }

  /** Power saving: the capture is taken; stop the camera and start it again when the next one is due. */
  private pauseCamera(): void {
    if (this.settings.mode.kind !== 'interval') return;
    const due = this.cycleStartedAt + this.settings.mode.everyMs;
    this.cameraOff = true;
    void this.inner
      .stop()
      .catch((err: unknown) => this.log.warn({ err }, `stopping the camera between captures failed: ${(err as Error).message}`))
      .then(() => {
        if (!this.running) return;
        this.cycleTimer = setTimeout(() => void this.nextCapture(), Math.max(0, due - performance.now()));
      });
  }

  private async nextCapture(): Promise<void> {
    this.cycleTimer = undefined;
    if (!this.running) return;
    this.cycleStartedAt = performance.now();
    this.lastFrameAt = this.cycleStartedAt;
    this.capturing = true;
    this.cameraOff = false;
    try {
      await this.inner.start(new AbortController().signal);
    } catch (err) {
      // The program vanished or cannot run: say so and try again at the next interval.
      this.log.error({ err }, `cannot start the camera for the interval capture: ${(err as Error).message}`);
      this.capturing = false;
      this.pauseCamera();
    }
  }
}
