import type { RawPictureFormat } from '../core/types.js';

/**
 * Cheap checks on the picture itself, run on every frame before inference:
 * a fingerprint to notice a frozen picture, and a small luma thumbnail for
 * the motion gate. Both read a sparse grid of the frame (a few thousand
 * bytes), never every pixel.
 */

/** Columns × rows of the grid a fingerprint samples. */
const FP_COLS = 64;
const FP_ROWS = 48;
/** Largest number of bytes of an encoded frame a fingerprint reads. */
const FP_ENCODED_SAMPLES = 4096;

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * A 32-bit FNV-1a hash of a sparse grid of the frame's pixels: 64×48 luma
 * samples of an I420 frame (padding never read), the same grid's RGB bytes
 * of an rgb24 frame, or — for an encoded frame (`picture` undefined, e.g. a
 * JPEG) — its length and up to 4096 evenly spaced bytes (a changed scene
 * changes the entropy-coded data, and with it every byte after the change).
 * A live camera's sensor noise changes some of these samples in every frame;
 * the same value frame after frame means the same picture.
 */
export function pictureFingerprint(picture: RawPictureFormat | undefined, data: Uint8Array): number {
  let h = FNV_OFFSET;
  const mix = (byte: number): void => {
    h = Math.imul(h ^ byte, FNV_PRIME);
  };
  if (!picture) {
    const n = data.length;
    for (let s = 0; s < 4; s++) mix((n >>> (8 * s)) & 0xff);
    const step = Math.max(1, Math.floor(n / FP_ENCODED_SAMPLES));
    for (let i = 0; i < n; i += step) mix(data[i]!);
    return h >>> 0;
  }
  const { width, height } = picture;
  const cols = Math.min(FP_COLS, width);
  const rows = Math.min(FP_ROWS, height);
  for (let r = 0; r < rows; r++) {
    const y = Math.floor(((r + 0.5) * height) / rows);
    for (let c = 0; c < cols; c++) {
      const x = Math.floor(((c + 0.5) * width) / cols);
      if (picture.format === 'i420') {
        mix(data[y * picture.layout.yStride + x]!);
      } else {
        const o = (y * width + x) * 3;
        mix(data[o]!);
        mix(data[o + 1]!);
        mix(data[o + 2]!);
      }
    }
  }
  return h >>> 0;
}

/** Default thumbnail size for the motion gate: 32 × 24 cells. */
export const THUMB_COLS = 32;
export const THUMB_ROWS = 24;

/**
 * A `cols`×`rows` luma thumbnail (uint8, row-major) of a raw frame: each
 * cell the mean of up to 4×4 samples spread over its block (sparse, to stay
 * cheap, yet averaged, to damp sensor noise). Luma is the I420 Y plane, or
 * for rgb24 the BT.601 weighting (77 R + 150 G + 29 B) / 256.
 */
export function lumaThumbnail(picture: RawPictureFormat, data: Uint8Array, cols = THUMB_COLS, rows = THUMB_ROWS): Uint8Array {
  const { width, height } = picture;
  const out = new Uint8Array(cols * rows);
  const sx = Math.min(4, Math.max(1, Math.floor(width / cols)));
  const sy = Math.min(4, Math.max(1, Math.floor(height / rows)));
  const luma = (x: number, y: number): number => {
    if (picture.format === 'i420') return data[y * picture.layout.yStride + x]!;
    const o = (y * width + x) * 3;
    return (77 * data[o]! + 150 * data[o + 1]! + 29 * data[o + 2]!) >> 8;
  };
  for (let r = 0; r < rows; r++) {
    const y0 = (r * height) / rows;
    const bh = height / rows;
    for (let c = 0; c < cols; c++) {
      const x0 = (c * width) / cols;
      const bw = width / cols;
      let sum = 0;
      for (let j = 0; j < sy; j++) {
        const y = Math.min(height - 1, Math.floor(y0 + ((j + 0.5) * bh) / sy));
        for (let i = 0; i < sx; i++) sum += luma(Math.min(width - 1, Math.floor(x0 + ((i + 0.5) * bw) / sx)), y);
      }
      out[r * cols + c] = Math.round(sum / (sx * sy));
    }
  }
  return out;
}

/** A change of the frozen-picture state. */
export type FrozenEvent = 'frozen' | 'live';

/**
 * Tells a frozen picture (the same fingerprint for `afterMs`) from a live
 * one. `update()` returns `frozen` once when the picture has not changed for
 * `afterMs`, `live` once when it changes again, else undefined.
 */
export class FrozenDetector {
  readonly afterMs: number;
  private lastFingerprint: number | undefined;
  private sameSince = 0;
  private isFrozen = false;

  /** @throws RangeError when `afterMs` is not a positive number. */
  constructor(afterMs: number) {
    if (!(afterMs > 0) || !Number.isFinite(afterMs)) throw new RangeError(`frozen-picture time must be a positive number of ms, got ${String(afterMs)}`);
    this.afterMs = afterMs;
  }

  /** Records one frame's fingerprint at `now` (ms, monotonic). */
  update(fingerprint: number, now: number): FrozenEvent | undefined {
    if (fingerprint !== this.lastFingerprint) {
      this.lastFingerprint = fingerprint;
      this.sameSince = now;
      if (this.isFrozen) {
        this.isFrozen = false;
        return 'live';
      }
      return undefined;
    }
    if (!this.isFrozen && now - this.sameSince >= this.afterMs) {
      this.isFrozen = true;
      return 'frozen';
    }
    return undefined;
  }

  get frozen(): boolean {
    return this.isFrozen;
  }

  /** ms the picture has been unchanged at `now` (0 before the first frame). */
  unchangedMs(now: number): number {
    return this.lastFingerprint === undefined ? 0 : now - this.sameSince;
  }

  /** Forgets the history (after a source restart). */
  reset(): void {
    this.lastFingerprint = undefined;
    this.isFrozen = false;
  }
}

/** Settings of a `MotionGate`. */
export interface MotionGateOptions {
  /** Fraction of thumbnail cells that must differ from the background for motion, 0..1 (default 0.02: 15 of 768 cells). */
  readonly threshold?: number;
  /** Luma difference from the background, in levels 1..255, above which a cell differs (default 20). */
  readonly cellDelta?: number;
  /** How fast the background follows the picture, 0..1 per frame (default 0.05: a change that stays is absorbed in about 60 frames). */
  readonly learningRate?: number;
}

/** What the gate decided for one frame. */
export interface MotionResult {
  readonly motion: boolean;
  /** Fraction of cells that differ from the background, 0..1. */
  readonly changed: number;
}

/**
 * Skips inference on frames that look like the background. The background
 * is a running average of the thumbnails (exponential, `learningRate` per
 * frame), so slow light changes and an object that stays are absorbed; a
 * frame has motion when more than `threshold` of its cells differ from the
 * background by more than `cellDelta`. The first frame always has motion
 * (there is no background yet, and the daemon should classify once).
 */
export class MotionGate {
  readonly threshold: number;
  readonly cellDelta: number;
  readonly learningRate: number;
  private background: Float32Array | undefined;

  /** @throws RangeError naming the option for values out of range. */
  constructor(options: MotionGateOptions = {}) {
    this.threshold = options.threshold ?? 0.02;
    this.cellDelta = options.cellDelta ?? 20;
    this.learningRate = options.learningRate ?? 0.05;
    if (!(this.threshold >= 0 && this.threshold <= 1)) throw new RangeError(`motion threshold must be a fraction from 0 to 1, got ${this.threshold}`);
    if (!(this.cellDelta >= 1 && this.cellDelta <= 255)) throw new RangeError(`motion cell delta must be 1..255 levels, got ${this.cellDelta}`);
    if (!(this.learningRate > 0 && this.learningRate <= 1))
      throw new RangeError(`motion learning rate must be above 0 and at most 1, got ${this.learningRate}`);
  }

  /** Compares `thumbnail` (from `lumaThumbnail`) with the background, then updates the background. */
  check(thumbnail: Uint8Array): MotionResult {
    const bg = this.background;
    if (!bg || bg.length !== thumbnail.length) {
      this.background = Float32Array.from(thumbnail);
      return { motion: true, changed: 1 };
    }
    let differing = 0;
    const a = this.learningRate;
    for (let i = 0; i < thumbnail.length; i++) {
      const v = thumbnail[i]!;
      if (Math.abs(v - bg[i]!) > this.cellDelta) differing++;
      bg[i] = bg[i]! + a * (v - bg[i]!);
    }
    const changed = differing / thumbnail.length;
    return { motion: changed > this.threshold, changed };
  }

  /** Forgets the background (after a source restart or a new camera position). */
  reset(): void {
    this.background = undefined;
  }
}
