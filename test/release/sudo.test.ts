/**
 * The sudoers rule fleet bootstrap writes lets the deploy login run
 * `edge-classifier release|model|health|doctor …` as root with any
 * arguments. Under sudo (SUDO_UID set, as sudo sets it) `--root` (a tree
 * the login controls, written as root) and `--node` (a program run as
 * root) are refused before anything runs; without sudo they work. The
 * last case goes through the real `sudo`, which also drops the login's
 * EDGE_CLASSIFIER_ROOT from the environment.
 */

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { CLI, runCli } from '../helpers/cli.js';

const dir = await mkdtemp(path.join(tmpdir(), 'ec-sudo-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const root = path.join(dir, 'root');
// A "Node.js" that would prove it ran as root by leaving a file.
const marker = path.join(dir, 'ran');
const fakeNode = path.join(dir, 'node');
await writeFile(fakeNode, `#!/bin/sh\ntouch ${marker}\n`);
await chmod(fakeNode, 0o755);
const base: NodeJS.ProcessEnv = { ...process.env, EDGE_CLASSIFIER_ROOT: path.join(dir, 'own-root') };
const sudo: NodeJS.ProcessEnv = { ...base, SUDO_UID: '1000', SUDO_GID: '1000', SUDO_USER: 'deploy' };

const json = (stdout: string) => JSON.parse(stdout.trim().split('\n').pop() ?? 'null');

t.test('under sudo, --root and --node are refused by every command the rule allows', async (t) => {
  const cases: [string[], RegExp][] = [
    [['release', 'list', '--root', root], /--root cannot be used through sudo/],
    [['release', 'install', path.join(dir, 'x.tar.gz'), '--node', fakeNode], /--node cannot be used through sudo/],
    [['release', 'activate', '1.0.0', '--root', root, '--node', fakeNode], /--root and --node cannot be used through sudo/],
    [['release', 'rollback', '--root', root], /--root cannot be used through sudo/],
    [['release', 'prune', '--keep', '1', '--root', root], /--root cannot be used through sudo/],
    [['model', 'install', path.join(dir, 'm.tflite'), '--node', fakeNode], /--node cannot be used through sudo/],
    [['model', 'rollback', '--root', root], /--root cannot be used through sudo/],
    [['health', '--root', root], /--root cannot be used through sudo/],
    [['doctor', '--node', fakeNode], /--node cannot be used through sudo/],
  ];
  for (const [args, reason] of cases) {
    const r = await runCli([...args, '--json'], { env: sudo });
    const name = args.slice(0, 2).join(' ');
    t.equal(r.code, 1, `${name}: exit 1`);
    t.match(json(r.stdout), { ok: false, check: 'usage', reason }, name);
    t.match(r.stderr, /usage check failed: .*cannot be used through sudo/, `${name}: says why on stderr`);
  }
  t.notOk(existsSync(marker), 'the --node program never ran');
  t.notOk(existsSync(root), 'nothing was written under --root');
});

t.test('without sudo the flags work; under sudo the commands work without them', async (t) => {
  const own = await runCli(['health', '--root', root, '--json'], { env: base });
  t.equal(own.code, 1, 'not healthy: no daemon there');
  t.match(json(own.stdout), { healthy: false, reasons: [new RegExp(`no health file.*${path.basename(dir)}/root/`)] });
  const plain = await runCli(['health', '--json'], { env: sudo });
  t.match(json(plain.stdout), { healthy: false, reasons: [/no health file.*own-root/] }, "sudo without the flags: the machine's own paths");
  const doctor = await runCli(['doctor', '--node', fakeNode, '--json'], { env: base });
  t.ok(Array.isArray(json(doctor.stdout).checks), 'doctor --node runs without sudo');
  t.ok(existsSync(marker), 'and checks the --node program given');
});

t.test('through sudo itself: it sets SUDO_UID and drops EDGE_CLASSIFIER_ROOT, so neither a flag nor the environment moves the root', async (t) => {
  const probe = spawnSync('sudo', ['-n', '--', 'true'], { encoding: 'utf8' });
  t.equal(probe.status, 0, `sudo -n must work for the user running the tests (as root it does): ${probe.stderr ?? probe.error}`);
  await rm(marker, { force: true }); // left by the test before, which ran it without sudo
  const viaSudo = (args: string[]) => spawnSync('sudo', ['-n', '--', process.execPath, CLI, ...args, '--json'], { encoding: 'utf8', env: base });
  const refused = viaSudo(['release', 'list', '--root', root]);
  t.equal(refused.status, 1, refused.stderr);
  t.match(json(refused.stdout), { ok: false, check: 'usage', reason: /--root cannot be used through sudo/ });
  const doctor = viaSudo(['doctor', '--node', fakeNode]);
  t.match(json(doctor.stdout), { ok: false, check: 'usage', reason: /--node cannot be used through sudo/ });
  t.notOk(existsSync(marker), 'the --node program never ran');
  // `health` only reads: under sudo it reads this machine's own health file, not the one under the login's EDGE_CLASSIFIER_ROOT.
  const health = viaSudo(['health']);
  const file = json(health.stdout)?.file as string | undefined;
  t.equal(file, '/run/edge-classifier/health.json', health.stdout + health.stderr);
});
