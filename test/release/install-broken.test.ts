/**
 * `release install` of releases that look fine but are not: a sharp that
 * cannot load, a half-copied dist/ (the self-test in the unpacked release
 * exits 78 naming the part), and a disk too full to unpack into.
 */

import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { CLI } from '../helpers/cli.js';
import { makeDevice } from '../helpers/device.js';
import { packedRelease, repack, sha256Of } from '../helpers/release-archive.js';

const run = promisify(execFile);
// Real releases are unpacked and self-tested (and daemons started): more than the default per-file time on a busy machine.
t.setTimeout(360_000);
const out = await mkdtemp(path.join(tmpdir(), 'ec-install-'));
t.teardown(() => rm(out, { recursive: true, force: true }));
const archive = await packedRelease();

t.test('self-test refuses a release whose sharp cannot load, or whose dist/ is half-copied (exit 78 inside, named)', async (t) => {
  const dev = await makeDevice(t);
  const brokenSharp = await repack(archive, out, {
    version: '3.0.0',
    mutate: async (dir) => {
      // A native module for another machine: the file is there, the loader rejects it.
      const lib = path.join(dir, 'node_modules', '@img', `sharp-linux-${process.arch}`, 'lib');
      const addons = (await readdir(lib)).filter((f) => f.endsWith('.node'));
      if (addons.length === 0) throw new Error(`no sharp addon in ${lib}`);
      for (const f of addons) await writeFile(path.join(lib, f), 'not an ELF file');
    },
  });
  const r = await dev.cli(['release', 'install', brokenSharp, '--json']);
  t.equal(r.code, 1);
  t.match(r.json, { ok: false, check: 'self-test' });
  t.match(r.json.reason, /exited 78/);
  t.match(r.json.reason, /sharp cannot load/);
  t.match(r.json.reason, /npm rebuild sharp/);
  t.same(
    (await readdir(dev.releasesDir)).filter((f) => !f.startsWith('.')),
    [],
    'not installed',
  );
  t.same(await readdir(dev.releasesDir), [], 'its temporary folder removed');

  const halfCopied = await repack(archive, out, { version: '3.0.1' });
  // Cut the archive's dist after its file list was made: unpack, drop a module, pack without updating the list.
  const work = await mkdtemp(path.join(out, 'half-'));
  await run('tar', ['-xzf', halfCopied, '-C', work]);
  await rm(path.join(work, 'dist', 'mqtt', 'publisher.js'));
  await run('tar', ['-C', work, '--use-compress-program=gzip -1', '-cf', halfCopied, '.']);
  await writeFile(`${halfCopied}.sha256`, `${await sha256Of(halfCopied)}\n`);
  await rm(work, { recursive: true, force: true });
  const h = await dev.cli(['release', 'install', halfCopied, '--json']);
  t.equal(h.code, 1);
  t.match(h.json, { ok: false, check: 'self-test' });
  t.match(h.json.reason, /dist\/mqtt\/publisher\.js/, 'names the missing file');
});

t.test('full disk: refused before unpacking, with the sizes and the prune fix', async (t) => {
  const dev = await makeDevice(t);
  // A real small file system over the releases folder, in a private mount namespace.
  const releases = dev.releasesDir;
  const script = `mkdir -p "${releases}" && mount -t tmpfs -o size=40m tmpfs "${releases}" && exec "$0" "$@"`;
  const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(
      'unshare',
      [
        '--mount',
        '--propagation',
        'private',
        ...(process.getuid?.() === 0 ? [] : ['--user', '--map-root-user']),
        'sh',
        '-c',
        script,
        process.execPath,
        CLI,
        'release',
        'install',
        archive,
        '--json',
      ],
      { env: dev.env },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
  t.equal(r.code, 1, r.stderr);
  const json = JSON.parse(r.stdout.trim().split('\n').pop()!);
  t.match(json, { ok: false, check: 'disk' });
  t.match(json.reason, /needs \d+ MiB .* \d+ MiB free/);
  t.match(json.fix, /release prune --keep 2/);
  t.notOk(existsSync(dev.currentLink));
});
