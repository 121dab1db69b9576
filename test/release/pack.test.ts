/** `pack`: a real archive of this build (name, checksum, manifest, contents) and the refusal to pack for another arch. */

import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { repoRoot } from '../helpers/assets.js';
import { runCli } from '../helpers/cli.js';
import { BASE_VERSION, packedRelease } from '../helpers/release-archive.js';

const run = promisify(execFile);
// Real releases are unpacked and self-tested (and daemons started): more than the default per-file time on a busy machine.
t.setTimeout(360_000);
const out = await mkdtemp(path.join(tmpdir(), 'ec-install-'));
t.teardown(() => rm(out, { recursive: true, force: true }));
const archive = await packedRelease();

t.test('pack: archive name, .sha256 as sha256sum writes it, manifest from this machine', async (t) => {
  t.equal(path.basename(archive), `edge-classifier-${BASE_VERSION}-linux-${process.arch}.tar.gz`);
  const sum = (await run('sha256sum', [archive])).stdout.split(/\s+/)[0];
  t.equal((await readFile(`${archive}.sha256`, 'utf8')).trim(), `${sum}  ${path.basename(archive)}`, 'sha256sum -c can check it');
  const manifest = JSON.parse((await run('tar', ['-xzOf', archive, './release.json'])).stdout);
  const head = (await run('git', ['-C', repoRoot, 'rev-parse', 'HEAD'])).stdout.trim();
  t.match(manifest, {
    name: 'edge-classifier',
    version: BASE_VERSION,
    commit: head,
    platform: 'linux',
    arch: process.arch,
    node_abi: process.versions.modules,
    node_version: process.version,
  });
  t.ok(Math.abs(Date.parse(manifest.built_at) - Date.now()) < 24 * 3600_000, 'build date is an ISO date');
  const list = (await run('tar', ['-tzf', archive], { maxBuffer: 1 << 26 })).stdout.split('\n');
  for (const f of [
    './dist/cli.js',
    './package.json',
    './systemd/edge-classifier.service',
    './node_modules/sharp/package.json',
    './node_modules/tfjs-tflite-node/package.json',
    './models/tf2_mobilenet_v2_1.0_224_ptq.tflite',
    './program-files.json',
  ]) {
    t.ok(list.includes(f), `${f} in the archive`);
  }
  t.notOk(
    list.some((f) => f.startsWith('./node_modules/tap/') || f.startsWith('./node_modules/typescript/')),
    'no dev dependencies',
  );
  t.ok(
    manifest.native.some((n: string) => n.startsWith('tfjs-tflite-node@')) &&
      manifest.native.some((n: string) => n.startsWith('sharp@') || n.startsWith('@img/sharp-')),
    `native parts listed: ${manifest.native.join(', ')}`,
  );
});

t.test('pack --arch for another arch refuses, naming each part that is compiled at install (epoll), not the prebuilt TFLite library', async (t) => {
  const other = process.arch === 'arm64' ? 'x64' : 'arm64';
  const r = await runCli(['pack', '--arch', other, '--out', out]);
  t.equal(r.code, 1);
  t.match(r.stderr, new RegExp(`cannot pack for linux-${other}`));
  // The TFLite C library is prebuilt for both arches inside tfjs-tflite-node, whose addon is never built.
  t.notMatch(r.stderr, /tfjs-tflite-node/, 'does not name the TFLite library package');
  t.match(r.stderr, /epoll@[\d.]+/, "names onoff's epoll");
  t.match(r.stderr, /builder host/, 'says where to build instead');
  t.notOk(
    (await readdir(out)).some((f) => f.endsWith('.tar.gz')),
    'no archive written',
  );
});
