/**
 * Splits an MJPEG byte stream (concatenated JPEG images, as written to stdout
 * by `rpicam-vid --codec mjpeg -o -` or `ffmpeg -f mjpeg -`) into whole JPEG
 * frames, whatever the chunking of the pipe.
 *
 * Why not just look for `FF D9`: the end-of-image marker cannot occur inside
 * entropy-coded data (ITU-T T.81 B.1.1.5: a 0xFF data byte is stuffed as
 * `FF 00`), but it can occur inside a marker segment's payload, typically the
 * EXIF thumbnail (a complete JPEG) carried in APP1. So the splitter follows
 * the JPEG syntax: after SOI it skips every length-prefixed marker segment
 * (APPn, COM, DQT, DHT, SOF, DRI, the SOS header, ...) by its 16-bit length,
 * and only inside entropy-coded data does it scan for markers, where `FF 00`
 * (stuffing), `FF D0`..`FF D7` (RSTn) and `FF FF` (fill) are data and any
 * other marker either ends the frame (EOI), starts a new one (SOI) or begins
 * another segment (DHT/SOS of the next scan of a progressive JPEG).
 */
import { invalidParameterError } from '../core/errors.js';

/** Default bound on one frame, in bytes (8 MiB): far above a 4K JPEG at high quality. */
export const DEFAULT_MAX_FRAME_BYTES = 8 * 1024 * 1024;

/** Counters of what the splitter kept and threw away since it was made. */
export interface SplitterStats {
  /** Complete frames returned by `push()`. */
  readonly frames: number;
  /** Frames thrown away: truncated (a new SOI came before EOI), malformed, oversized, or cut off by `reset()`. */
  readonly discardedFrames: number;
  /** Of `discardedFrames`, those larger than `maxFrameBytes`. */
  readonly oversizedFrames: number;
  /** Bytes thrown away: junk outside frames plus the bytes of every discarded frame. */
  readonly discardedBytes: number;
}

export interface MjpegSplitterOptions {
  /** A frame growing beyond this many bytes is discarded and counted (default 8 MiB). */
  readonly maxFrameBytes?: number;
}

// Parser states.
const SEEK_SOI = 0; // outside a frame, looking for FF D8
const MARKER = 1; // inside the header, expecting FF (other bytes are tolerated as extraneous, as libjpeg does)
const MARKER_CODE = 2; // after FF in the header: expecting a marker code
const LENGTH_HI = 3; // first byte of a segment length
const LENGTH_LO = 4; // second byte of a segment length
const SKIP = 5; // inside a segment payload
const ENTROPY = 6; // inside entropy-coded data, looking for FF
const ENTROPY_FF = 7; // after FF in entropy-coded data

const SOS = 0xda;
const SOI_BYTES = Buffer.from([0xff, 0xd8]);
const NO_FRAMES: readonly Buffer[] = Object.freeze([]);

/**
 * Incremental MJPEG splitter. Feed it the stream with `push(chunk)`; it
 * returns the JPEG frames completed by that chunk, each as its own Buffer
 * running from SOI (`FF D8`) to EOI (`FF D9`) inclusive, byte-for-byte as in
 * the stream. Bytes before a frame's SOI (junk) are dropped and counted.
 *
 * Cost: each byte is visited once (entropy data is scanned with the native
 * `indexOf`, segment payloads are skipped by length), and a frame is copied
 * once, when complete. Memory: the pieces of at most one frame in progress,
 * bounded by `maxFrameBytes` plus one chunk; an incomplete frame is dropped
 * as soon as the next SOI shows up.
 *
 * `push()` keeps references to the chunk's bytes until the frame they belong
 * to is complete, so the caller must not reuse a chunk's memory (chunks from
 * a Node.js stream are never reused).
 */
export class MjpegSplitter {
  readonly maxFrameBytes: number;

  private state = SEEK_SOI;
  /** In SEEK_SOI: the previous chunk ended with FF, which may begin an SOI. */
  private pendingFF = false;
  /** Marker code of the segment whose length/payload is being read. */
  private segmentMarker = 0;
  private lengthHi = 0;
  private skipRemaining = 0;

  /** Kept pieces of the frame in progress (from earlier chunks). */
  private pieces: Buffer[] = [];
  /** Bytes of the frame in progress that arrived in earlier chunks (kept or not). */
  private frameBytes = 0;
  /** False once the frame in progress was found to be oversized: its bytes are counted, not kept. */
  private keeping = true;

  private framesOut = 0;
  private discardedFramesCount = 0;
  private oversizedFramesCount = 0;
  private discardedBytesCount = 0;

  /**
   * @throws RangeError when `maxFrameBytes` is not a positive integer.
   */
  constructor(options: MjpegSplitterOptions = {}) {
    const max = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    if (!Number.isInteger(max) || max < 4) {
      throw invalidParameterError('maxFrameBytes', 'an integer of at least 4 bytes', max);
    }
    this.maxFrameBytes = max;
  }

  /**
   * Consumes the next chunk of the stream and returns the frames it
   * completed, oldest first (an empty frozen array when none).
   */
  push(chunk: Buffer): readonly Buffer[] {
    const n = chunk.length;
    let out: Buffer[] | undefined;
    let i = 0;
    // Start (in this chunk) of the bytes of the frame in progress not yet kept as a piece.
    let start = this.state === SEEK_SOI ? -1 : 0;

    while (i < n) {
      switch (this.state) {
        case SEEK_SOI: {
          if (this.pendingFF) {
            this.pendingFF = false;
            if (chunk[i] === 0xd8) {
              i += 1;
              start = this.beginFrame(i);
            } else {
              this.discardedBytesCount += 1; // that FF was junk; look at chunk[i] again
            }
            break;
          }
          const ff = chunk.indexOf(0xff, i);
          if (ff < 0) {
            this.discardedBytesCount += n - i;
            i = n;
          } else if (ff + 1 === n) {
            this.discardedBytesCount += ff - i;
            this.pendingFF = true;
            i = n;
          } else if (chunk[ff + 1] === 0xd8) {
            this.discardedBytesCount += ff - i;
            i = ff + 2;
            start = this.beginFrame(i);
          } else {
            this.discardedBytesCount += ff + 1 - i;
            i = ff + 1;
          }
          break;
        }
        case MARKER: {
          // Bytes other than FF between segments are extraneous; libjpeg skips them with a warning.
          const ff = chunk.indexOf(0xff, i);
          if (ff < 0) {
            i = n;
          } else {
            i = ff + 1;
            this.state = MARKER_CODE;
          }
          break;
        }
        case MARKER_CODE:
        case ENTROPY_FF: {
          const code = chunk[i++];
          if (code === 0xff) break; // fill byte: the marker code is still to come
          const inEntropy = this.state === ENTROPY_FF;
          if (code === 0xd9) {
            // EOI: the frame is complete.
            const frame = this.endFrame(chunk, start, i);
            start = -1;
            if (frame) {
              out ??= [];
              out.push(frame);
            }
          } else if (code === 0xd8) {
            // SOI before EOI: the frame in progress was truncated; the new one starts here.
            this.discardFrame(this.frameBytes + (i - start) - 2);
            start = this.beginFrame(i);
          } else if ((code >= 0xd0 && code <= 0xd7) || code === 0x01 || code === 0x00) {
            // RSTn and TEM stand alone; FF 00 is stuffing in entropy data, extraneous in the header.
            this.state = inEntropy ? ENTROPY : MARKER;
          } else {
            this.segmentMarker = code;
            this.state = LENGTH_HI;
          }
          break;
        }
        case LENGTH_HI:
          this.lengthHi = chunk[i++];
          this.state = LENGTH_LO;
          break;
        case LENGTH_LO: {
          const length = (this.lengthHi << 8) | chunk[i++];
          if (length < 2) {
            // A segment length counts its own two bytes: anything less is not JPEG.
            this.discardFrame(this.frameBytes + (i - start));
            start = -1;
            this.state = SEEK_SOI;
          } else {
            this.skipRemaining = length - 2;
            this.state = this.skipRemaining === 0 ? this.afterSegment() : SKIP;
          }
          break;
        }
        case SKIP: {
          const take = Math.min(this.skipRemaining, n - i);
          i += take;
          this.skipRemaining -= take;
          if (this.skipRemaining === 0) this.state = this.afterSegment();
          break;
        }
        case ENTROPY: {
          const ff = chunk.indexOf(0xff, i);
          if (ff < 0) {
            i = n;
          } else {
            i = ff + 1;
            this.state = ENTROPY_FF;
          }
          break;
        }
      }
    }

    if (start >= 0) this.holdPiece(chunk, start, n);
    return out ?? NO_FRAMES;
  }

  /**
   * Drops the frame in progress (counted as discarded) and any half-seen SOI,
   * as at the end of a stream or when the process writing it restarts.
   */
  reset(): void {
    if (this.pendingFF) {
      this.discardedBytesCount += 1;
      this.pendingFF = false;
    }
    if (this.state !== SEEK_SOI) this.discardFrame(this.frameBytes);
    this.state = SEEK_SOI;
  }

  /** Bytes of the frame in progress held so far (0 between frames). */
  get pendingBytes(): number {
    return this.state === SEEK_SOI ? 0 : this.frameBytes;
  }

  /** Counters since construction. */
  stats(): SplitterStats {
    return {
      frames: this.framesOut,
      discardedFrames: this.discardedFramesCount,
      oversizedFrames: this.oversizedFramesCount,
      discardedBytes: this.discardedBytesCount,
    };
  }

  /** Starts a frame whose SOI ended just before `at`; returns where its unkept bytes start. */
  private beginFrame(at: number): number {
    this.pieces = [SOI_BYTES];
    this.frameBytes = 2;
    this.keeping = true;
    this.state = MARKER;
    return at;
  }

  private afterSegment(): number {
    return this.segmentMarker === SOS ? ENTROPY : MARKER;
  }

  /** End of chunk inside a frame: keep chunk[start, end) and enforce the size bound. */
  private holdPiece(chunk: Buffer, start: number, end: number): void {
    this.frameBytes += end - start;
    if (!this.keeping) return;
    if (this.frameBytes > this.maxFrameBytes) {
      this.dropOversized();
      return;
    }
    if (end > start) this.pieces.push(start === 0 && end === chunk.length ? chunk : chunk.subarray(start, end));
  }

  /** EOI seen at chunk[end-1]: returns the complete frame, or undefined when it was oversized. */
  private endFrame(chunk: Buffer, start: number, end: number): Buffer | undefined {
    const total = this.frameBytes + (end - start);
    this.state = SEEK_SOI;
    if (this.keeping && total > this.maxFrameBytes) this.dropOversized();
    if (!this.keeping) {
      this.discardFrame(total);
      return undefined;
    }
    this.pieces.push(chunk.subarray(start, end));
    const frame = Buffer.concat(this.pieces, total);
    this.pieces = [];
    this.frameBytes = 0;
    this.framesOut += 1;
    return frame;
  }

  private dropOversized(): void {
    this.keeping = false;
    this.pieces = [];
    this.oversizedFramesCount += 1;
  }

  private discardFrame(bytes: number): void {
    this.discardedFramesCount += 1;
    this.discardedBytesCount += bytes;
    this.pieces = [];
    this.frameBytes = 0;
  }
}
