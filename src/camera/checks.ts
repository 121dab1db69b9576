/**
 * Checks of frame source settings that throw errors naming the setting, what
 * was expected and what came (e.g. "source option 'width' must be an
 * integer from 16 to 8192 (pixels), got -1").
 */

function show(value: unknown): string {
  return typeof value === 'string' ? `'${value}'` : String(value);
}

/** Returns `value` when it is an integer in [min, max]; throws RangeError otherwise. */
export function checkInteger(name: string, value: unknown, min: number, max: number, unit = ''): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const what = unit ? ` (${unit})` : '';
    throw new RangeError(`source option '${name}' must be an integer from ${min} to ${max}${what}, got ${show(value)}`);
  }
  return value;
}

/** Returns `value` when it is a finite number in (0, max]; throws RangeError otherwise. */
export function checkPositive(name: string, value: unknown, max: number, unit = ''): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > max) {
    const what = unit ? ` (${unit})` : '';
    throw new RangeError(`source option '${name}' must be a number above 0 and at most ${max}${what}, got ${show(value)}`);
  }
  return value;
}

/** Returns `value` when it is one of `allowed`; throws RangeError otherwise. */
export function checkOneOf<T extends string | number>(name: string, value: unknown, allowed: readonly T[], why = ''): T {
  if (!(allowed as readonly unknown[]).includes(value)) {
    const list = allowed.map((a) => show(a)).join(', ');
    throw new RangeError(`source option '${name}' must be one of ${list}${why ? ` (${why})` : ''}, got ${show(value)}`);
  }
  return value as T;
}

/** Largest frame side accepted, in pixels (8K UHD is 7680; larger is a typo). */
export const MAX_SIDE = 8192;
/** Highest frame rate accepted, in Hz (the Pi camera's fastest modes are around 200 fps). */
export const MAX_FPS = 240;

/** Checks frame width, height (pixels, 16..8192) and rate (Hz, (0, 240]). */
export function checkGeometry(width: unknown, height: unknown, fps: unknown): void {
  checkInteger('width', width, 16, MAX_SIDE, 'pixels');
  checkInteger('height', height, 16, MAX_SIDE, 'pixels');
  checkPositive('fps', fps, MAX_FPS, 'frames per second');
}
