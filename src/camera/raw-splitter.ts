/**
 * Splits a stream of raw, uncompressed video frames (`rpicam-vid --codec
 * yuv420 -o -`, `ffmpeg -f rawvideo -`) into whole frames by size.
 *
 * A raw stream has no markers: every frame is exactly `frameBytes` long, and
 * frame k starts at byte k × frameBytes of the stream. A pipe never loses
 * bytes, so the alignment holds for the life of the process writing it; when
 * that process exits (or is restarted) with a frame half written, `reset()`
 * drops the partial frame and counts it as torn, and the next process starts
 * aligned again.
 */

/** Counters of what the splitter delivered and threw away since it was made. */
export interface RawSplitterStats {
  /** Complete frames returned by `push()`. */
  readonly frames: number;
  /** Partial frames dropped by `reset()` (a stream that ended mid-frame). */
  readonly tornFrames: number;
  /** Bytes of the torn frames. */
  readonly discardedBytes: number;
}

const NO_FRAMES: readonly Buffer[] = Object.freeze([]);

/**
 * Incremental fixed-size frame splitter. `push(chunk)` returns the frames the
 * chunk completed, oldest first, each a Buffer of exactly `frameBytes` bytes.
 *
 * Cost: a frame lying whole inside one chunk is returned as a view of that
 * chunk (no copy); a frame spanning chunks (the usual case: pipes deliver at
 * most 64 KiB at a time) is copied once into its own buffer. Memory: at most
 * one partial frame. The caller must not reuse a chunk's memory (chunks from
 * a Node.js stream are never reused).
 */
export class RawFrameSplitter {
  readonly frameBytes: number;
  private partial: Buffer | undefined;
  private filled = 0;
  private framesOut = 0;
  private torn = 0;
  private discarded = 0;

  /** @throws RangeError when `frameBytes` is not a positive integer. */
  constructor(frameBytes: number) {
    if (!Number.isInteger(frameBytes) || frameBytes < 1) {
      throw new RangeError(`raw frame size must be a positive whole number of bytes, got ${String(frameBytes)}`);
    }
    this.frameBytes = frameBytes;
  }

  /** Consumes the next chunk of the stream; returns the frames it completed (an empty frozen array when none). */
  push(chunk: Buffer): readonly Buffer[] {
    const size = this.frameBytes;
    const n = chunk.length;
    const out: Buffer[] = [];
    let i = 0;
    if (this.filled > 0) {
      const take = Math.min(size - this.filled, n);
      chunk.copy(this.partial!, this.filled, 0, take);
      this.filled += take;
      i = take;
      if (this.filled === size) {
        out.push(this.partial!);
        this.partial = undefined;
        this.filled = 0;
      }
    }
    while (n - i >= size) {
      out.push(chunk.subarray(i, i + size));
      i += size;
    }
    if (i < n) {
      this.partial = Buffer.allocUnsafeSlow(size);
      chunk.copy(this.partial, 0, i, n);
      this.filled = n - i;
    }
    if (out.length === 0) return NO_FRAMES;
    this.framesOut += out.length;
    return out;
  }

  /** Drops a partial frame (counted as torn), as when the stream ends or the process writing it restarts. */
  reset(): void {
    if (this.filled > 0) {
      this.torn += 1;
      this.discarded += this.filled;
    }
    this.partial = undefined;
    this.filled = 0;
  }

  /** Bytes of the frame in progress held so far (0 between frames). */
  get pendingBytes(): number {
    return this.filled;
  }

  /** Counters since construction. */
  stats(): RawSplitterStats {
    return { frames: this.framesOut, tornFrames: this.torn, discardedBytes: this.discarded };
  }
}
