import { chmod, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { persistSettings } from '../../src/config/persist.js';

const YAML = `# Front door camera
inference:
  threshold: 0.2   # below this a class is not reported
  # how many classes per frame
  top_k: 3
gpio:
  rules:
    - pin: 17 # porch light relay
      labels: [Egyptian cat]
`;

t.test('YAML: values changed, comments and the rest kept, missing sections added', async (t) => {
  const dir = t.testdir({ 'config.yaml': YAML });
  const file = path.join(dir, 'config.yaml');
  await chmod(file, 0o640);
  await persistSettings(file, [
    { path: ['inference', 'threshold'], value: 0.35 },
    { path: ['state', 'min_frames'], value: 3 },
    { path: ['gpio', 'rules', 0, 'min_score'], value: 0.6 },
  ]);
  const text = await readFile(file, 'utf8');
  t.match(text, /^# Front door camera\n/);
  t.match(text, /threshold: 0\.35 # below this a class is not reported\n/);
  t.match(text, / {2}# how many classes per frame\n {2}top_k: 3\n/);
  t.match(text, /- pin: 17 # porch light relay\n/);
  t.match(text, / {6}min_score: 0\.6\n/);
  t.match(text, /state:\n {2}min_frames: 3\n/);
  t.equal((await stat(file)).mode & 0o777, 0o640, 'permission bits kept');
  t.same(await readdir(dir), ['config.yaml'], 'no temporary file left');
});

t.test('JSON files stay JSON', async (t) => {
  const dir = t.testdir({ 'c.json': '{"inference":{"threshold":0.2}}' });
  const file = path.join(dir, 'c.json');
  await persistSettings(file, [{ path: ['inference', 'top_k'], value: 5 }]);
  t.same(JSON.parse(await readFile(file, 'utf8')), { inference: { threshold: 0.2, top_k: 5 } });
});

t.test('refusals: nothing written', async (t) => {
  const dir = t.testdir({ 'config.yaml': 'inference:\n  threshold: 0.2\n', 'bad.yaml': 'a: [1\n', 'scalar.yaml': 'state: 3\n' });
  const file = path.join(dir, 'config.yaml');
  await t.rejects(
    persistSettings(file, [{ path: ['gpio', 'rules', 0, 'min_score'], value: 0.6 }]),
    /cannot persist gpio\.rules\[0\]\.min_score to .*config\.yaml: the file has no gpio\.rules\[0\]/,
  );
  await t.rejects(persistSettings(path.join(dir, 'bad.yaml'), [{ path: ['a'], value: 1 }]), /bad\.yaml: it does not parse/);
  await t.rejects(persistSettings(path.join(dir, 'scalar.yaml'), [{ path: ['state', 'min_frames'], value: 3 }]), /state is not a mapping there/);
  await t.rejects(persistSettings(path.join(dir, 'missing.yaml'), []), /cannot persist settings to .*missing\.yaml: not writable \(ENOENT\)/);
  t.equal(await readFile(file, 'utf8'), 'inference:\n  threshold: 0.2\n');
});
