import type { ResizeMode, Roi } from '../core/types.js';

/**
 * Region of interest (`source.roi`, `classify --roi`): see `Roi`. The camera
 * applies it where it can (rpicam-vid `--roi`, an ffmpeg crop filter), the
 * preprocessing otherwise (replayed files).
 */

/** A rectangle in whole pixels. */
export interface PixelBox {
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
}

/** Tolerance for fractions that add up to 1 with rounding (0.1 + 0.9). */
const EPS = 1e-9;

/**
 * Checks an ROI and returns it. `key` names it in messages (e.g.
 * `source.roi`). Each value must be a finite number; x, y ≥ 0; width,
 * height > 0; x + width ≤ 1 and y + height ≤ 1 (inside the frame).
 * @throws RangeError with a sentence naming the key, what was expected and what came.
 */
export function checkRoi(roi: Roi, key = 'source.roi'): Roi {
  for (const name of ['x', 'y', 'width', 'height'] as const) {
    const v = roi[name];
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new RangeError(`${key}.${name} must be a number (a fraction of the frame from 0 to 1), got ${String(v)}`);
    }
  }
  if (roi.width <= 0 || roi.height <= 0) {
    throw new RangeError(`${key} has zero size (width ${roi.width}, height ${roi.height}): expected width and height above 0, as fractions of the frame`);
  }
  if (roi.x < 0 || roi.y < 0) throw new RangeError(`${key} starts outside the frame (x ${roi.x}, y ${roi.y}): expected x and y from 0 to 1`);
  if (roi.x + roi.width > 1 + EPS || roi.y + roi.height > 1 + EPS) {
    throw new RangeError(
      `${key} reaches outside the frame (x + width = ${+(roi.x + roi.width).toFixed(6)}, y + height = ${+(roi.y + roi.height).toFixed(6)}): expected both at most 1`,
    );
  }
  return roi;
}

/**
 * Parses `x,y,width,height` (fractions, as rpicam-vid's `--roi`), e.g.
 * `0.25,0.25,0.5,0.5`. @throws RangeError naming `key` for anything else.
 */
export function parseRoi(text: string, key = '--roi'): Roi {
  const parts = text.split(',').map((p) => p.trim());
  const values = parts.map(Number);
  if (parts.length !== 4 || parts.some((p) => p === '') || values.some((v) => !Number.isFinite(v))) {
    throw new RangeError(`${key} must be four fractions x,y,width,height (e.g. 0.25,0.25,0.5,0.5), got '${text}'`);
  }
  return checkRoi({ x: values[0]!, y: values[1]!, width: values[2]!, height: values[3]! }, key);
}

/** The ROI in whole pixels of a W×H frame: edges rounded to the nearest pixel, at least 1×1, inside the frame. */
export function roiToPixels(roi: Roi, width: number, height: number): PixelBox {
  const x0 = Math.min(width - 1, Math.max(0, Math.round(roi.x * width)));
  const y0 = Math.min(height - 1, Math.max(0, Math.round(roi.y * height)));
  const x1 = Math.min(width, Math.max(x0 + 1, Math.round((roi.x + roi.width) * width)));
  const y1 = Math.min(height, Math.max(y0 + 1, Math.round((roi.y + roi.height) * height)));
  return { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
}

/** True when the ROI is the whole frame (or absent). */
export function isWholeFrame(roi: Roi | undefined | null): boolean {
  return !roi || (roi.x <= EPS && roi.y <= EPS && roi.width >= 1 - EPS && roi.height >= 1 - EPS);
}

/**
 * The frame size to ask the Pi camera for in raw mode, for a W×H model input.
 * The camera's ISP scales for free but keeps pixels square: it crops the
 * (ROI of the) sensor picture to the output's aspect ratio. So:
 * - `crop`: the model's size itself (the ISP's centre crop is the crop),
 *   rounded to even sides (I420);
 * - `stretch`, `letterbox`: the whole picture (or ROI) at its own aspect
 *   ratio — `frameAspect` (source width / height, standing for the
 *   sensor's) × the ROI's fractions — scaled so that it just covers the
 *   model's size; the preprocessing then stretches or letterboxes it into
 *   the tensor. The width is rounded to a multiple of 32 and the height to
 *   even, sizes the Pi ISPs produce as asked (the bcm2835 ISP pads rows to 64
 *   bytes and aligns planes to 32).
 * Never below 32×16.
 */
export function rawCameraSize(
  model: { readonly width: number; readonly height: number },
  resize: ResizeMode,
  frameAspect: number,
  roi?: Roi | null,
): { width: number; height: number } {
  const even = (v: number): number => Math.max(16, 2 * Math.round(v / 2));
  const by32 = (v: number): number => Math.max(32, 32 * Math.round(v / 32));
  if (resize === 'crop') return { width: even(model.width), height: even(model.height) };
  const aspect = roi ? (frameAspect * roi.width) / roi.height : frameAspect;
  const modelAspect = model.width / model.height;
  if (aspect >= modelAspect) return { width: by32(Math.max(model.width, model.height * aspect)), height: even(model.height) };
  return { width: by32(model.width), height: even(Math.max(model.height, model.width / aspect)) };
}
