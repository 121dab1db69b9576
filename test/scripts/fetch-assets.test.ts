/** The quick start's asset fetch: a local mirror, sha256 checks, clear failures. */

import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { assetsDir, repoRoot } from '../helpers/assets.js';

interface Entry {
  file: string;
  mirror_path: string;
  sha256: string;
}
const { fetchAssets } = (await import(path.join(repoRoot, 'scripts', 'fetch-assets.mjs'))) as {
  fetchAssets(o: { mirror?: string; dest?: string; log?: (line: string) => void }): Promise<void>;
};
const manifest = JSON.parse(readFileSync(path.join(repoRoot, 'models', 'manifest.json'), 'utf8')) as { files: Entry[] };
const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

t.test('from a mirror: every file fetched with its sha256, then left alone', async (t) => {
  const dest = mkdtempSync(path.join(tmpdir(), 'ec-fetch-'));
  const lines: string[] = [];
  await fetchAssets({ mirror: assetsDir, dest, log: (l) => lines.push(l) });
  for (const e of manifest.files) t.equal(sha(path.join(dest, e.file)), e.sha256, e.file);
  t.ok(
    lines.every((l) => l.startsWith('fetched')),
    'all fetched',
  );
  t.ok(
    manifest.files.some((e) => e.file.endsWith('.tflite')),
    'the default model is among them',
  );
  const again: string[] = [];
  await fetchAssets({ mirror: path.join(dest, 'nowhere'), dest, log: (l) => again.push(l) });
  t.ok(
    again.every((l) => l.startsWith('ok')),
    'present files with the right sha256 are not fetched again',
  );
});

t.test('a file whose sha256 differs is refused and not kept', async (t) => {
  const mirror = mkdtempSync(path.join(tmpdir(), 'ec-mirror-'));
  for (const e of manifest.files) {
    mkdirSync(path.dirname(path.join(mirror, e.mirror_path)), { recursive: true });
    copyFileSync(path.join(assetsDir, e.mirror_path), path.join(mirror, e.mirror_path));
  }
  const bad = manifest.files[1]!;
  writeFileSync(path.join(mirror, bad.mirror_path), 'not the real file');
  const dest = mkdtempSync(path.join(tmpdir(), 'ec-fetch-'));
  await t.rejects(fetchAssets({ mirror, dest, log: () => {} }), {
    message: new RegExp(`^${bad.file.replace('.', '\\.')} from .* has sha256 [0-9a-f]{64}, expected ${bad.sha256}: refusing to use it$`),
  });
  t.notOk(existsSync(path.join(dest, bad.file)), 'no bad file left');
  t.notOk(existsSync(`${path.join(dest, bad.file)}.partial`), 'no partial file left');
});

t.test('a mirror without the files says what to set', async (t) => {
  const dest = mkdtempSync(path.join(tmpdir(), 'ec-fetch-'));
  const empty = mkdtempSync(path.join(tmpdir(), 'ec-empty-'));
  await t.rejects(fetchAssets({ mirror: empty, dest, log: () => {} }), {
    message:
      /^cannot fetch models\/tf2_mobilenet_v2_1\.0_224_ptq\.tflite from .*: no such file \(is EDGE_CLASSIFIER_MIRROR .* a folder holding models\/tf2_mobilenet_v2_1\.0_224_ptq\.tflite\?\)$/,
  });
});
