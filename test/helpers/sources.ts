/**
 * Frame sources in tests: `startWith(source, onFrame, onEnd)` sets the
 * listeners and starts, as the daemon does in two steps; `ArraySource` is a
 * source backed by an array of frames, for in-process daemon tests.
 */
import type { EndListener, FrameListener, FrameSource, SourceStats } from '../../src/camera/frame-source.js';
import { NEVER_ABORTED } from '../../src/core/lifecycle.js';

export function startWith(source: FrameSource, onFrame: FrameListener, onEnd?: EndListener): Promise<void> {
  source.listen(onFrame, onEnd);
  return source.start(NEVER_ABORTED);
}
