/**
 * The shipped unit, checked by systemd's own tools: `systemd-analyze
 * verify`, and `systemd-analyze security` (offline) with an exposure of at
 * most 3.0, every setting it marks as not used named in the unit (used in
 * part, or explained in a comment). `edge-classifier unit` renders it for a
 * root and a Node.js.
 */

import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { repoRoot } from '../helpers/assets.js';
import { runCli } from '../helpers/cli.js';

const run = promisify(execFile);
const UNIT = path.join(repoRoot, 'systemd', 'edge-classifier.service');

t.test('systemd-analyze verify accepts the unit', async (t) => {
  const r = await run('systemd-analyze', ['verify', UNIT]).then(
    (x) => ({ code: 0, ...x }),
    (e) => ({ code: e.code as number, stdout: e.stdout as string, stderr: e.stderr as string }),
  );
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stderr.trim(), '', 'no warnings');
});

t.test('systemd-analyze security: exposure ≤ 3.0, and every setting not used is named in the unit', async (t) => {
  const { stdout } = await run('systemd-analyze', ['security', '--offline=yes', '--no-pager', UNIT]);
  const overall = /Overall exposure level for edge-classifier\.service: (\d+\.\d)/.exec(stdout);
  t.ok(overall, 'an overall exposure line');
  const exposure = Number(overall![1]);
  t.ok(exposure <= 3.0, `exposure ${exposure} ≤ 3.0`);
  const text = await readFile(UNIT, 'utf8');
  const missing = stdout
    .split('\n')
    .filter((l) => l.startsWith('✗'))
    .map((l) => l.slice(1).trim().split(/\s/)[0]!.split(/[=~/]/)[0]!)
    .filter((name) => !text.includes(`${name}=`));
  t.same(missing, [], 'each ✗ setting appears in the unit, as a setting or in the comment saying why it cannot be used');
  for (const s of ['MemoryDenyWriteExecute', 'ProtectKernelTunables', 'PrivateDevices', 'PrivateNetwork']) {
    t.match(text, new RegExp(`^# - ${s}=`, 'm'), `${s} explained`);
  }
  t.match(text, /^NotifyAccess=main$/m);
  t.match(text, /^CapabilityBoundingSet=$/m);
  t.match(text, /^SystemCallFilter=@system-service$/m);
  t.match(text, /^UMask=0077$/m);
  t.match(text, /^Environment=MALLOC_ARENA_MAX=2$/m, 'at most 2 malloc arenas: threads do not each keep freed memory resident');
});

t.test('edge-classifier unit: the shipped unit, moved under a root, with another Node.js', async (t) => {
  const plain = await runCli(['unit']);
  t.equal(plain.code, 0);
  t.equal(plain.stdout, await readFile(UNIT, 'utf8'), 'root / and /usr/bin/node: the file as shipped');
  const root = await mkdtemp(path.join(tmpdir(), 'ec-unit-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const r = await runCli(['unit', '--root', root, '--node', process.execPath]);
  t.match(
    r.stdout,
    new RegExp(
      `^ExecStart=${process.execPath} --max-semi-space-size=1 ${root}/opt/edge-classifier/current/dist/cli\\.js run --config ${root}/etc/edge-classifier/config\\.yaml$`,
      'm',
    ),
  );
  t.match(r.stdout, new RegExp(`^WorkingDirectory=${root}/opt/edge-classifier/current$`, 'm'));
  for (const p of ['/opt/edge-classifier', '/etc/edge-classifier', '/var/lib/edge-classifier']) {
    t.notOk(r.stdout.split(`${root}${p}`).join('').includes(p), `every ${p} moved under the root`);
  }
  const file = path.join(root, 'edge-classifier.service');
  await writeFile(file, r.stdout);
  const v = await run('systemd-analyze', ['verify', file]).then(
    () => 0,
    (e) => e.code as number,
  );
  t.equal(v, 0, 'the rendered unit verifies too');
});
