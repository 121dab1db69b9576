import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { DEVICE_ID_APP_ID, deviceId } from '../../src/core/device-id.js';

const dir = mkdtempSync(path.join(tmpdir(), 'device-id-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string): string => {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
};

t.test('the same id systemd computes for this app id', async (t) => {
  // Reference: systemd-id128 machine-id --app-specific=<DEVICE_ID_APP_ID>, on this machine's /etc/machine-id.
  const systemd = execFileSync('systemd-id128', ['machine-id', `--app-specific=${DEVICE_ID_APP_ID}`], { encoding: 'utf8' }).trim();
  t.equal(deviceId(), systemd.slice(0, 12));
  t.equal(deviceId({ machineIdPaths: ['/etc/machine-id'] }), deviceId(), 'from /etc/machine-id, the first default path');
});

t.test('machine-id files in order, invalid ones skipped, hostname as the last resort', async (t) => {
  // Expected values from openssl: printf APP_ID | xxd -r -p | openssl dgst -sha256 -mac HMAC -macopt hexkey:<machine id>
  const good = file('machine-id', '0123456789abcdef0123456789abcdef\n');
  t.equal(deviceId({ machineIdPaths: [good] }), '6b60b102f43b');
  const empty = file('empty', '');
  const uninitialized = file('uninitialized', 'uninitialized\n');
  const missing = path.join(dir, 'missing');
  const other = file('other', 'fedcba9876543210fedcba9876543210\n');
  t.equal(deviceId({ machineIdPaths: [missing, empty, uninitialized, good, other] }), '6b60b102f43b', 'the first valid file wins');
  t.equal(deviceId({ machineIdPaths: [file('upper', '0123456789ABCDEF0123456789ABCDEF')] }), '6b60b102f43b', 'case does not matter');
  // ... -macopt key:front-door-pi
  t.equal(deviceId({ machineIdPaths: [missing, empty], hostname: 'front-door-pi' }), '3088024515ba', 'from the host name');
  t.not(deviceId({ machineIdPaths: [good] }), '0123456789ab', 'the machine id itself is never exposed');
});
