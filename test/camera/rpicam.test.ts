import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { createRpicamSource, findOnPath, findRpicamProgram, type RpicamOptions, rpicamArgs, rpicamDescription } from '../../src/camera/rpicam.js';
import type { Frame } from '../../src/core/types.js';

/** What the configuration's defaults ask of the Pi camera. */
const defaults: RpicamOptions = { width: 640, height: 480, fps: 10, rotation: 0, hflip: false, vflip: false, jpegQuality: 80 };

import { silentLogger } from '../../src/core/log.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'rpicam-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

function executable(dir: string, name: string, body: string): string {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, name);
  writeFileSync(file, body);
  chmodSync(file, 0o755);
  return file;
}

t.test('default arguments: endless MJPEG on stdout, 640x480 at 10 fps, flushed per frame', async (t) => {
  t.same(rpicamArgs(defaults), [
    '-t',
    '0',
    '-n',
    '--codec',
    'mjpeg',
    '-o',
    '-',
    '--width',
    '640',
    '--height',
    '480',
    '--framerate',
    '10',
    '--flush',
    '--quality',
    '80',
  ]);
  t.equal(rpicamDescription(defaults), 'rpicam 640x480@10');
});

t.test('every option', async (t) => {
  const args = rpicamArgs({
    width: 320,
    height: 240,
    fps: 7.5,
    camera: 1,
    rotation: 180,
    hflip: true,
    vflip: true,
    jpegQuality: 80,
    denoise: 'cdn_fast',
  });
  t.same(args, [
    '-t',
    '0',
    '-n',
    '--codec',
    'mjpeg',
    '-o',
    '-',
    '--width',
    '320',
    '--height',
    '240',
    '--framerate',
    '7.5',
    '--flush',
    '--camera',
    '1',
    '--rotation',
    '180',
    '--hflip',
    '--vflip',
    '--quality',
    '80',
    '--denoise',
    'cdn_fast',
  ]);
  t.equal(rpicamDescription({ ...defaults, camera: 1, width: 320, height: 240, fps: 7.5 }), 'rpicam:1 320x240@7.5');
  t.notOk(rpicamArgs({ ...defaults, rotation: 0 }).includes('--rotation'), 'rotation 0 adds nothing');
});

// Bad sizes, rates and qualities are refused by the configuration schema (test/config/load.test.ts),
// rotation 90/270 and camera indexes above 15 by parseSourceSpec (test/camera/source-spec.test.ts).

t.test('program lookup: rpicam-vid first, then libcamera-vid, else a clear error', async (t) => {
  const bookworm = path.join(tmp, 'bookworm');
  const bullseye = path.join(tmp, 'bullseye');
  const newer = executable(bookworm, 'rpicam-vid', '#!/bin/sh\n');
  executable(bookworm, 'libcamera-vid', '#!/bin/sh\n');
  const older = executable(bullseye, 'libcamera-vid', '#!/bin/sh\n');
  writeFileSync(path.join(tmp, 'rpicam-vid'), 'not executable');
  const pathOf = (...dirs: string[]) => dirs.join(path.delimiter);
  t.equal(findRpicamProgram(undefined, pathOf(tmp, bullseye, bookworm)), newer, 'rpicam-vid anywhere on PATH wins');
  t.equal(findRpicamProgram(undefined, pathOf(tmp, bullseye)), older, 'libcamera-vid on older systems');
  t.throws(() => findRpicamProgram(undefined, pathOf(tmp)), {
    message:
      "the Pi camera source needs rpicam-vid (or libcamera-vid), but neither is on PATH: install the Raspberry Pi camera apps with 'sudo apt install rpicam-apps' (or rpicam-apps-lite)",
  });
  t.equal(findRpicamProgram(older, ''), older, 'an override path is used as is');
  t.equal(findRpicamProgram('libcamera-vid', pathOf(bookworm)), path.join(bookworm, 'libcamera-vid'));
  t.throws(() => findRpicamProgram(path.join(tmp, 'rpicam-vid'), ''), {
    message: `rpicamPath '${path.join(tmp, 'rpicam-vid')}' is not an executable file`,
  });
  t.throws(() => findRpicamProgram('my-cam', pathOf(bookworm)), { message: "rpicamPath 'my-cam' is not an executable file on PATH" });
  t.equal(findOnPath('rpicam-vid', pathOf('', bookworm)), newer, 'empty PATH entries are skipped');
});

t.test('the Pi camera source runs the program with its arguments and splits its MJPEG', async (t) => {
  // rpicam-vid cannot run without a camera: a stand-in records its arguments and writes MJPEG like it.
  const argsFile = path.join(tmp, 'args.txt');
  const fake = executable(
    path.join(tmp, 'fake'),
    'rpicam-vid',
    `#!/bin/sh\nprintf '%s\\n' "$@" > '${argsFile}'\n` +
      'exec ffmpeg -hide_banner -loglevel error -nostdin -re -f lavfi -i testsrc=size=320x240:rate=20 -f mjpeg -q:v 5 -\n',
  );
  const source = createRpicamSource({ ...defaults, width: 320, height: 240, fps: 20, rotation: 180, rpicamPath: fake }, silentLogger());
  t.equal(source.description, 'rpicam 320x240@20');
  const frames: Frame[] = [];
  source.listen((f) => frames.push(f));
  await source.start();
  await new Promise<void>((resolve) => {
    const poll = setInterval(() => {
      if (frames.length < 5) return;
      clearInterval(poll);
      resolve();
    }, 10);
  });
  await source.stop();
  t.same(readFileSync(argsFile, 'utf8').trim().split('\n'), rpicamArgs({ ...defaults, width: 320, height: 240, fps: 20, rotation: 180 }));
  const meta = await sharp(frames[4].data).metadata();
  t.same([meta.format, meta.width, meta.height], ['jpeg', 320, 240]);
  const missing = createRpicamSource({ ...defaults, rpicamPath: path.join(tmp, 'none', 'rpicam-vid') }, silentLogger());
  await t.rejects(missing.start(), /rpicamPath '.*none\/rpicam-vid' is not an executable file/);
  await missing.stop();
});
