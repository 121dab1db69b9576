import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { checkLabelCount, labelFor, parseLabels, readLabelsFile } from '../../src/inference/labels.js';
import { labels as labelsAsset } from '../helpers/assets.js';

const dir = mkdtempSync(path.join(tmpdir(), 'labels-'));
const write = (name: string, text: string) => {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
};

t.test('plain labels file: one per line, trailing blank lines dropped', async (t) => {
  const l = await readLabelsFile(write('plain.txt', 'daisy\r\ndandelion\nroses\n\n\n'));
  t.equal(l.format, 'plain');
  t.same(l.entries, ['daisy', 'dandelion', 'roses']);
  t.equal(l.labelFor(2), 'roses');
  t.equal(l.labelFor(3), 'class 3');
});

t.test('indexed labels file: "<index> <label>" lines, gaps allowed', async (t) => {
  const l = await readLabelsFile(write('indexed.txt', '0 background\n1 tench\n3 great white shark\n'));
  t.equal(l.format, 'indexed');
  t.equal(l.length, 4);
  t.equal(l.labelFor(0), 'background');
  t.equal(l.labelFor(1), 'tench');
  t.equal(l.labelFor(2), 'class 2', 'a gap falls back to class <index>');
  t.equal(l.labelFor(3), 'great white shark');
});

t.test('the ImageNet labels asset: 1001 plain labels, background first', async (t) => {
  const l = await readLabelsFile(labelsAsset('imagenet_labels.txt'));
  t.equal(l.format, 'plain');
  t.equal(l.length, 1001);
  t.equal(l.labelFor(0), 'background');
  t.equal(l.labelFor(286), 'Egyptian cat');
});

t.test('errors name the file and the line', async (t) => {
  const dup = write('dup.txt', '0 a\n1 b\n1 c\n');
  await t.rejects(readLabelsFile(dup), { message: `${dup} line 3: index 1 appears again (first on line 2)` });
  const mixed = write('mixed.txt', '0 background\n1 tench\ngoldfish\n');
  await t.rejects(readLabelsFile(mixed), {
    message: `${mixed} line 3: expected "<index> <label>" like line 1 ("0 background"), found "goldfish"`,
  });
  await t.rejects(readLabelsFile(path.join(dir, 'missing.txt')), { message: /cannot read the labels file .*missing\.txt: no such file/ });
});

t.test('a plain file whose first label starts with a number other than 0/1 stays plain', async (t) => {
  t.same(parseLabels('3D printer\ncat\n', 'x').entries, ['3D printer', 'cat']);
});

t.test('label count checks are warnings naming the background offset', async (t) => {
  t.equal(checkLabelCount(1001, 1001, 'l.txt'), null);
  t.match(checkLabelCount(1000, 1001, 'l.txt', 'output x'), /^l\.txt has 1000 labels but output x has 1001 classes: .*"background" label at index 0/);
  t.match(checkLabelCount(1001, 1000, 'l.txt'), /extra "background" label/);
  t.match(checkLabelCount(3, 5, 'l.txt'), /classes 3 and above are shown as "class <index>"/);
  t.equal(labelFor(undefined, 4), 'class 4');
  t.equal(labelFor(['a', ''], 1), 'class 1', 'an empty label falls back too');
});

t.test('sparse index maps and binary files', async (t) => {
  const sparse = parseLabels('286 Kitty\n282 Tabby\n', 'pets.txt');
  t.equal(sparse.format, 'indexed');
  t.equal(sparse.labelFor(286), 'Kitty');
  t.equal(sparse.labelFor(282), 'Tabby');
  t.equal(sparse.labelFor(0), 'class 0');
  t.equal(parseLabels('3 way switch\nlamp\n', 'mixed.txt').format, 'plain', 'one label starting with a digit does not make a file indexed');
  t.throws(() => parseLabels('\u0089PNG\r\n\u001a\n\u0000\u0000', 'x.png'), /x\.png is not a UTF-8 text file/);
});
