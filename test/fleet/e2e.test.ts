/**
 * The fleet end to end, as an operator runs it: `fleet build` a release on
 * a builder host (which runs `pack` there), `fleet bootstrap` three fresh
 * devices with it, a push of the next release killed mid-transfer, `fleet push` with a canary
 * while one device's health gate fails (and the killed transfer resumes),
 * `fleet status` with an unreachable host and a changed host key, `fleet
 * doctor`, a model alone without restarting the daemons (one of which
 * cannot take it and goes back to its model), a bad model,
 * `--max-fail`, archives for another arch or Node.js ABI, a damaged
 * upload, `fleet rollback`, and the same rollout through the Ansible
 * playbook.
 *
 * Every device is a real sshd on loopback with its own root folder (see
 * helpers/fleet-lab.ts); the device-side commands are the real ones from the
 * release installed there; systemd is the stand-in. One sequence of steps
 * shares the devices (each step starts where the previous one left them),
 * to keep the suite's time down.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { labels, model, repoRoot } from '../helpers/assets.js';
import { sha256, startFleetLab } from '../helpers/fleet-lab.js';
import { manifestOnlyArchive, repack } from '../helpers/release-archive.js';

// One long sequence on real devices: minutes, not the default two.
t.setTimeout(600_000);

const packs = mkdtempSync(path.join(tmpdir(), 'edge-packs-'));
t.teardown(() => rmSync(packs, { recursive: true, force: true }));
const archive = (v: string, arch = 'x64') => path.join(packs, `edge-classifier-${v}-linux-${arch}.tar.gz`);

const fl = await startFleetLab(t, ['t1', 't2', 't3', 'rekeyed'], { t3: { builder: true } });
const DEVICES = ['t1', 't2', 't3'];
/** The model pushed alone; t2's daemon cannot take it (see the canary test). */
const FAULT_MODEL = model('mobilenet_v1_0.25_224_full_int8.tflite');

/** Rows of a fleet table by host: the cells split on runs of 2+ spaces. */
function rows(table: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const line of table.split('\n')) {
    const cells = line.split(/ {2,}/);
    if (cells.length >= 3 && cells[0] !== 'HOST') out[cells[0]!] = cells;
  }
  return out;
}
/** The JSON lines of a fleet --json run, by host. */
function byHost(stdout: string): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    const o = JSON.parse(line) as Record<string, unknown>;
    if (typeof o.host === 'string') out[o.host] = o;
  }
  return out;
}
const history = (n: string): number => {
  const f = path.join(fl.device(n).root, 'var', 'lib', 'edge-classifier', 'history.jsonl');
  return existsSync(f)
    ? readFileSync(f, 'utf8')
        .split('\n')
        .filter((l) => l !== '').length
    : 0;
};
const staging = (n: string) => path.join(fl.device(n).target.home, '.cache', 'edge-classifier', 'staging');

t.test('fleet build: the first release, packed on the builder host of its arch', async (t) => {
  // t3 has built this lockfile before: its node_modules is there (linked
  // from this checkout's), so the build goes straight to pack. A first build
  // runs npm ci there (about a minute here).
  const build = path.join(fl.device('t3').target.home, '.cache', 'edge-classifier', 'build');
  mkdirSync(path.join(build, 'src'), { recursive: true });
  execFileSync('cp', ['-al', path.join(repoRoot, 'node_modules'), path.join(build, 'src', 'node_modules')]);
  writeFileSync(path.join(build, 'installed'), `${sha256(path.join(repoRoot, 'package-lock.json'))} ${process.versions.modules}\n`);

  const wrong = await fl.fleet(['build', '--arch', 'arm64']);
  t.equal(wrong.code, 1);
  t.match(wrong.stderr, 'no reachable builder of arch arm64 (t3 is x64)');

  const built = await fl.fleet(['build', '--arch', 'x64', '--version', '1.0.0', '--out', packs]);
  t.equal(built.code, 0, built.stderr);
  t.equal(built.stdout.trim(), archive('1.0.0'));
  t.match(built.stderr, 't3: dependencies up to date');
  const manifest = JSON.parse(execFileSync('tar', ['-xzOf', archive('1.0.0'), './release.json']).toString()) as {
    version: string;
    arch: string;
    commit: string;
  };
  t.same([manifest.version, manifest.arch], ['1.0.0', 'x64']);
  t.equal(manifest.commit, execFileSync('git', ['-C', repoRoot, 'rev-parse', 'HEAD']).toString().trim(), 'built from this checkout');
  // The next release: the same program repacked as 1.1.0, as a build of other code would come.
  t.equal(await repack(archive('1.0.0'), packs, { version: '1.1.0' }), archive('1.1.0'));
});

t.test('bootstrap: three fresh devices set up in one command, first release running, doctor run', async (t) => {
  const r = await fl.fleet(['bootstrap', 't1', 't2', 't3', '--archive', archive('1.0.0'), '--config', fl.config, '--health-timeout', '30']);
  t.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  const table = rows(r.stdout.split('\n\n')[0]!);
  for (const n of DEVICES) {
    t.same(table[n]!.slice(1, 4), ['updated', '?', '1.0.0'], r.stdout);
    t.equal(fl.current(n), '1.0.0');
    const root = fl.device(n).root;
    t.match(
      readFileSync(path.join(root, 'etc', 'passwd'), 'utf8'),
      /^edge-classifier:x:\d+:\d+::\/var\/lib\/edge-classifier:\/usr\/sbin\/nologin$/m,
      'service user',
    );
    const group = readFileSync(path.join(root, 'etc', 'group'), 'utf8');
    t.match(group, /^video:x:44:pi,edge-classifier$/m);
    t.match(group, /^gpio:x:997:pi,edge-classifier$/m);
    const sudoers = path.join(root, 'etc', 'sudoers.d', 'edge-classifier');
    const cmd = '/usr/local/bin/edge-classifier';
    t.match(
      readFileSync(sudoers, 'utf8'),
      `\n${fl.lab.user} ALL=(root) NOPASSWD: ${cmd} release *, ${cmd} model *, ${cmd} health, ${cmd} health *, ${cmd} doctor, ${cmd} doctor *\n`,
    );
    t.equal(statSync(sudoers).mode & 0o777, 0o440);
    t.doesNotThrow(() => execFileSync('visudo', ['-cqf', sudoers]), 'visudo accepts the rule');
    t.ok(existsSync(path.join(root, 'etc', 'systemd', 'system', 'edge-classifier.service')), 'unit');
    t.equal(readFileSync(path.join(root, 'etc', 'edge-classifier', 'config.yaml'), 'utf8'), readFileSync(fl.config, 'utf8'), 'configuration');
  }
  t.match(r.stdout, /^HOST\s+DOCTOR\s+DETAIL$/m, 'doctor ran');
});

const partialOf = (n: string) => path.join(staging(n), '.partial', path.basename(archive('1.1.0')));

t.test('a push killed mid-transfer leaves the device as it was', async (t) => {
  const before = history('t3');
  const child = spawn(process.execPath, [path.join(repoRoot, 'dist', 'cli.js'), 'fleet', 'push', archive('1.1.0'), '--limit', 't3', '--bwlimit', '4000'], {
    env: { ...process.env, EDGE_CLASSIFIER_INVENTORY: fl.inventory },
    stdio: 'ignore',
    detached: true,
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  // rsync fills a hidden temporary file in the staging folder while it receives.
  const receiving = (): number => {
    if (!existsSync(staging('t3'))) return 0;
    const tmp = readdirSync(staging('t3')).find((f) => f.startsWith(`.${path.basename(archive('1.1.0'))}.`));
    return tmp ? statSync(path.join(staging('t3'), tmp)).size : 0;
  };
  const deadline = Date.now() + 30_000;
  while (receiving() < 4e6 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.ok(receiving() >= 4e6, 'the transfer was under way');
  process.kill(-child.pid!, 'SIGKILL'); // the operator's machine dies: fleet, rsync and ssh at once
  await exited;
  for (let i = 0; i < 50 && !existsSync(partialOf('t3')); i++) await new Promise((r) => setTimeout(r, 100));
  t.equal(fl.current('t3'), '1.0.0');
  t.equal(history('t3'), before, 'no install was started');
  t.notOk(existsSync(path.join(staging('t3'), path.basename(archive('1.1.0')))), 'no file under the final name');
  const kept = statSync(partialOf('t3')).size;
  t.ok(kept >= 4e6 && kept < statSync(archive('1.1.0')).size, `the part received is kept: ${kept} bytes`);
});

t.test('push with a canary while one device fails its health gate: it alone rolls back', async (t) => {
  // Device t2 cannot run 1.1.0 under its unit: the daemon exits at start
  // (as with a native module this device lacks). Its self-test at install,
  // outside the unit, passes; only the health gate can catch it.
  // Nor can its daemon take FAULT_MODEL (used by "a model alone" below): a
  // reload (SIGHUP) to a configuration naming it (its sha256, looked for
  // with the YAML's spaces, quotes and line folds removed) is ignored, so
  // the daemon keeps its old model and only the model's health gate sees it.
  const fault = path.join(fl.lab.dir, 'fault.mjs');
  writeFileSync(
    fault,
    "import { readFileSync, realpathSync } from 'node:fs';\n" +
      "let main = ''; try { main = realpathSync(process.argv[1] ?? ''); } catch {}\n" +
      "if (main.includes('/releases/' + process.env.EDGE_TEST_FAULT_RELEASE + '/')) { process.stderr.write('this release cannot run on this device (fault injected by the test)\\n'); process.exit(1); }\n" +
      'const on = process.on.bind(process);\n' +
      "process.on = (event, listener) => on(event, event !== 'SIGHUP' ? listener : (...a) => {\n" +
      "  let config = ''; try { config = readFileSync(process.argv[process.argv.indexOf('--config') + 1], 'utf8'); } catch {}\n" +
      "  if (config.replace(/[\\s\\\\\"]/g, '').includes(process.env.EDGE_TEST_FAULT_MODEL)) process.stderr.write('reload ignored: this device cannot run that model (fault injected by the test)\\n');\n" +
      '  else listener(...a);\n' +
      '});\n',
  );
  const dropins = path.join(fl.device('t2').root, 'etc', 'systemd', 'system', 'edge-classifier.service.d');
  mkdirSync(dropins, { recursive: true });
  writeFileSync(
    path.join(dropins, 'fault.conf'),
    `[Service]\nEnvironment=NODE_OPTIONS=--import=${fault}\nEnvironment=EDGE_TEST_FAULT_RELEASE=1.1.0\nEnvironment=EDGE_TEST_FAULT_MODEL=${sha256(FAULT_MODEL)}\n`,
  );

  const kept = statSync(partialOf('t3')).size;
  const r = await fl.fleet(['push', archive('1.1.0'), '--limit', 't1,t2,t3', '--canary', '1', '--batch', '2', '--health-timeout', '20']);
  t.equal(r.code, 1, 'a host failed');
  t.comment(r.stdout);
  const table = rows(r.stdout);
  t.same(table.t1!.slice(1, 4), ['updated', '1.0.0', '1.1.0'], r.stdout);
  t.same(table.t2!.slice(1, 4), ['rolled back', '1.0.0', '1.0.0']);
  t.same(table.t3!.slice(1, 4), ['updated', '1.0.0', '1.1.0']);
  t.match(r.stdout, /^2 of 3 hosts ok/m);
  t.match(r.stderr, /push: canary \(1\/2\): t1\n/);
  t.ok(r.stderr.indexOf('t1: updated') < r.stderr.indexOf('push: batch 1 (2/2): t2, t3'), 'the canary ended before the batch started');
  const resumed = /t3: sent ([\d.]+) MB \(([\d.]+) MB already there\)/.exec(r.stderr);
  t.ok(resumed && Number(resumed[2]) * 1e6 <= kept + 1e5 && Number(resumed[2]) > 0, `t3's interrupted transfer resumed: ${resumed?.[0]}`);
  t.same(
    DEVICES.map((n) => fl.current(n)),
    ['1.1.0', '1.0.0', '1.1.0'],
    'where each device ended, read from its own current link',
  );
});

t.test('fleet status: one row per host, from each daemon; unreachable and re-keyed hosts named', async (t) => {
  await fl.lab.target('rekeyed').rotateHostKey();
  const r = await fl.fleet(['status', '--limit', 't1,t2,t3,gone,rekeyed']);
  t.equal(r.code, 1);
  t.comment(r.stdout);
  const table = rows(r.stdout);
  const startSha = sha256(model('mobilenet_v1_0.25_128_quant.tflite')).slice(0, 12);
  for (const [n, v] of [
    ['t1', '1.1.0'],
    ['t2', '1.0.0'],
    ['t3', '1.1.0'],
  ] as const) {
    t.same(table[n]!.slice(1, 4), ['healthy', v, `mobilenet_v1_0.25_128_quant ${startSha}`], r.stdout);
    t.match(table[n]![4], /^\d+[smhd].* ago$/, 'since');
    t.match(table[n]![5], /^\d+\.\d$/, 'fps');
    t.equal(table[n]![6], '0', 'no problems');
  }
  t.equal(table.gone![1], 'unreachable');
  t.equal(table.rekeyed![1], 'host key changed');
  t.match(r.stdout, /rekeyed: if the device was reinstalled, check that fingerprint/);
});

t.test("fleet doctor: each host's checks", async (t) => {
  const r = await fl.fleet(['doctor', '--limit', 't1', '--json']);
  const row = JSON.parse(r.stdout.trim().split('\n')[0]!) as { host: string; report: { checks: { name: string; status: string }[] } };
  t.equal(row.host, 't1');
  t.ok(row.report.checks.length > 3, `${row.report.checks.length} checks`);
  t.ok(row.report.checks.every((c) => ['ok', 'warn', 'fail'].includes(c.status)));
});

t.test('a model alone, with a canary while one daemon fails its gate: it alone goes back to its model, no daemon restarts', async (t) => {
  const m = FAULT_MODEL;
  const startSha = sha256(model('mobilenet_v1_0.25_128_quant.tflite'));
  // Right after the canary test t2's daemon may still be writing its first health file.
  for (let i = 0; i < 100 && DEVICES.some((n) => fl.healthFile(n) === null); i++) await new Promise((r) => setTimeout(r, 200));
  const before = DEVICES.map((n) => fl.healthFile(n)!.pid);
  const r = await fl.fleet([
    'push',
    '--model',
    m,
    '--labels',
    labels('imagenet_labels.txt'),
    '--limit',
    't1,t2,t3',
    '--canary',
    '1',
    '--health-timeout',
    '20',
    '--json',
  ]);
  t.equal(r.code, 1, 'a host failed');
  const out = byHost(r.stdout);
  t.same(
    DEVICES.map((n) => out[n]!.status),
    ['updated', 'rolled back', 'updated'],
    r.stdout,
  );
  t.match(out.t2!.detail, /reload/, "t2's detail says why");
  const stored = path.join(fl.device('t1').root, 'var', 'lib', 'edge-classifier', 'models', sha256(m), path.basename(m));
  t.ok(
    readFileSync(path.join(fl.device('t1').root, 'etc', 'edge-classifier', 'config.yaml'), 'utf8').includes(stored),
    "t1's config names the stored model on one line",
  );
  t.match(r.stderr, /push model: canary \(1\/2\): t1\n/, 't1 is the canary');
  t.same(
    DEVICES.map((n) => fl.healthFile(n)!.pid),
    before,
    'same daemon processes',
  );
  t.same(
    DEVICES.map((n) => fl.healthFile(n)!.model?.sha256),
    [sha256(m), startSha, sha256(m)],
    'each daemon runs the model it ended on',
  );
  const status = rows((await fl.fleet(['status', '--limit', 't1,t2,t3'])).stdout);
  t.same(
    DEVICES.map((n) => status[n]![3]),
    [
      `mobilenet_v1_0.25_224_full_int8 ${sha256(m).slice(0, 12)}`,
      `mobilenet_v1_0.25_128_quant ${startSha.slice(0, 12)}`,
      `mobilenet_v1_0.25_224_full_int8 ${sha256(m).slice(0, 12)}`,
    ],
    'fleet status: the MODEL column',
  );
});

t.test('a model that does not load: refused on the canary, the rest untouched', async (t) => {
  const good = sha256(FAULT_MODEL);
  const t2Model = sha256(model('mobilenet_v1_0.25_128_quant.tflite'));
  const pids = DEVICES.map((n) => fl.healthFile(n)!.pid);
  const r = await fl.fleet(['push', '--model', model('model_invoking_error.tflite'), '--limit', 't1,t2,t3', '--health-timeout', '20', '--json']);
  t.equal(r.code, 1);
  const out = byHost(r.stdout);
  t.equal(out.t1!.status, 'refused', JSON.stringify(out.t1));
  t.same([out.t2!.status, out.t3!.status], ['skipped', 'skipped']);
  t.same(
    DEVICES.map((n) => fl.healthFile(n)!.model?.sha256),
    [good, t2Model, good],
  );
  t.same(
    DEVICES.map((n) => fl.healthFile(n)!.pid),
    pids,
  );
});

t.test('--max-fail 0: the first failure stops the rollout; hosts not reached stay untouched', async (t) => {
  const t3History = history('t3');
  const r = await fl.fleet([
    'push',
    archive('1.1.0'),
    '--limit',
    't2,t3',
    '--canary',
    '0',
    '--batch',
    '1',
    '--max-fail',
    '0',
    '--health-timeout',
    '20',
    '--json',
  ]);
  t.equal(r.code, 1);
  const out = byHost(r.stdout);
  t.same([out.t2!.status, out.t3!.status], ['rolled back', 'skipped']);
  t.match(out.t3!.detail, '1 host failed, more than --max-fail allows (0)');
  t.equal(fl.current('t2'), '1.0.0');
  t.equal(history('t3'), t3History, 't3: nothing happened');
  t.same(
    readdirSync(staging('t3')).filter((f) => f !== '.partial'),
    [],
    't3: nothing sent',
  );
});

/** The 1.0.0 manifest with changes, as the only member of an archive (with its .sha256). */
function manifestArchive(changes: Record<string, unknown>): Promise<string> {
  const m = JSON.parse(execFileSync('tar', ['-xzOf', archive('1.0.0'), './release.json']).toString()) as Record<string, unknown>;
  return manifestOnlyArchive(packs, { ...m, ...changes });
}

t.test('another arch or Node.js ABI: refused by each device, each says why; an unreachable host named', async (t) => {
  const currents = DEVICES.map((n) => fl.current(n));
  // Named for arm64: fleet refuses it before sending anything.
  const arm = await manifestArchive({ version: '2.0.0', arch: 'arm64' });
  const r1 = await fl.fleet(['push', arm, '--limit', 't1,t2,gone', '--canary', '0', '--max-fail', '100%', '--json']);
  t.equal(r1.code, 1);
  const o1 = byHost(r1.stdout);
  for (const n of ['t1', 't2']) {
    t.equal(o1[n]!.status, 'refused', `${n}: ${JSON.stringify(o1[n])}`);
    t.match(o1[n]!.detail, /arm64/);
  }
  t.equal(o1.gone!.status, 'unreachable');
  // Named for this arch but built for another Node.js: the device refuses it.
  const abi = await manifestArchive({ version: '2.0.1', node_abi: '1' });
  const o2 = byHost((await fl.fleet(['push', abi, '--limit', 't3', '--canary', '0', '--json'])).stdout);
  t.equal(o2.t3!.status, 'refused', JSON.stringify(o2.t3));
  t.match(o2.t3!.detail, new RegExp(`ABI.*${process.versions.modules}|${process.versions.modules}.*ABI`, 'i'));
  t.same(
    DEVICES.map((n) => fl.current(n)),
    currents,
    'no device changed',
  );
});

t.test('a damaged upload on one device is caught there by its sha256; an archive damaged here is refused before any host', async (t) => {
  // A file under the final name with the right size and time but other bytes:
  // rsync's quick check keeps it, the device's sha256 check must not.
  const a = archive('1.1.0');
  const bad = path.join(staging('t2'), path.basename(a));
  writeFileSync(bad, Buffer.alloc(statSync(a).size, 7));
  utimesSync(bad, statSync(a).atime, statSync(a).mtime);
  const o = byHost((await fl.fleet(['push', a, '--limit', 't2', '--canary', '0', '--json'])).stdout).t2!;
  t.equal(o.status, 'refused', JSON.stringify(o));
  t.match(o.detail, /sha256/);
  t.equal(fl.current('t2'), '1.0.0');
  t.notOk(existsSync(bad), 'the damaged copy is removed; the next push sends it again');

  const copy = path.join(packs, 'damaged', path.basename(a));
  mkdirSync(path.dirname(copy));
  writeFileSync(copy, readFileSync(a).subarray(0, 1_000_000));
  writeFileSync(`${copy}.sha256`, readFileSync(`${a}.sha256`));
  const local = await fl.fleet(['push', copy, '--limit', 't1']);
  t.equal(local.code, 1);
  t.match(local.stderr, /does not match .* the file is damaged or incomplete — pack it again/);
  t.notMatch(local.stderr, /connecting/, 'no host contacted');
});

t.test('fleet rollback: back to the previous release', async (t) => {
  const r = await fl.fleet(['rollback', '--limit', 't1', '--health-timeout', '20', '--json']);
  t.equal(r.code, 0, r.stdout + r.stderr);
  const out = byHost(r.stdout).t1!;
  t.same([out.status, out.before, out.now], ['updated', '1.1.0', '1.0.0']);
  t.same(
    DEVICES.map((n) => fl.current(n)),
    ['1.0.0', '1.0.0', '1.1.0'],
  );
});

t.test('the link drops while a device rolls back: the device finishes, fleet reconnects and says where it ended', async (t) => {
  const run = fl.startFleet(t, ['rollback', '--limit', 't3', '--health-timeout', '20', '--json']);
  // Once the device has started (its history says so), cut every open SSH
  // connection to it, as a Wi-Fi drop would; new ones are accepted again.
  const historyFile = path.join(fl.device('t3').root, 'var', 'lib', 'edge-classifier', 'history.jsonl');
  const started = () => readFileSync(historyFile, 'utf8').trim().split('\n').slice(-1)[0]!.includes('"activating"');
  const deadline = Date.now() + 30_000;
  while (!started() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.ok(started(), 'the rollback had started on the device');
  const sshd = fl.lab.target('t3').pid!;
  const sessions = execFileSync('pgrep', ['-P', String(sshd)])
    .toString()
    .trim()
    .split('\n')
    .map(Number);
  for (const pid of sessions) process.kill(pid, 'SIGKILL');
  const { code } = await run.exited;
  t.equal(code, 1);
  const out = byHost(run.stdout).t3!;
  t.same([out.status, out.before, out.now], ['link lost', '1.1.0', '1.0.0'], JSON.stringify(out));
  t.match(out.detail, /reconnected: the device runs 1\.0\.0 \(its last event: [a-z-]+ 1\.0\.0/);
  t.equal(fl.current('t3'), '1.0.0');
});

t.test('the Ansible playbook: the same rollout through the device commands', async (t) => {
  const playbooks = path.join(repoRoot, 'deploy', 'ansible');
  const env = {
    ...process.env,
    ANSIBLE_NOCOLOR: '1',
    ANSIBLE_PIPELINING: '1',
    ANSIBLE_LOCAL_TEMP: path.join(fl.lab.dir, 'ansible-tmp'),
    ANSIBLE_SSH_CONTROL_PATH_DIR: path.join(fl.lab.dir, 'ansible-cp'),
  };
  const ansible = (args: string[]) =>
    new Promise<{ code: number | null; out: string }>((resolve) => {
      const c = spawn('ansible-playbook', args, { env });
      let out = '';
      c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      c.stderr!.on('data', (d: Buffer) => (out += d.toString()));
      c.once('exit', (code) => resolve({ code, out }));
    });
  const syntax = await ansible([
    '--syntax-check',
    '-i',
    'localhost,',
    ...['push-release', 'push-model', 'rollback', 'status', 'bootstrap'].map((p) => path.join(playbooks, `${p}.yml`)),
  ]);
  t.equal(syntax.code, 0, syntax.out);

  const inv = path.join(fl.lab.dir, 'ansible.yml');
  writeFileSync(inv, (await fl.fleet(['inventory', '--ansible', '--limit', 't1,t2'])).stdout);
  // t1 (on 1.0.0) is the canary, t2 (which cannot run 1.1.0) the next batch.
  const r = await ansible([
    '-i',
    inv,
    path.join(playbooks, 'push-release.yml'),
    '-e',
    `archive=${archive('1.1.0')}`,
    '-e',
    'canary=1',
    '-e',
    'batch=2',
    '-e',
    'health_timeout=20',
  ]);
  t.equal(r.code, 2, 'ansible-playbook: a host failed');
  t.match(r.out, /^t1\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0/m, r.out.slice(-3000));
  t.match(r.out, /^t2\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=1\s+skipped=\d+\s+rescued=1/m);
  t.match(r.out, /release 1\.1\.0 not activated \(Activate .*\): .*; the device runs 1\.0\.0/);
  // Both hosts already hold 1.1.0 (installed by the pushes above): `release install` says `already`, so the task changed nothing.
  const installTasks = r.out.split(/^TASK \[/m).filter((s) => /^[^\]\n]*Install \(sha256/.test(s));
  t.equal(installTasks.length, 2, 'the Install task ran in both batches');
  for (const task of installTasks) {
    t.match(task, /^ok: \[t[12]\]/m, 'install of a release already there: ok');
    t.notMatch(task, /^changed: /m, 'not changed');
  }
  // t3 was rolled back to 1.0.0 in the step before.
  t.same(
    DEVICES.map((n) => fl.current(n)),
    ['1.1.0', '1.0.0', '1.0.0'],
  );
});
