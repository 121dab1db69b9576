import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { editDistance, matchLabel, nearMatches, readDataset } from '../../src/evaluation/dataset.js';
import { assetsDir, labels as labelsFile } from '../helpers/assets.js';

const imagenet = readFileSync(labelsFile('imagenet_labels.txt'), 'utf8')
  .split('\n')
  .filter((l) => l !== '');

t.test('folders match labels as GPIO rules do: case-insensitive, whole label or synonym', async (t) => {
  const hotdog = imagenet.indexOf('hotdog, hot dog, red hot');
  t.same(matchLabel('hotdog, hot dog, red hot', imagenet), [hotdog]);
  t.same(matchLabel('Hot Dog', imagenet), [hotdog], 'synonym, any case');
  t.same(matchLabel('red hot', imagenet), [hotdog]);
  t.same(matchLabel('hot', imagenet), [], 'a word of a synonym is not a synonym');
  t.same(matchLabel('crane', imagenet), [135, 518], 'ImageNet has two cranes (bird and machine)');
  t.same(matchLabel('518', imagenet), [518], 'a class index');
});

t.test('near matches', async (t) => {
  t.equal(editDistance('kitten', 'sitting'), 3);
  t.same(nearMatches('teddy bears', imagenet).slice(0, 1), ['teddy, teddy bear']);
  t.same(nearMatches('hot-dog', imagenet).slice(0, 1), ['hotdog, hot dog, red hot']);
  t.ok(
    nearMatches('bottle', imagenet).every((l) => /\bbottle\b/.test(l)),
    'labels holding the name as a word',
  );
  t.same(nearMatches('zzzzzzzz', imagenet), []);
});

t.test('the assets eval folder: 9 classes, 27 images, SOURCES.md noted', async (t) => {
  const d = await readDataset(path.join(assetsDir, 'eval'), imagenet, 'imagenet_labels.txt');
  t.equal(d.classes.length, 9);
  t.equal(
    d.classes.reduce((a, c) => a + c.files.length, 0),
    27,
  );
  for (const c of d.classes) t.equal(imagenet[c.index], c.folder, `${c.folder} is named exactly as its label`);
  t.match(d.notes.join('\n'), /1 file directly in .* ignored \(SOURCES\.md\)/);
});

t.test('bad folders', async (t) => {
  const root = mkdtempSync(path.join(tmpdir(), 'dataset-'));
  await t.rejects(readDataset(path.join(root, 'missing'), imagenet, 'labels.txt'), {
    name: 'DatasetError',
    message: /cannot read the evaluation folder .*missing: no such folder/,
  });
  const empty = path.join(root, 'empty');
  mkdirSync(empty);
  await t.rejects(readDataset(empty, imagenet, 'labels.txt'), {
    message: /empty holds no class folders \(it is empty\): expected one sub-folder per class, named after a label of the model/,
  });
  const file = path.join(root, 'file.txt');
  writeFileSync(file, 'x');
  await t.rejects(readDataset(file, imagenet, 'labels.txt'), { message: /file\.txt is not a folder/ });

  const typo = path.join(root, 'typo');
  mkdirSync(path.join(typo, 'teddy bears'), { recursive: true });
  mkdirSync(path.join(typo, 'banana'), { recursive: true });
  writeFileSync(path.join(typo, 'banana', 'a.jpg'), 'x');
  await t.rejects(readDataset(typo, imagenet, 'labels.txt'), {
    message: /folder 'teddy bears' matches no label of labels\.txt; near matches: 'teddy, teddy bear'/,
  });

  const crane = path.join(root, 'crane');
  mkdirSync(path.join(crane, 'crane'), { recursive: true });
  await t.rejects(readDataset(crane, imagenet, 'labels.txt'), {
    message: /folder 'crane' matches 2 labels \(135 'crane', 518 'crane'\): rename it to the class index, e\.g\. '135'/,
  });

  const twice = path.join(root, 'twice');
  mkdirSync(path.join(twice, 'hotdog'), { recursive: true });
  mkdirSync(path.join(twice, 'hot dog'), { recursive: true });
  await t.rejects(readDataset(twice, imagenet, 'labels.txt'), { message: /folders 'hot dog' and 'hotdog' both match class \d+ 'hotdog, hot dog, red hot'/ });

  const hollow = path.join(root, 'hollow');
  mkdirSync(path.join(hollow, 'banana'), { recursive: true });
  await t.rejects(readDataset(hollow, imagenet, 'labels.txt'), { message: /every class folder is empty/ });
  mkdirSync(path.join(hollow, 'toaster'));
  writeFileSync(path.join(hollow, 'toaster', 'x.jpg'), 'x');
  const d = await readDataset(hollow, imagenet, 'labels.txt');
  t.same(
    d.classes.map((c) => c.folder),
    ['toaster'],
  );
  t.match(d.notes, [/folder 'banana' is empty: class 'banana' is left out/]);

  await t.rejects(readDataset(hollow, [], 'model'), { message: /the model has no labels.*--labels/ });
});
