/**
 * `release install` of releases that look fine but are not: a sharp that
 * cannot load, a half-copied dist/ (the self-test in the unpacked release
 * exits 78 naming the part), and a disk too full to unpack into.
 */

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { CLI } from '../helpers/cli.js';
import { makeDevice } from '../helpers/device.js';
import { packedRelease, repack } from '../helpers/release-archive.js';

// Real releases are unpacked and self-tested (and daemons started): more than the default per-file time on a busy machine.
t.setTimeout(360_000);
const out = await mkdtemp(path.join(tmpdir(), 'ec-install-'));
t.teardown(() => rm(out, { recursive: true, force: true }));
const archive = await packedRelease();

t.test('self-test refuses a release whose sharp cannot load and whose dist/ is half-copied (exit 78 inside, each part named)', async (t) => {
  const dev = await makeDevice(t);
  const broken = await repack(archive, out, {
    version: '3.0.0',
    mutate: async (dir) => {
      // A native module for another machine: the file is there, the loader rejects it.
      const lib = path.join(dir, 'node_modules', '@img', `sharp-linux-${process.arch}`, 'lib');
      const addons = (await readdir(lib)).filter((f) => f.endsWith('.node'));
      if (addons.length === 0) throw new Error(`no sharp addon in ${lib}`);
      for (const f of addons) await writeFile(path.join(lib, f), 'not an ELF file');
    },
    // After the program file list is made: a copy that lost a module on the way.
    afterList: async (dir) => rm(path.join(dir, 'dist', 'mqtt', 'publisher.js')),
  });
  const r = await dev.cli(['release', 'install', broken, '--json']);
  t.equal(r.code, 1);
  t.match(r.json, { ok: false, check: 'self-test' });
  t.match(r.json.reason, /exited 78/);
  t.match(r.json.reason, /sharp cannot load/);
  t.match(r.json.reason, /npm rebuild sharp/);
  t.match(r.json.reason, /dist\/mqtt\/publisher\.js is missing/, 'names the missing file');
  // A refusal of this device's making carries doctor's findings: here, no release is current yet.
  t.ok(
    Array.isArray(r.json.doctor) && r.json.doctor.every((c: { status: string }) => c.status === 'warn' || c.status === 'fail'),
    'doctor lines that did not pass',
  );
  t.match(
    r.json.doctor.find((c: { name: string }) => c.name === 'release'),
    { status: 'fail', detail: /no current release/ },
  );
  t.match(r.stderr, /doctor: fail release: no current release/);
  t.same(await readdir(dev.releasesDir), [], 'not installed, and its temporary folder removed');
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
