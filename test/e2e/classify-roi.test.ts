/** `classify --roi` and `source.roi` as a user checks a region: the region decides the top-1; a bad ROI exits 78. */

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { image, model } from '../helpers/assets.js';
import { runCli } from '../helpers/cli.js';

const V2 = model('mobilenet_v2_1.0_224_quant.tflite');
const tmp = mkdtempSync(path.join(tmpdir(), 'ec-roi-'));

interface ClassifyLine {
  file: string;
  classes: { index: number; label: string; score: number }[];
}

t.test('classify --roi: the region decides; a bad ROI exits 78 naming it, in a flag or a config', async (t) => {
  // A cat on the left half, a hot dog on the right half.
  const left = await sharp(image('cat.png')).rotate().resize(224, 224, { fit: 'fill' }).png().toBuffer();
  const right = await sharp(image('hot_dog.jpg')).rotate().resize(224, 224, { fit: 'fill' }).png().toBuffer();
  const both = path.join(tmp, 'cat-and-hotdog.png');
  await sharp({ create: { width: 448, height: 224, channels: 3, background: '#000' } })
    .composite([
      { input: left, left: 0, top: 0 },
      { input: right, left: 224, top: 0 },
    ])
    .png()
    .toFile(both);
  const top1 = async (args: string[]) => {
    const r = await runCli(['classify', '--model', V2, '--json', ...args, both]);
    t.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as ClassifyLine).classes[0]!.label;
  };
  t.equal(await top1(['--roi', '0,0,0.5,1']), 'Egyptian cat', 'left half');
  t.equal(await top1(['--roi', '0.5,0,0.5,1']), 'hotdog, hot dog, red hot', 'right half');
  const config = path.join(tmp, 'roi.yaml');
  writeFileSync(config, 'source:\n  roi: {x: 0.5, y: 0, width: 0.5, height: 1}\n');
  t.equal(await top1(['--config', config]), 'hotdog, hot dog, red hot', 'source.roi of the config');
  const bad = await runCli(['classify', '--model', V2, '--roi', '0.6,0,0.5,1', both]);
  t.equal(bad.code, 78);
  t.match(bad.stderr, /--roi reaches outside the frame \(x \+ width = 1\.1, y \+ height = 1\): expected both at most 1/);
  const badConfig = path.join(tmp, 'bad-roi.yaml');
  writeFileSync(badConfig, 'source:\n  roi: {x: 0, y: 0, width: 0, height: 1}\n');
  const run = await runCli(['run', '--check-config', '--config', badConfig, '--model', V2, '--source', tmp]);
  t.equal(run.code, 78);
  t.match(run.stderr, /source\.roi: the ROI has zero size/);
});
