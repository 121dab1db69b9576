import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import sharp, { type Sharp } from 'sharp';
import t from 'tap';
import { MjpegSplitter } from '../../src/camera/mjpeg-splitter.js';
import { image } from '../helpers/assets.js';

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

/** Random junk that never contains an SOI (FF D8), but does contain FF D9, FF FF and FF 00, and ends with FF. */
function junk(length: number, seed: number): Buffer {
  const rnd = prng(seed);
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i += 1) out[i] = rnd() < 0.2 ? 0xff : Math.floor(rnd() * 256);
  out.set([0xff, 0xd9, 0xff, 0xff, 0x00], 0);
  out[length - 1] = 0xff;
  for (let i = 1; i < length; i += 1) if (out[i - 1] === 0xff && out[i] === 0xd8) out[i] = 0xd7;
  return out;
}

/** An EXIF APP1 segment (big-endian TIFF) whose IFD1 carries `thumbnail`, a complete JPEG, as EXIF thumbnails are stored. */
function exifApp1(thumbnail: Buffer): Buffer {
  const thumbOffset = 8 + 18 + 30; // TIFF header, IFD0 (1 entry), IFD1 (2 entries)
  const tiff = Buffer.alloc(thumbOffset + thumbnail.length);
  tiff.write('MM', 0, 'latin1');
  tiff.writeUInt16BE(42, 2);
  tiff.writeUInt32BE(8, 4);
  tiff.writeUInt16BE(1, 8); // IFD0: Orientation = 1
  tiff.writeUInt16BE(0x0112, 10);
  tiff.writeUInt16BE(3, 12);
  tiff.writeUInt32BE(1, 14);
  tiff.writeUInt16BE(1, 18);
  tiff.writeUInt32BE(26, 22); // next IFD: IFD1
  tiff.writeUInt16BE(2, 26); // IFD1: JPEGInterchangeFormat, JPEGInterchangeFormatLength
  tiff.writeUInt16BE(0x0201, 28);
  tiff.writeUInt16BE(4, 30);
  tiff.writeUInt32BE(1, 32);
  tiff.writeUInt32BE(thumbOffset, 36);
  tiff.writeUInt16BE(0x0202, 40);
  tiff.writeUInt16BE(4, 42);
  tiff.writeUInt32BE(1, 44);
  tiff.writeUInt32BE(thumbnail.length, 48);
  tiff.writeUInt32BE(0, 52);
  thumbnail.copy(tiff, thumbOffset);
  const payload = Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), tiff]);
  const header = Buffer.from([0xff, 0xe1, 0, 0]);
  header.writeUInt16BE(payload.length + 2, 2);
  return Buffer.concat([header, payload]);
}

/** `jpeg` with an EXIF thumbnail segment inserted right after its SOI. */
function withThumbnail(jpeg: Buffer, thumbnail: Buffer): Buffer {
  return Buffer.concat([jpeg.subarray(0, 2), exifApp1(thumbnail), jpeg.subarray(2)]);
}

/** A JPEG with restart markers (DRI + RSTn), encoded by ffmpeg's MJPEG encoder with slices. */
function jpegWithRestarts(file: string, width: number): Buffer {
  const r = spawnSync(
    'ffmpeg',
    [
      '-hide_banner',
      '-loglevel',
      'error',
      '-nostdin',
      '-i',
      file,
      '-vf',
      `scale=${width}:-2`,
      '-threads',
      '4',
      '-slices',
      '4',
      '-frames:v',
      '1',
      '-f',
      'mjpeg',
      '-q:v',
      '5',
      '-',
    ],
    { maxBuffer: 1 << 24 },
  );
  if (r.status !== 0) throw new Error(`ffmpeg failed: ${String(r.stderr)}`);
  return r.stdout;
}

function split(stream: Buffer, sizes: () => number, splitter = new MjpegSplitter()): Buffer[] {
  const frames: Buffer[] = [];
  for (let i = 0; i < stream.length; ) {
    const n = Math.max(1, sizes());
    for (const f of splitter.push(stream.subarray(i, i + n))) frames.push(f);
    i += n;
  }
  splitter.reset(); // end of stream: a trailing FF that might have begun an SOI is junk now
  return frames;
}

async function makeFrames(width?: number) {
  const resize = (s: Sharp) => (width ? s.resize(width) : s);
  const camera = width
    ? await resize(sharp(image('cat_720p.jpg')))
        .jpeg({ quality: 85 })
        .toBuffer()
    : readFileSync(image('cat_720p.jpg'));
  const baseline = await resize(sharp(image('cat.png')))
    .jpeg({ quality: 70 })
    .toBuffer();
  const progressive = await resize(sharp(image('grace_hopper.png')))
    .jpeg({ progressive: true })
    .toBuffer();
  const main = await resize(sharp(image('bird.png')))
    .jpeg()
    .toBuffer();
  const thumb = await sharp(image('bird.png')).resize(40).jpeg().toBuffer();
  const exif = withThumbnail(main, thumb);
  const restarts = jpegWithRestarts(image('owl.jpg'), width ?? 640);
  return { camera, baseline, progressive, exif, restarts, thumb };
}

const full = await makeFrames();
const small = await makeFrames(48);

function streamOf(f: typeof full, seed: number) {
  const frames = [f.camera, f.baseline, f.progressive, f.exif, f.restarts];
  const junks = [junk(37, seed), junk(5, seed + 1), junk(300, seed + 2)];
  // junk, camera, junk, baseline, progressive (adjacent), exif, junk, restarts, trailing junk
  const stream = Buffer.concat([junks[0], f.camera, junks[1], f.baseline, f.progressive, f.exif, junks[2], f.restarts, junks[1]]);
  const junkBytes = junks[0].length + 2 * junks[1].length + junks[2].length;
  return { frames, stream, junkBytes };
}

t.test('the fixtures are what the tests claim', async (t) => {
  for (const f of [full, small]) {
    // The EXIF thumbnail's own EOI sits inside the frame: a naive FF D9 search would cut the frame there.
    const firstEoi = f.exif.indexOf(Buffer.from([0xff, 0xd9]));
    t.ok(firstEoi > 0 && firstEoi < f.exif.length - 2, 'thumbnail EOI inside the frame');
    t.ok(f.restarts.includes(Buffer.from([0xff, 0xdd])), 'DRI segment present');
    t.ok(f.restarts.includes(Buffer.from([0xff, 0xd0])), 'RST0 marker present');
    const meta = await sharp(f.exif).metadata();
    t.ok(meta.exif && meta.exif.length > f.thumb.length, 'sharp sees the EXIF block');
  }
});

t.test('one chunk: every frame exactly, junk counted', async (t) => {
  const { frames, stream, junkBytes } = streamOf(full, 1);
  const splitter = new MjpegSplitter();
  const out = splitter.push(stream);
  splitter.reset();
  t.equal(out.length, frames.length);
  for (const [i, f] of out.entries()) t.ok(f.equals(frames[i]!), `frame ${i} byte-identical`);
  t.same(splitter.stats(), { frames: 5, discardedFrames: 0, oversizedFrames: 0, discardedBytes: junkBytes });
  t.equal(splitter.pendingBytes, 0);
  const sizes = await Promise.all(out.map(async (f) => sharp(f).metadata()));
  t.same(
    sizes.map((m) => [m.width, m.height]),
    [
      [1280, 720],
      [512, 341],
      [512, 600],
      [512, 343],
      [640, 480],
    ],
  );
  // Decode every pixel too: a frame cut at the thumbnail's EOI or at an RST marker would fail here.
  for (const f of out) t.ok((await sharp(f).raw().toBuffer()).length > 0);
});

t.test('every chunk size from 1 to 400 bytes', async (t) => {
  const { frames, stream, junkBytes } = streamOf(small, 2);
  t.ok(stream.length > 8000, `stream of ${stream.length} bytes`);
  let bad = 0;
  for (let size = 1; size <= 400; size += 1) {
    const splitter = new MjpegSplitter();
    const out = split(stream, () => size, splitter);
    const ok =
      out.length === frames.length &&
      out.every((f, i) => f.equals(frames[i])) &&
      splitter.stats().discardedBytes === junkBytes &&
      splitter.stats().discardedFrames === 0;
    if (!ok) {
      bad += 1;
      t.fail(`chunk size ${size}: ${out.length} frames, stats ${JSON.stringify(splitter.stats())}`);
    }
  }
  t.equal(bad, 0, 'all 400 chunk sizes give the same frames');
});

t.test('random chunking (seeded) of the full-size stream', async (t) => {
  for (let seed = 1; seed <= 30; seed += 1) {
    const { frames, stream, junkBytes } = streamOf(full, seed);
    const rnd = prng(seed * 7919);
    // Mostly small chunks, sometimes a pipe-sized one.
    const sizes = () => (rnd() < 0.1 ? 1 + Math.floor(rnd() * 65536) : 1 + Math.floor(rnd() * 64));
    const splitter = new MjpegSplitter();
    const out = split(stream, sizes, splitter);
    t.equal(out.length, frames.length, `seed ${seed}: frame count`);
    t.ok(
      out.every((f, i) => f.equals(frames[i])),
      `seed ${seed}: frames byte-identical`,
    );
    t.equal(splitter.stats().discardedBytes, junkBytes, `seed ${seed}: junk counted`);
  }
});

t.test('1-byte chunks over the full-size stream', async (t) => {
  const { frames, stream } = streamOf(full, 3);
  const started = performance.now();
  const out = split(stream, () => 1);
  const ms = performance.now() - started;
  t.equal(out.length, frames.length);
  t.ok(out.every((f, i) => f.equals(frames[i])));
  // Linear work: ~360 kB one byte at a time. A quadratic concatenation would take minutes.
  t.ok(ms < 5000, `took ${ms.toFixed(0)} ms`);
});

t.test('a truncated frame is dropped at the next SOI and counted', async (t) => {
  const cut = full.baseline.subarray(0, Math.floor(full.baseline.length / 2));
  const stream = Buffer.concat([cut, full.progressive, cut, full.camera]);
  for (const size of [1, 7, 4096, stream.length]) {
    const splitter = new MjpegSplitter();
    const out = split(stream, () => size, splitter);
    t.equal(out.length, 2, `chunk ${size}: two whole frames`);
    t.ok(out[0].equals(full.progressive) && out[1].equals(full.camera));
    t.same(splitter.stats(), { frames: 2, discardedFrames: 2, oversizedFrames: 0, discardedBytes: 2 * cut.length });
  }
});

t.test('an oversized frame is discarded and counted; the next frame is intact', async (t) => {
  const stream = Buffer.concat([small.baseline, full.camera, small.progressive]);
  for (const size of [1, 1000, 65536, stream.length]) {
    const splitter = new MjpegSplitter({ maxFrameBytes: 50_000 });
    const out = split(stream, () => size, splitter);
    t.equal(out.length, 2, `chunk ${size}`);
    t.ok(out[0].equals(small.baseline) && out[1].equals(small.progressive));
    t.same(splitter.stats(), { frames: 2, discardedFrames: 1, oversizedFrames: 1, discardedBytes: full.camera.length });
  }
  // Memory is bounded while the oversized frame streams through: nothing of it is held.
  const splitter = new MjpegSplitter({ maxFrameBytes: 50_000 });
  splitter.push(full.camera.subarray(0, 80_000));
  t.equal(splitter.push(full.camera.subarray(80_000)).length, 0);
  t.equal(splitter.stats().oversizedFrames, 1);
  t.throws(() => new MjpegSplitter({ maxFrameBytes: 0 }), { message: 'maxFrameBytes: expected an integer of at least 4 bytes, but received 0' });
});

t.test('reset() drops the frame in progress and counts it', async (t) => {
  const splitter = new MjpegSplitter();
  t.equal(splitter.push(full.baseline.subarray(0, 1000)).length, 0);
  t.equal(splitter.pendingBytes, 1000);
  splitter.reset();
  t.equal(splitter.pendingBytes, 0);
  t.same(splitter.stats(), { frames: 0, discardedFrames: 1, oversizedFrames: 0, discardedBytes: 1000 });
  // The rest of the cut frame is junk now (it holds no SOI); the next frame comes through whole.
  const out = splitter.push(Buffer.concat([full.baseline.subarray(1000), full.exif]));
  t.equal(out.length, 1);
  t.ok(out[0].equals(full.exif));
});

t.test('a bad segment length drops the frame', async (t) => {
  // SOI, then an APP0 whose length field is 1 (a length counts its own two bytes, so < 2 is impossible).
  const broken = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x01, 0x11, 0x22]);
  const splitter = new MjpegSplitter();
  const out = splitter.push(Buffer.concat([broken, small.baseline]));
  t.equal(out.length, 1);
  t.ok(out[0].equals(small.baseline));
  t.equal(splitter.stats().discardedFrames, 1);
});
