/**
 * The SSH layer against real sshd servers on loopback: commands, quoting,
 * connection sharing, host keys, unreachable hosts, and resumable uploads
 * with real rsync (and scp).
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { type FleetHost, loadInventory } from '../../src/fleet/inventory.js';
import { SshError, SshSession } from '../../src/fleet/ssh.js';
import { PARTIAL_DIR, upload } from '../../src/fleet/transfer.js';
import { startSshLab } from '../helpers/sshd.js';

const lab = await startSshLab(t, ['a', 'b']);
const hostsFile = await lab.writeInventory({ gone: { address: '127.0.0.1', port: 1 } });
const hosts = loadInventory(hostsFile).hosts;
const host = (n: string): FleetHost => hosts.find((h) => h.name === n)!;
/** Its own folder for the master socket: a master is found by host, port and user, whatever the key or known_hosts. */
const controlDir = (): string => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ecm-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
};
const session = (n: string, h: FleetHost = host(n), acceptNewHostKeys = false, dir = controlDir()): SshSession => {
  const s = new SshSession(h, { controlDir: dir, acceptNewHostKeys });
  t.teardown(() => s.close());
  return s;
};
const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const logins = (log: string) => log.split('\n').filter((l) => l.includes('Accepted publickey')).length;

t.test('commands run in the target environment; every argument arrives as written', async (t) => {
  const s = session('a');
  await s.connect();
  const env = await s.run(['sh', '-c', 'printf "%s\\n" "$HOME" "$EDGE_CLASSIFIER_ROOT"']);
  t.equal(env.code, 0);
  t.same(env.stdout.trim().split('\n'), [lab.target('a').home, lab.target('a').root]);
  const words = ["it's", 'two words', '$HOME', '`id`', 'a;b', '*', '"q"', '\\back', 'new\nline', ''];
  const echo = await s.run(['printf', '%s\\0', ...words]);
  t.same(echo.stdout.split('\0').slice(0, -1), words);
  const fail = await s.run(['sh', '-c', 'echo oops >&2; exit 3']);
  t.same([fail.code, fail.stderr], [3, 'oops\n'], 'a failing remote command is a result, not an SshError');
  t.equal((await s.run(['sh', '-c', 'exit 255'])).code, 255, 'even with the status ssh uses for its own failures');
  const lines: string[] = [];
  await s.run(['sh', '-c', 'echo one; echo two'], { onStdoutLine: (l) => lines.push(l) });
  t.same(lines, ['one', 'two']);
});

t.test('one login carries every command (ControlMaster)', async (t) => {
  const s = session('b');
  const before = logins(lab.target('b').log);
  await s.connect();
  for (let i = 0; i < 4; i++) t.equal((await s.run(['true'])).code, 0);
  t.ok(await s.hasMaster());
  t.equal(logins(lab.target('b').log) - before, 1, 'sshd saw one login for five uses');
  await s.close();
  t.notOk(await s.hasMaster());
  t.equal((await s.run(['true'])).code, 0, 'without a master, a command connects by itself');
});

t.test('a changed host key is refused and named, with its fingerprint and the fix', async (t) => {
  const lab2 = await startSshLab(t, ['reinstalled']);
  const h = loadInventory(await lab2.writeInventory()).hosts[0]!;
  await lab2.target('reinstalled').rotateHostKey();
  const newFp = execFileSync('ssh-keygen', ['-lf', path.join(lab2.target('reinstalled').dir, 'ssh_host_ed25519_key.pub')])
    .toString()
    .split(' ')[1]!;
  const s = session('reinstalled', h, true);
  const err = (await s.connect().catch((e: unknown) => e)) as SshError;
  t.type(err, SshError);
  t.equal(err.kind, 'host-key-changed', 'even with --accept-new-host-keys');
  t.equal(
    err.message,
    `host key changed: [127.0.0.1]:${lab2.target('reinstalled').port} now presents key ${newFp}, not the one recorded in ${lab2.knownHostsFile}`,
  );
  t.match(err.hint, `ssh-keygen -f ${lab2.knownHostsFile} -R '[127.0.0.1]:${lab2.target('reinstalled').port}'`);
  const e2 = (await s.run(['true']).catch((e: unknown) => e)) as SshError;
  t.equal(e2.kind, 'host-key-changed', 'commands too');
});

t.test('an unknown host key: refused by default, recorded with --accept-new-host-keys', async (t) => {
  const known = path.join(lab.dir, 'empty_known_hosts');
  writeFileSync(known, '');
  const h: FleetHost = { ...host('a'), knownHostsFile: known };
  const own = controlDir();
  const strict = session('a', h, false, own);
  await t.rejects(strict.connect(), { kind: 'host-key-unknown', message: `unknown host key: [127.0.0.1]:${h.port} is not in ${known}` });
  const lenient = session('a', h, true, own);
  await lenient.connect();
  t.equal((await lenient.run(['true'])).code, 0);
  t.match(readFileSync(known, 'utf8'), `[127.0.0.1]:${h.port} ssh-ed25519 `);
  await lenient.close();
});

t.test('unreachable host and refused key are told apart', async (t) => {
  const down = session('gone');
  const e1 = (await down.connect().catch((e: unknown) => e)) as SshError;
  t.equal(e1.kind, 'unreachable');
  t.match(e1.message, /^unreachable: connect to host 127\.0\.0\.1 port 1: Connection refused$/);
  t.match(e1.hint, 'sshd runs on port 1');
  const otherKey = path.join(lab.dir, 'other_key');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', otherKey]);
  const wrong = session('a', { ...host('a'), identityFile: otherKey });
  const e2 = (await wrong.connect().catch((e: unknown) => e)) as SshError;
  t.equal(e2.kind, 'auth');
  t.match(e2.message, `does not accept the key ${otherKey}`);
});

t.test('upload: rsync with progress; an interrupted transfer resumes from its partial file', async (t) => {
  const s = session('a');
  await s.connect();
  const src = path.join(lab.dir, 'release.tar.gz');
  writeFileSync(src, randomBytes(6 * 1024 * 1024));
  const dest = path.join(lab.target('a').home, 'staging');
  const partial = path.join(dest, PARTIAL_DIR, 'release.tar.gz');

  // 1 MiB/s: stop after ~1.5 s, well before the 6 MiB are through.
  const ac = new AbortController();
  const progress: number[] = [];
  const first = upload(s, [src], dest, { bwlimitKiBps: 1024, signal: ac.signal, onProgress: (p) => progress.push(p.bytes) });
  const deadline = Date.now() + 15_000;
  while (!(existsSync(partial) || progress.some((b) => b > 1024 * 1024)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  ac.abort();
  await t.rejects(first, { name: 'CancelledError' });
  t.notOk(existsSync(path.join(dest, 'release.tar.gz')), 'no file under the final name');
  t.ok(existsSync(partial), 'the partial file is kept');
  const kept = statSync(partial).size;
  t.ok(kept > 0 && kept < 6 * 1024 * 1024, `partial holds ${kept} bytes`);
  t.ok(progress.length > 0 && progress.every((b, i) => i === 0 || b >= progress[i - 1]!), 'progress rises');

  const second = await upload(s, [src], dest);
  t.equal(sha256(path.join(dest, 'release.tar.gz')), sha256(src));
  t.equal(second.totalBytes, 6 * 1024 * 1024);
  t.ok(second.matchedBytes > 0 && second.matchedBytes <= kept, `resumed: ${second.matchedBytes} bytes reused of ${kept} kept`);
  t.equal(second.literalBytes + second.matchedBytes, 6 * 1024 * 1024);
  t.notOk(existsSync(partial), 'the partial file is gone once complete');
  const third = await upload(s, [src], dest);
  t.equal(third.literalBytes, 0, 'an identical file already there is not sent again');
});

t.test('upload with scp: complete file under its name, never a half one', async (t) => {
  const s = session('b');
  const src = path.join(lab.dir, 'model.tflite');
  writeFileSync(src, randomBytes(300_000));
  const dest = path.join(lab.target('b').home, 'staging');
  const r = await upload(s, [src], dest, { scp: true });
  t.equal(r.method, 'scp');
  t.equal(sha256(path.join(dest, 'model.tflite')), sha256(src));
  t.notOk(existsSync(path.join(dest, '.model.tflite.part')));
});
