/**
 * Waiting for udev after a GPIO export, on a fake sysfs tree: a process that
 * is not root (here: nobody) gets write access to the pin's files only when
 * "udev" (a timer in the test) changes their mode 0.8 s after the export.
 * Also which machines count as having GPIO.
 */

import { execFile } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { machineHasGpio, raspberryPiModel } from '../../src/gpio/access.js';
import { repoRoot } from '../helpers/assets.js';

const run = promisify(execFile);
const tmp = mkdtempSync(path.join(tmpdir(), 'ec-gpio-access-'));
chmodSync(tmp, 0o755);
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const ACCESS = path.join(repoRoot, 'dist', 'gpio', 'access.js');
const NOBODY = 65534;

/**
 * A fake /sys: an export file user nobody may write, and a "kernel" that
 * makes the pin's folder (files writable by root only) when the pin number
 * is written to it, and a "udev" that opens them to everyone `udevMs`
 * later (never when null).
 */
function fakeSysfs(t: { teardown(fn: () => unknown): void }, name: string, pin: number, udevMs: number | null): { root: string; exported: Promise<number> } {
  const root = path.join(tmp, name, 'sys');
  const classDir = path.join(root, 'class', 'gpio');
  mkdirSync(classDir, { recursive: true });
  for (const d of [path.join(tmp, name), root, path.join(root, 'class'), classDir]) chmodSync(d, 0o755);
  const exportFile = path.join(classDir, 'export');
  writeFileSync(exportFile, '');
  chownSync(exportFile, NOBODY, NOBODY);
  let timer: NodeJS.Timeout | undefined;
  const exported = new Promise<number>((resolve) => {
    timer = setInterval(() => {
      if (readFileSync(exportFile, 'utf8').trim() !== String(pin)) return;
      clearInterval(timer);
      const at = Date.now();
      const dir = path.join(classDir, `gpio${pin}`);
      mkdirSync(dir);
      chmodSync(dir, 0o755);
      const files = ['value', 'direction', 'active_low'].map((f) => path.join(dir, f));
      for (const f of files) {
        writeFileSync(f, '0');
        chmodSync(f, 0o644);
      }
      if (udevMs !== null) {
        timer = setTimeout(() => {
          for (const f of files) chmodSync(f, 0o666);
        }, udevMs);
      }
      resolve(at);
    }, 5);
  });
  t.teardown(() => clearInterval(timer));
  return { root, exported };
}

/**
 * Runs exportAndWaitForAccess as user nobody in a child process. The built
 * module (it imports only Node.js built-ins) is copied to a folder user nobody can
 * read, and the test runner's loaders and coverage are left out of the
 * child's environment: the checkout itself may sit in a folder only root can
 * enter (e.g. under `mktemp -d`).
 */
function waitAsNobody(root: string, pin: number) {
  const dir = mkdtempSync(path.join(tmpdir(), 'ec-gpio-access-module-'));
  chmodSync(dir, 0o755);
  const module = path.join(dir, 'access.mjs');
  copyFileSync(ACCESS, module);
  chmodSync(module, 0o644);
  const script = `import { exportAndWaitForAccess } from ${JSON.stringify(module)};
try { const r = await exportAndWaitForAccess(${pin}, ${JSON.stringify(root)}); console.log(JSON.stringify({ ok: true, ...r })); }
catch (e) { console.log(JSON.stringify({ ok: false, message: e.message })); }`;
  // Through env(1): the test runner adds its loaders to NODE_OPTIONS of every child it sees spawned.
  const child = ['-u', 'NODE_OPTIONS', '-u', 'NODE_V8_COVERAGE', process.execPath, '--input-type=module', '-e', script];
  return run('env', child, { uid: NOBODY, gid: NOBODY, cwd: dir })
    .then((r) => JSON.parse(r.stdout.trim()))
    .finally(() => rmSync(dir, { recursive: true, force: true }));
}

t.test(
  'waits for udev to grant access after the export, then succeeds',
  { skip: process.getuid?.() !== 0 ? 'needs root to run a child as nobody' : false },
  async (t) => {
    const { root, exported } = fakeSysfs(t, 'late-udev', 529, 800);
    const r = await waitAsNobody(root, 529);
    await exported;
    t.equal(r.ok, true, r.message);
    t.ok(r.waitedMs >= 700 && r.waitedMs < 2000, `waited ${r.waitedMs} ms for the permissions udev granted 800 ms after the export`);
  },
);

t.test(
  'never granted: a permission error naming the file and the gpio group, after about 2 s',
  { skip: process.getuid?.() !== 0 ? 'needs root to run a child as nobody' : false },
  async (t) => {
    const { root } = fakeSysfs(t, 'no-udev', 588, null);
    const r = await waitAsNobody(root, 588);
    t.equal(r.ok, false);
    t.match(r.message, /GPIO 588: .*gpio588\/value still not writable 2000 ms after the export \(EACCES\): add the service user to the 'gpio' group/);
  },
);

t.test('which machines have GPIO: a sysfs GPIO class, or a Raspberry Pi in the device tree', async (t) => {
  const laptop = path.join(tmp, 'laptop');
  mkdirSync(path.join(laptop, 'proc', 'device-tree'), { recursive: true });
  t.equal(machineHasGpio(laptop), false);
  writeFileSync(path.join(laptop, 'proc', 'device-tree', 'model'), 'Some ARM board\0');
  t.equal(raspberryPiModel(laptop), null);
  t.equal(machineHasGpio(laptop), false);
  const pi = path.join(tmp, 'pi5');
  mkdirSync(path.join(pi, 'proc', 'device-tree'), { recursive: true });
  writeFileSync(path.join(pi, 'proc', 'device-tree', 'model'), 'Raspberry Pi 5 Model B Rev 1.0\0');
  t.equal(raspberryPiModel(pi), 'Raspberry Pi 5 Model B Rev 1.0');
  t.equal(machineHasGpio(pi), true, 'a Pi has GPIO even without /sys/class/gpio');
  mkdirSync(path.join(laptop, 'sys', 'class', 'gpio'), { recursive: true });
  t.equal(machineHasGpio(laptop), true);
});
