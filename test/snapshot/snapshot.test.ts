import { readFileSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { encodeSnapshot } from '../../src/snapshot/encode.js';
import { SnapshotFolder } from '../../src/snapshot/folder.js';
import { image } from '../helpers/assets.js';

t.test('a 1280x720 camera frame becomes a 320 px wide JPEG that decodes', async (t) => {
  const snap = await encodeSnapshot(readFileSync(image('cat_720p.jpg')), { width: 320, quality: 70 });
  const jpeg = snap.jpeg;
  t.same([snap.width, snap.height], [320, 180]);
  t.same([...jpeg.subarray(0, 3)], [0xff, 0xd8, 0xff], 'JPEG start of image marker');
  const meta = await sharp(jpeg).metadata();
  t.same([meta.format, meta.width, meta.height], ['jpeg', 320, 180]);
  const small = (await encodeSnapshot(readFileSync(image('cat_720p.jpg')), { width: 320, quality: 20 })).jpeg;
  t.ok(small.length < jpeg.length, `quality 20 is smaller (${small.length} < ${jpeg.length} bytes)`);
  const png = (await encodeSnapshot(readFileSync(image('bird.png')), { width: 4096 })).jpeg;
  const pngMeta = await sharp(png).metadata();
  const source = await sharp(image('bird.png')).metadata();
  t.same([pngMeta.format, pngMeta.width], ['jpeg', source.width], 'never enlarged');
});

t.test('raw RGB frames are encoded too', async (t) => {
  const width = 64;
  const height = 32;
  const data = Buffer.alloc(width * height * 3);
  for (let i = 0; i < width * height; i++) data[i * 3] = 255; // pure red
  const { jpeg } = await encodeSnapshot({ data, width, height, channels: 3 });
  const { data: px, info } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
  t.same([info.width, info.height], [64, 32]);
  t.ok(px[0]! > 240 && px[1]! < 20 && px[2]! < 20, `red survives JPEG: ${px[0]},${px[1]},${px[2]}`);
});

t.test('bad input and options give clear errors', async (t) => {
  await t.rejects(encodeSnapshot(Buffer.from('not an image')), /unsupported image format|Input buffer/);
  await t.rejects(encodeSnapshot(Buffer.alloc(1), { width: 8 }), /snapshot width 8: expected a whole number of pixels 16\.\.4096/);
  await t.rejects(encodeSnapshot(Buffer.alloc(1), { quality: 0 }), /snapshot quality 0/);
});

t.test('the folder keeps the newest files within count and byte bounds; other files are left alone', async (t) => {
  const dir = t.testdir({ 'notes.txt': 'mine' });
  const folder = new SnapshotFolder({ dir: path.join(dir, 'snaps'), maxFiles: 3, maxBytes: 2500 });
  const jpeg = Buffer.alloc(1000, 1);
  const t0 = Date.UTC(2026, 11, 1, 8, 0, 0);
  const first = await folder.save(jpeg, new Date(t0), 'hotdog, hot dog, red hot');
  t.equal(path.basename(first), '20261201T080000.000Z_hotdog.jpg');
  for (let i = 1; i < 5; i++) await folder.save(jpeg, new Date(t0 + i * 1000), i % 2 ? 'Egyptian cat' : null);
  // 5 files of 1000 bytes; at most 2500 bytes → the 2 newest remain (3 would be 3000 bytes).
  t.same(await readdir(path.join(dir, 'snaps')), ['20261201T080003.000Z_Egyptian_cat.jpg', '20261201T080004.000Z.jpg']);
  await writeFile(path.join(dir, 'snaps', 'keep-me.jpg'), 'x');
  const big = new SnapshotFolder({ dir: path.join(dir, 'snaps'), maxFiles: 1, maxBytes: 10 });
  await big.save(Buffer.alloc(5000), new Date(t0 + 9000), 'x');
  t.same(await readdir(path.join(dir, 'snaps')), ['20261201T080009.000Z_x.jpg', 'keep-me.jpg'], 'the newest is kept even above the byte bound');
  t.throws(() => new SnapshotFolder({ dir, maxFiles: 0 }), /snapshot folder max files 0/);
  const blocked = new SnapshotFolder({ dir: path.join(dir, 'notes.txt', 'sub') });
  await t.rejects(blocked.save(jpeg, new Date(t0), null), /snapshot folder .*notes\.txt\/sub: .*(ENOTDIR|EEXIST)/);
});
