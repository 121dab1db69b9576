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

/**
 * A frame source backed by an array of encoded images: `push()` delivers
 * the next one (or a given one) as a frame, `end()` ends the source as a
 * finite source does. `failStop` makes `stop()` reject (a part that cannot be
 * released), `hangStop` makes it never return. Records its lifecycle calls in `calls`.
 */
export class ArraySource implements FrameSource {
  readonly name = 'source';
  readonly description = 'array test source';
  readonly calls: string[] = [];
  private onFrame: FrameListener = () => {};
  private onEnd: EndListener | undefined;
  private seq = 0;
  private next = 0;
  private running = false;
  /** Lets a `hangStop` stop return at last. */
  release: () => void = () => {};

  constructor(
    private readonly images: readonly Buffer[],
    private readonly options: { failStop?: Error; hangStop?: boolean } = {},
  ) {}

  listen(onFrame: FrameListener, onEnd?: EndListener): void {
    this.onFrame = onFrame;
    this.onEnd = onEnd;
  }

  async start(): Promise<void> {
    this.calls.push('start');
    this.running = true;
  }

  async stop(): Promise<void> {
    this.calls.push('stop');
    this.running = false;
    if (this.options.failStop) throw this.options.failStop;
    if (this.options.hangStop) await new Promise<void>((resolve) => (this.release = resolve));
  }

  /** Delivers `image` (default: the next of the array, round robin) as a frame; ignored when not running. */
  push(image?: Buffer): void {
    if (!this.running) return;
    const data = image ?? this.images[this.next++ % this.images.length]!;
    this.seq += 1;
    this.onFrame({ seq: this.seq, data, arrivedAt: performance.now(), file: `frame-${this.seq}.jpg` });
  }

  /** Ends the source by itself, as a finite replay does. */
  end(reason = 'array exhausted'): void {
    this.running = false;
    this.onEnd?.(reason);
  }

  stats(): SourceStats {
    return { frames: this.seq, fps: 0, restarts: 0 };
  }
}
