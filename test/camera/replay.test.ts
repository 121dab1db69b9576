import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { listReplayFiles, naturalCompare, ReplaySource } from '../../src/camera/replay.js';
import { silentLogger } from '../../src/core/log.js';
import type { Frame } from '../../src/core/types.js';
import { image } from '../helpers/assets.js';
import { startWith } from '../helpers/sources.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'replay-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

const dir = path.join(tmp, 'frames');
mkdirSync(dir);
const files = {
  'frame-1.jpg': readFileSync(image('cat_720p.jpg')),
  'frame-2.webp': await sharp(image('bird.png')).webp().toBuffer(),
  'frame-3.bmp': readFileSync(image('rgb6X4.bmp')), // sharp cannot decode BMP: it must still be delivered
  'frame-10.png': readFileSync(image('sparrow.png')),
  'broken.jpg': Buffer.from('not a jpeg at all'),
};
for (const [name, data] of Object.entries(files)) writeFileSync(path.join(dir, name), data);
writeFileSync(path.join(dir, '.DS_Store'), 'hidden');
mkdirSync(path.join(dir, 'subdir'));
symlinkSync(path.join(dir, 'frame-1.jpg'), path.join(dir, 'frame-11-link.jpg'));
const order = ['broken.jpg', 'frame-1.jpg', 'frame-2.webp', 'frame-3.bmp', 'frame-10.png', 'frame-11-link.jpg'];

function collect(source: ReplaySource, count: number): Promise<Frame[]> {
  const frames: Frame[] = [];
  return new Promise((resolve, reject) => {
    startWith(source, (f) => {
      frames.push(f);
      if (frames.length === count) resolve(frames);
    }).catch(reject);
  });
}

t.test('natural order, hidden files and subdirectories skipped', async (t) => {
  t.same(
    (await listReplayFiles(dir)).map((f) => path.basename(f)),
    order,
  );
  t.same(['img10.jpg', 'img2.jpg', 'IMG1.jpg', 'img1.jpg'].sort(naturalCompare), ['img1.jpg', 'IMG1.jpg', 'img2.jpg', 'img10.jpg']);
});

t.test('loops over the files in order at the requested rate without drift', async (t) => {
  const source = new ReplaySource({ dir, fps: 50, loop: true, log: silentLogger() });
  t.equal(source.description, `replay ${dir} @50 (loop)`);
  const frames = await collect(source, 26);
  const fps = source.stats().fps;
  await source.stop();
  t.same(
    frames.map((f) => f.seq),
    Array.from({ length: 26 }, (_, i) => i + 1),
  );
  t.same(
    frames.map((f) => path.basename(f.file!)),
    Array.from({ length: 26 }, (_, i) => order[i % order.length]),
  );
  for (const f of frames.slice(0, 6)) {
    t.ok(f.data.equals(readFileSync(f.file!)), `${path.basename(f.file!)}: bytes as on disk`);
  }
  // 25 periods of 20 ms: timer lateness must not add up.
  const span = frames[25].arrivedAt - frames[0].arrivedAt;
  t.ok(span > 480 && span < 560, `25 periods took ${span.toFixed(1)} ms`);
  t.ok(fps > 45 && fps < 52, `measured ${fps.toFixed(1)} fps`);
  const count = source.stats().frames;
  await new Promise((r) => setTimeout(r, 100));
  t.equal(source.stats().frames, count, 'no frame after stop()');
  await source.stop();
});

t.test('loop: false ends one period after the last file', async (t) => {
  const source = new ReplaySource({ dir, fps: 40, loop: false, log: silentLogger() });
  const frames: Frame[] = [];
  const ended = await new Promise<{ reason: string; at: number }>((resolve, reject) => {
    startWith(
      source,
      (f) => frames.push(f),
      (reason) => resolve({ reason, at: performance.now() }),
    ).catch(reject);
  });
  t.equal(ended.reason, `replayed 6 files from '${dir}'`);
  t.same(
    frames.map((f) => path.basename(f.file!)),
    order,
  );
  const after = ended.at - frames[5].arrivedAt;
  t.ok(after > 20 && after < 60, `ended ${after.toFixed(1)} ms after the last frame`);
  await source.stop();
});

t.test('a file that disappears is skipped and reported; the next pass lists the folder again, and an emptied folder ends the source', async (t) => {
  const small = path.join(tmp, 'small');
  mkdirSync(small);
  writeFileSync(path.join(small, 'a.jpg'), files['frame-1.jpg']);
  writeFileSync(path.join(small, 'b.jpg'), files['frame-1.jpg']);
  const source = new ReplaySource({ dir: small, fps: 50, loop: true, log: silentLogger() });
  const frames: Frame[] = [];
  let endReason = '';
  const ended = new Promise<void>((resolve) => {
    void startWith(
      source,
      (f) => {
        frames.push(f);
        if (frames.length === 1) rmSync(path.join(small, 'b.jpg')); // gone before its turn in this pass
        if (frames.length === 2) rmSync(path.join(small, 'a.jpg')); // the folder is empty at the next pass
      },
      (reason) => {
        endReason = reason;
        resolve();
      },
    );
  });
  await ended;
  t.match(source.stats().lastError, /^cannot read replay file '.*b\.jpg': ENOENT/);
  t.same(
    frames.map((f) => path.basename(f.file!)),
    ['a.jpg', 'a.jpg'],
    'b.jpg is not tried again once the folder is listed again',
  );
  t.match(endReason, new RegExp(`replay directory '${small.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}' holds no files to replay`));
  await source.stop();
});

t.test('missing, empty or non-directory paths are clear errors at start()', async (t) => {
  const missing = path.join(tmp, 'nope');
  await t.rejects(new ReplaySource({ dir: missing, fps: 10, loop: true, log: silentLogger() }).start(), {
    message: `replay directory '${missing}' does not exist`,
  });
  const empty = path.join(tmp, 'empty');
  mkdirSync(empty);
  writeFileSync(path.join(empty, '.hidden'), 'x');
  await t.rejects(new ReplaySource({ dir: empty, fps: 10, loop: true, log: silentLogger() }).start(), {
    message: `replay directory '${empty}' holds no files to replay (images such as .jpg, .png, .webp are expected)`,
  });
  const file = path.join(dir, 'frame-1.jpg');
  await t.rejects(new ReplaySource({ dir: file, fps: 10, loop: true, log: silentLogger() }).start(), {
    message: `replay directory '${file}' is not a directory`,
  });
  // fps bounds are the configuration schema's (test/config/load.test.ts).
});

t.test('a looping replay picks up added files each pass and ends when the folder is gone', async (t) => {
  const dir = mkdtempSync(path.join(tmp, 'pass-'));
  writeFileSync(path.join(dir, 'a.jpg'), 'A');
  const seen: string[] = [];
  let ended: string | undefined;
  const source = new ReplaySource({ dir, fps: 50, loop: true, log: silentLogger() });
  t.teardown(() => source.stop());
  await startWith(
    source,
    (f) => seen.push(path.basename(f.file!)),
    (reason) => (ended = reason),
  );
  await new Promise((r) => setTimeout(r, 60));
  writeFileSync(path.join(dir, 'b.jpg'), 'B');
  await new Promise((r) => setTimeout(r, 200));
  t.ok(seen.includes('b.jpg'), `a file added while running is replayed (${seen.join(' ')})`);
  rmSync(dir, { recursive: true, force: true });
  for (let i = 0; i < 50 && ended === undefined; i++) await new Promise((r) => setTimeout(r, 100));
  t.match(ended, /replay directory .* (holds no files|could be read|does not exist|cannot be read)/, `the source ended: ${ended}`);
});
