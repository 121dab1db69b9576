/**
 * `release install`: a good archive, and what must be refused before
 * anything is unpacked — wrong checksum, no checksum, a truncated archive,
 * another arch, another Node.js ABI.
 */

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { makeDevice } from '../helpers/device.js';
import { BASE_VERSION, manifestOnlyArchive, packedRelease, sha256Of } from '../helpers/release-archive.js';

const run = promisify(execFile);
// Real releases are unpacked and self-tested (and daemons started): more than the default per-file time on a busy machine.
t.setTimeout(360_000);
const out = await mkdtemp(path.join(tmpdir(), 'ec-install-'));
t.teardown(() => rm(out, { recursive: true, force: true }));
const archive = await packedRelease();

t.test('install: a good archive becomes releases/<version>, list shows it, installing again changes nothing', async (t) => {
  const dev = await makeDevice(t);
  const r = await dev.cli(['release', 'install', archive, '--json']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.json, { ok: true, version: BASE_VERSION, already: false });
  t.match(r.stderr, /self-test: cat_720p\.jpg → Egyptian cat/, 'the live model classified a sample frame');
  t.same(await readdir(dev.releasesDir), [BASE_VERSION], 'only the release, no temporary folder left');
  t.notOk(existsSync(dev.currentLink), 'install does not activate');
  const again = await dev.cli(['release', 'install', archive, '--json']);
  t.match(again.json, { ok: true, already: true });
  const list = await dev.cli(['release', 'list', '--json']);
  t.match(list.json, { current: null, releases: [{ version: BASE_VERSION, status: 'installed', arch: process.arch }] });
});

t.test('install refuses: checksum, missing .sha256, truncated archive, another arch, another Node.js ABI', async (t) => {
  const dev = await makeDevice(t);
  const refused = async (file: string, check: string, match: RegExp) => {
    const r = await dev.cli(['release', 'install', file, '--json']);
    t.equal(r.code, 1, `${path.basename(file)}: exit 1`);
    t.match(r.json, { ok: false, check }, `${check} check`);
    t.match(r.json?.reason, match);
    // doctor's findings only for what the device can fix (its Node.js here), not for a bad archive.
    t.equal(Array.isArray(r.json?.doctor), check === 'node-abi', `${check}: doctor findings ${check === 'node-abi' ? 'attached' : 'not attached'}`);
    t.same(existsSync(dev.releasesDir) ? (await readdir(dev.releasesDir)).filter((f) => !f.startsWith('.')) : [], [], 'nothing installed');
    return r;
  };

  const bad = path.join(out, 'badsum.tar.gz');
  await copyFile(archive, bad);
  await writeFile(`${bad}.sha256`, `${'0'.repeat(64)}  badsum.tar.gz\n`);
  await refused(bad, 'checksum', /has sha256 [0-9a-f]{64}, but badsum\.tar\.gz\.sha256 says 0{64}/);

  const nosum = path.join(out, 'nosum.tar.gz');
  await copyFile(archive, nosum);
  await refused(nosum, 'checksum', /no checksum file/);

  // A copy cut short: with the original checksum it fails the checksum; with a checksum of the
  // cut file (a tool that summed what it had) the archive itself cannot be read.
  const cut = path.join(out, 'cut.tar.gz');
  await copyFile(archive, cut);
  await truncate(cut, Math.floor((await stat(archive)).size / 2));
  await copyFile(`${archive}.sha256`, `${cut}.sha256`);
  await refused(cut, 'checksum', /damaged or incomplete/);
  await writeFile(`${cut}.sha256`, `${await sha256Of(cut)}  cut.tar.gz\n`);
  await refused(cut, 'archive', /truncated|unexpected|EOF/i);

  const manifest = JSON.parse((await run('tar', ['-xzOf', archive, './release.json'])).stdout);
  const otherArch = process.arch === 'arm64' ? 'x64' : 'arm64';
  const armDir = await mkdtemp(path.join(out, 'arch-'));
  const arm = await manifestOnlyArchive(armDir, { ...manifest, version: '2.0.0', arch: otherArch });
  const a = await refused(
    arm,
    'arch',
    new RegExp(`built for linux-${otherArch}, but the service's Node.js \\(${process.execPath.replace(/[/.]/g, '\\$&')}, from ExecStart`),
  );
  t.match(a.json.fix, new RegExp(`linux-${process.arch}\\.tar\\.gz`));

  const abiDir = await mkdtemp(path.join(out, 'abi-'));
  const abi = await manifestOnlyArchive(abiDir, { ...manifest, version: '2.0.1', node_abi: '93', node_version: 'v16.20.2' });
  await refused(
    abi,
    'node-abi',
    new RegExp(`built with Node\\.js v16\\.20\\.2 \\(ABI 93\\), but the service runs .* ${process.version} \\(ABI ${process.versions.modules}`),
  );

  const history = (await readFile(path.join(dev.stateDir, 'history.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  t.same(
    history.map((e) => [e.event, e.check]),
    [
      ['install-failed', 'checksum'],
      ['install-failed', 'checksum'],
      ['install-failed', 'checksum'],
      ['install-failed', 'archive'],
      ['install-failed', 'arch'],
      ['install-failed', 'node-abi'],
    ],
  );
});
