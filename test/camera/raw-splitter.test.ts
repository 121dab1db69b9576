import t from 'tap';
import { i420Layout, RPICAM_STRIDE_ALIGN, RPICAM_YUV420_COLORSPACE } from '../../src/camera/raw-format.js';
import { RawFrameSplitter } from '../../src/camera/raw-splitter.js';
import { image } from '../helpers/assets.js';
import { i420Frame } from '../helpers/raw-frames.js';

/** mulberry32: a small seeded PRNG, so a failing chunking can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function split(stream: Buffer, sizes: () => number, splitter: RawFrameSplitter): Buffer[] {
  const frames: Buffer[] = [];
  for (let i = 0; i < stream.length; ) {
    const n = Math.max(1, sizes());
    for (const f of splitter.push(stream.subarray(i, i + n))) frames.push(Buffer.from(f));
    i += n;
  }
  return frames;
}

const cs = RPICAM_YUV420_COLORSPACE;
const files = ['cat.png', 'bird.png', 'hot_dog.jpg', 'grace_hopper.png'];
const small = files.map((f) => i420Frame(image(f), 48, 32, cs));
const model = files.map((f) => i420Frame(image(f), 224, 224, cs));

t.test('rpicam-vid I420 layout: stride rounded up to 64 bytes, chroma stride half of it', async (t) => {
  const l = i420Layout(780, 440, RPICAM_STRIDE_ALIGN);
  t.equal(l.yStride, 832, '780 wide comes out 832 (raspberrypi/rpicam-apps #188)');
  t.equal(l.cStride, 416);
  t.equal(l.frameBytes, 832 * 440 * 1.5, 'stride x H x 1.5 bytes');
  const m = i420Layout(224, 224, 64);
  t.same([m.yStride, m.cStride, m.uOffset, m.vOffset, m.frameBytes], [256, 128, 256 * 224, 256 * 224 + 128 * 112, 86016]);
  const exact = i420Layout(640, 480, 64);
  t.equal(exact.yStride, 640, 'a width that is a multiple of 64 has no padding');
  const odd = i420Layout(5, 3, 1);
  t.same([odd.yStride, odd.cStride, odd.chromaWidth, odd.chromaHeight, odd.frameBytes], [5, 3, 3, 2, 15 + 2 * 3 * 2]);
  t.throws(() => i420Layout(0, 10), /positive whole pixels, got 0x10/);
  t.throws(() => i420Layout(10, 10, 48), /power of two, got 48/);
  t.equal(small[0]!.length, 64 * 32 * 1.5, 'fixture frames are padded as rpicam-vid pads them');
});

t.test('one chunk holding several frames: each frame exact, no copy', async (t) => {
  const stream = Buffer.concat(model);
  const splitter = new RawFrameSplitter(model[0]!.length);
  const out = splitter.push(stream);
  t.equal(out.length, 4);
  for (const [i, f] of out.entries()) t.ok(f.equals(model[i]!), `frame ${i} byte-identical`);
  t.equal(out[1]!.buffer, stream.buffer, 'a frame whole inside a chunk is a view of it');
  t.same(splitter.stats(), { frames: 4, tornFrames: 0, discardedBytes: 0 });
});

t.test('every chunk size from 1 to 400 bytes', async (t) => {
  const stream = Buffer.concat([...small, ...small]);
  let bad = 0;
  for (let size = 1; size <= 400; size += 1) {
    const splitter = new RawFrameSplitter(small[0]!.length);
    const out = split(stream, () => size, splitter);
    const ok = out.length === 8 && out.every((f, i) => f.equals(small[i % 4]!)) && splitter.pendingBytes === 0;
    if (!ok) {
      bad += 1;
      t.fail(`chunk size ${size}: ${out.length} frames`);
    }
  }
  t.equal(bad, 0, 'all 400 chunk sizes give the same frames');
});

t.test('random chunking (seeded): pipe-sized and tiny chunks', async (t) => {
  const stream = Buffer.concat([...model, ...model, ...model]);
  for (let seed = 1; seed <= 20; seed += 1) {
    const rnd = prng(seed * 7919);
    const sizes = () => (rnd() < 0.3 ? 1 + Math.floor(rnd() * 65536) : 1 + Math.floor(rnd() * 300));
    const splitter = new RawFrameSplitter(model[0]!.length);
    const out = split(stream, sizes, splitter);
    t.equal(out.length, 12, `seed ${seed}: frame count`);
    t.ok(
      out.every((f, i) => f.equals(model[i % 4]!)),
      `seed ${seed}: frames byte-identical`,
    );
  }
});

t.test('a stream that ends mid-frame: the torn frame is dropped and counted, the next stream is aligned', async (t) => {
  const frameBytes = small[0]!.length;
  for (const size of [1, 100, 4096, 65536]) {
    const splitter = new RawFrameSplitter(frameBytes);
    // The first process writes two frames and half of a third, then dies.
    const first = Buffer.concat([small[0]!, small[1]!, small[2]!.subarray(0, 1000)]);
    const a = split(first, () => size, splitter);
    t.equal(a.length, 2, `chunk ${size}: two whole frames`);
    t.equal(splitter.pendingBytes, 1000);
    splitter.reset();
    t.equal(splitter.pendingBytes, 0);
    // The restarted process starts at a frame boundary again.
    const b = split(Buffer.concat([small[3]!, small[0]!]), () => size, splitter);
    t.equal(b.length, 2);
    t.ok(b[0]!.equals(small[3]!) && b[1]!.equals(small[0]!), 'frames after the restart are intact');
    t.same(splitter.stats(), { frames: 4, tornFrames: 1, discardedBytes: 1000 });
  }
  const idle = new RawFrameSplitter(10);
  idle.reset();
  t.same(idle.stats(), { frames: 0, tornFrames: 0, discardedBytes: 0 }, 'reset between frames tears nothing');
});

t.test('a frame assembled from chunks does not change when later chunks arrive', async (t) => {
  const splitter = new RawFrameSplitter(small[0]!.length);
  const stream = Buffer.concat(small);
  const frames: Buffer[] = [];
  for (let i = 0; i < stream.length; i += 777) frames.push(...splitter.push(stream.subarray(i, i + 777)));
  t.equal(frames.length, 4);
  for (const [i, f] of frames.entries()) t.ok(f.equals(small[i]!), `frame ${i} still intact after all chunks`);
});

t.test('bad frame size', async (t) => {
  t.throws(() => new RawFrameSplitter(0), /positive whole number of bytes, got 0/);
  t.throws(() => new RawFrameSplitter(1.5), /got 1.5/);
});
