/**
 * What the operator reads: tables, ages, the Ansible inventory export, the
 * local archive checks made before any host is touched, and the progress
 * lines written when stderr is not a terminal.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import t from 'tap';
import { parse } from 'yaml';
import { parseInventory, toAnsibleInventory } from '../../src/fleet/inventory.js';
import { type HostOutcome, modelLabel, readReleaseArchive } from '../../src/fleet/push.js';
import { formatTable, outcomeTable, ProgressDisplay } from '../../src/fleet/report.js';
import { age, statusTable } from '../../src/fleet/status.js';

const outcome = (o: Partial<HostOutcome> & Pick<HostOutcome, 'host' | 'status'>): HostOutcome => ({
  ok: false,
  before: undefined,
  now: undefined,
  detail: '',
  ms: 1234,
  ...o,
});

t.test('columns line up; the last one is not padded', async (t) => {
  t.equal(
    formatTable(
      ['A', 'LONGER', 'Z'],
      [
        ['x', 'y', 'end'],
        ['wide value', '', ''],
      ],
    ),
    ['A           LONGER  Z', 'x           y       end', 'wide value'].join('\n'),
  );
});

t.test('push summary: where each host ended, skipped hosts, hints', async (t) => {
  const text = outcomeTable([
    { host: 'kitchen', outcome: outcome({ host: 'kitchen', ok: true, status: 'updated', before: '1.0.0', now: '1.1.0', detail: 'healthy on 1.1.0' }) },
    {
      host: 'barn',
      outcome: outcome({
        host: 'barn',
        status: 'rolled back',
        before: '1.0.0',
        now: '1.0.0',
        detail: 'health: no frame classified',
        hint: 'journalctl -u edge-classifier',
      }),
    },
    { host: 'shed', skipped: '1 host failed, more than --max-fail allows (0)' },
  ]);
  t.equal(
    text,
    [
      'HOST     RESULT       BEFORE  NOW    TIME  DETAIL',
      'kitchen  updated      1.0.0   1.1.0  1.2s  healthy on 1.1.0',
      'barn     rolled back  1.0.0   1.0.0  1.2s  health: no frame classified',
      'shed     skipped      -       -      -     not contacted: 1 host failed, more than --max-fail allows (0)',
      '',
      'What to do:',
      '  barn: journalctl -u edge-classifier',
    ].join('\n'),
  );
});

t.test('ages and the status table', async (t) => {
  const now = Date.parse('2026-12-02T12:00:00Z');
  t.equal(age('2026-12-02T11:59:57Z', now), '3s');
  t.equal(age('2026-12-02T11:55:55Z', now), '4m 05s');
  t.equal(age('2026-12-02T09:50:00Z', now), '2h 10m');
  t.equal(age('2026-11-29T08:00:00Z', now), '3d 4h');
  t.equal(age(null, now), '-');
  t.equal(age('yesterday', now), '-');
  const text = statusTable(
    [
      {
        host: 'kitchen',
        state: 'healthy',
        detail: '',
        health: {
          healthy: true,
          release: '1.1.0',
          model: { name: 'mobilenet', sha256: 'ab'.repeat(32) },
          since: '2026-12-02T10:00:00Z',
          fps: 9.96,
          problems: [],
          updated_at: '2026-12-02T11:59:58Z',
        },
      },
      {
        host: 'barn',
        state: 'unhealthy',
        detail: 'no frame classified for 30 s',
        health: {
          healthy: false,
          release: '1.0.0',
          model: null,
          since: null,
          fps: 0,
          problems: [{ id: 'source_stalled' }, { id: 'broker_unreachable' }],
          updated_at: '2026-12-02T11:59:50Z',
        },
      },
      { host: 'shed', state: 'unreachable', detail: 'unreachable: connect to host shed port 22: No route to host', hint: 'check that the device is on' },
    ],
    now,
  );
  t.equal(
    text,
    [
      'HOST     HEALTH       RELEASE  MODEL                   SINCE       FPS   PROBLEMS                               CHECKED  DETAIL',
      'kitchen  healthy      1.1.0    mobilenet abababababab  2h 00m ago  10.0  0                                      2s ago',
      'barn     unhealthy    1.0.0    -                       -           0.0   2: source_stalled, broker_unreachable  10s ago  no frame classified for 30 s',
      'shed     unreachable  -        -                       -           -     -                                      -        unreachable: connect to host shed port 22: No route to host',
      '',
      'What to do:',
      '  shed: check that the device is on',
    ].join('\n'),
  );
  t.equal(modelLabel({ path: '/var/lib/edge-classifier/models/x.tflite' }), 'x.tflite');
  t.equal(modelLabel(null), undefined);
});

t.test('the Ansible inventory carries the same hosts, connection settings and groups', async (t) => {
  const inv = parseInventory(
    'defaults: {user: pi, identity_file: /keys/fleet, known_hosts_file: /keys/known_hosts}\nhosts:\n  kitchen: {address: 10.0.0.5, groups: [house]}\n  barn: {port: 2222, builder: true, sudo: false, ssh_options: ["ProxyJump=gate"]}\n',
    '/srv/fleet.yaml',
  );
  const doc = parse(toAnsibleInventory(inv.hosts)) as {
    all: { hosts: Record<string, Record<string, unknown>>; children: Record<string, { hosts: Record<string, null> }> };
  };
  t.same(doc.all.hosts.kitchen, {
    ansible_host: '10.0.0.5',
    ansible_port: 22,
    ansible_user: 'pi',
    ansible_ssh_private_key_file: '/keys/fleet',
    ansible_ssh_common_args: '-o UserKnownHostsFile=/keys/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes',
    edge_classifier_command: 'edge-classifier',
    edge_classifier_sudo: true,
    edge_classifier_staging_dir: '.cache/edge-classifier/staging',
  });
  t.equal(doc.all.hosts.barn!.ansible_host, 'barn');
  t.equal(doc.all.hosts.barn!.edge_classifier_sudo, false);
  t.match(doc.all.hosts.barn!.ansible_ssh_common_args, / -o ProxyJump=gate$/);
  t.same(doc.all.children, { house: { hosts: { kitchen: null } }, edge_classifier_builders: { hosts: { barn: null } } });
});

t.test('a release archive is checked against its .sha256 before any host is touched', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'edge-archive-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'edge-classifier-1.2.0-rc.1-linux-arm64.tar.gz');
  writeFileSync(file, 'not really a tarball');
  await t.rejects(readReleaseArchive(file), {
    message: `release archive ${file}: edge-classifier-1.2.0-rc.1-linux-arm64.tar.gz.sha256 is missing beside it (edge-classifier pack writes both)`,
  });
  const sha = createHash('sha256').update('not really a tarball').digest('hex');
  writeFileSync(`${file}.sha256`, `${sha}  edge-classifier-1.2.0-rc.1-linux-arm64.tar.gz\n`);
  const a = await readReleaseArchive(file);
  t.same([a.version, a.arch, a.sha256, a.bytes], ['1.2.0-rc.1', 'arm64', sha, 20]);
  writeFileSync(file, 'not really a tarball, changed');
  await t.rejects(readReleaseArchive(file), {
    message: new RegExp(
      `does not match ${sha} in edge-classifier-1\\.2\\.0-rc\\.1-linux-arm64\\.tar\\.gz\\.sha256; the file is damaged or incomplete — pack it again$`,
    ),
  });
  writeFileSync(`${file}.sha256`, 'garbage\n');
  await t.rejects(readReleaseArchive(file), { message: `${file}.sha256: expected "<64 hex digits>  <file name>" (sha256sum format)` });
  const other = path.join(dir, 'release.tgz');
  writeFileSync(other, '');
  await t.rejects(readReleaseArchive(other), {
    message: `release archive ${other}: expected a name edge-classifier-VERSION-linux-ARCH.tar.gz as edge-classifier pack writes it`,
  });
  await t.rejects(readReleaseArchive(path.join(dir, 'nope.tar.gz')), /no such file \(make one with: edge-classifier pack\)/);
});

t.test('progress without a terminal: one line per step, transfers every 25 %', async (t) => {
  let text = '';
  const out = new Writable({
    write: (chunk: Buffer, _e, cb) => {
      text += chunk.toString();
      cb();
    },
  });
  const p = new ProgressDisplay(out, false);
  p.note('push: canary (1/2): kitchen');
  for (const pct of [0, 3, 10, 24, 25, 60, 99, 100]) p.update('kitchen', `sending ${pct}% 1.00MB/s`);
  p.update('kitchen', 'installing');
  p.finish(outcome({ host: 'kitchen', ok: true, status: 'updated', detail: 'healthy on 1.1.0' }));
  p.end();
  t.equal(
    text,
    [
      'push: canary (1/2): kitchen',
      'kitchen: sending 0% 1.00MB/s',
      'kitchen: sending 25% 1.00MB/s',
      'kitchen: sending 60% 1.00MB/s',
      'kitchen: sending 99% 1.00MB/s',
      'kitchen: sending 100% 1.00MB/s',
      'kitchen: installing',
      'kitchen: updated: healthy on 1.1.0',
      '',
    ].join('\n'),
  );
});

t.test('progress on a terminal: one line per host, redrawn in place', async (t) => {
  let text = '';
  const out = Object.assign(
    new Writable({
      write: (chunk: Buffer, _e, cb) => {
        text += chunk.toString();
        cb();
      },
    }),
    { columns: 60 },
  );
  const p = new ProgressDisplay(out, true);
  p.update('kitchen', 'connecting');
  p.update('barn', 'connecting');
  await new Promise((r) => setTimeout(r, 150)); // drawn at most every 100 ms
  t.equal(text, '› kitchen  connecting\n› barn     connecting\n');
  p.finish(outcome({ host: 'kitchen', ok: true, status: 'updated', detail: `healthy on 1.1.0 ${'and a long tail '.repeat(5)}` }));
  p.end();
  const frames = text.split('\x1b[2A\x1b[J');
  t.equal(frames.length, 2, 'the two lines are redrawn, not added');
  const last = frames[frames.length - 1]!.split('\n');
  t.equal(last[0], '• kitchen  updated: healthy on 1.1.0 and a long tail and a long'.slice(0, 59), 'cut to the terminal width');
  t.equal(last[1], '› barn     connecting');
});
