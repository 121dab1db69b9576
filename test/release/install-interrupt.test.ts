/** `release install` killed midway leaves nothing activatable; `release prune` keeps the current and previous releases. */

import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import t from 'tap';
import { CLI } from '../helpers/cli.js';
import { makeDevice } from '../helpers/device.js';
import { BASE_VERSION, packedRelease } from '../helpers/release-archive.js';

const run = promisify(execFile);
// Real releases are unpacked and self-tested (and daemons started): more than the default per-file time on a busy machine.
t.setTimeout(360_000);
const out = await mkdtemp(path.join(tmpdir(), 'ec-install-'));
t.teardown(() => rm(out, { recursive: true, force: true }));
const archive = await packedRelease();

t.test('a kill in the middle of an install leaves nothing activatable; the next install cleans up', async (t) => {
  const dev = await makeDevice(t);
  // Its own process group, so that the kill takes tar with it, as a power cut would.
  const child = spawn(process.execPath, [CLI, 'release', 'install', archive], { env: dev.env, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  // Wait for the unpacking to have begun, then kill -9 (a power cut or an OOM kill looks the same).
  for (let i = 0; i < 400 && !/unpacking into/.test(stderr); i++) await sleep(25);
  t.match(stderr, /unpacking into \.install-/);
  await sleep(300);
  process.kill(-child.pid!, 'SIGKILL');
  await new Promise((r) => child.once('exit', r));
  const left = await readdir(dev.releasesDir);
  t.ok(left.length === 1 && left[0]!.startsWith('.install-'), `only a hidden temporary folder: ${left.join(', ')}`);
  const act = await dev.cli(['release', 'activate', BASE_VERSION, '--json']);
  t.equal(act.code, 1);
  t.match(act.json, { ok: false, check: 'not-installed' });
  t.notOk(existsSync(dev.currentLink), 'current never made');
  const list = await dev.cli(['release', 'list', '--json']);
  t.same(list.json.releases, []);
  const again = await dev.cli(['release', 'install', archive, '--json']);
  t.equal(again.code, 0, again.stderr);
  t.match(again.stderr, /removing \.install-.* left by an interrupted command/);
  t.same(await readdir(dev.releasesDir), [BASE_VERSION]);
});

t.test('prune keeps the newest N and never the current or previous one', async (t) => {
  const dev = await makeDevice(t);
  // What prune looks at: release folders with a manifest, the install and activation history, current.
  const manifest = JSON.parse((await run('tar', ['-xzOf', archive, './release.json'])).stdout);
  const history: object[] = [];
  for (const [i, v] of ['1.1.0', '1.2.0', '1.3.0', '1.4.0'].entries()) {
    await mkdir(path.join(dev.releasesDir, v, 'dist'), { recursive: true });
    await writeFile(path.join(dev.releasesDir, v, 'release.json'), JSON.stringify({ ...manifest, version: v }));
    history.push({ at: new Date(Date.UTC(2026, 0, 1 + i)).toISOString(), event: 'installed', version: v });
  }
  // 1.1.0 current, 1.2.0 previous: the two oldest installs.
  history.push({ at: new Date(Date.UTC(2026, 0, 10)).toISOString(), event: 'activated', version: '1.2.0', previous: null });
  history.push({ at: new Date(Date.UTC(2026, 0, 11)).toISOString(), event: 'activated', version: '1.1.0', previous: '1.2.0' });
  await writeFile(path.join(dev.stateDir, 'history.jsonl'), `${history.map((e) => JSON.stringify(e)).join('\n')}\n`);
  await symlink('releases/1.1.0', dev.currentLink);
  const r = await dev.cli(['release', 'prune', '--keep', '1', '--json']);
  t.equal(r.code, 0, r.stderr);
  t.same(r.json.removed, ['1.3.0'], 'newest (1.4.0) kept by --keep 1, current 1.1.0 and previous 1.2.0 always');
  const r0 = await dev.cli(['release', 'prune', '--keep', '0', '--json']);
  t.same(r0.json.removed, ['1.4.0']);
  t.same((await readdir(dev.releasesDir)).sort(), ['1.1.0', '1.2.0']);
  t.equal(await readlink(dev.currentLink), 'releases/1.1.0');
  const list = await dev.cli(['release', 'list', '--json']);
  t.match(list.json, {
    current: '1.1.0',
    previous: '1.2.0',
    releases: [
      { version: '1.2.0', status: 'previous' },
      { version: '1.1.0', status: 'current' },
    ],
  });
  const events = (await readFile(path.join(dev.stateDir, 'history.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  t.same(
    events.filter((e) => e.event === 'pruned').map((e) => e.version),
    ['1.3.0', '1.4.0'],
  );
});
