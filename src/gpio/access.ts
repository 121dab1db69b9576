import { constants, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { access } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * How long to wait after exporting a pin for udev to give the `gpio` group
 * access to its files, ms. Raspberry Pi OS's udev rule (99-com.rules) runs
 * `chgrp`/`chmod` on the new `gpioN` folder; measured reports put it at up
 * to about a second on a busy Pi, while onoff's own wait (10 000 tries of
 * open(2), no sleep) ends after 0.2–0.6 s.
 */
const GPIO_ACCESS_WAIT_MS = 2_000;
/** Time between two access checks while waiting, ms. */
const POLL_MS = 25;

/**
 * True when this machine has GPIO pins a program could drive: a sysfs GPIO
 * class folder, or a Raspberry Pi board in the device tree (whose GPIO must
 * then work, even when the sysfs interface is missing or unusable).
 * `root` is the file system root (a fake tree in tests).
 */
export function machineHasGpio(root = '/'): boolean {
  if (existsSync(path.join(root, 'sys', 'class', 'gpio'))) return true;
  return raspberryPiModel(root) !== null;
}

/** The Raspberry Pi model from the device tree ("Raspberry Pi 5 Model B Rev 1.0"), or null on other machines. */
export function raspberryPiModel(root = '/'): string | null {
  for (const p of ['proc/device-tree/model', 'sys/firmware/devicetree/base/model']) {
    try {
      const model = readFileSync(path.join(root, p), 'utf8').replace(/\0/g, '').trim();
      return model.startsWith('Raspberry Pi') ? model : null;
    } catch {
      // not there
    }
  }
  return null;
}

/**
 * Exports sysfs GPIO `sysfsNumber` (unless already exported) and waits, at
 * most `timeoutMs`, until this process can read and write its `value`,
 * `direction` and `active_low` files — the access udev grants the `gpio`
 * group a moment after the export. Only after the wait is a refusal a
 * permission problem.
 * @param sysfsRoot the sysfs mount, `/sys` (a fake tree in tests).
 * @throws Error naming the pin, the file and the fix: EACCES after the wait
 * ("add the service user to the 'gpio' group"), or the export's own error.
 */
export async function exportAndWaitForAccess(sysfsNumber: number, sysfsRoot = '/sys', timeoutMs = GPIO_ACCESS_WAIT_MS): Promise<{ waitedMs: number }> {
  const classDir = path.join(sysfsRoot, 'class', 'gpio');
  const dir = path.join(classDir, `gpio${sysfsNumber}`);
  if (!existsSync(dir)) {
    try {
      writeFileSync(path.join(classDir, 'export'), String(sysfsNumber));
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'EACCES' || e.code === 'EPERM') {
        throw new Error(`cannot export GPIO ${sysfsNumber}: ${classDir}/export is not writable (${e.code}): add the service user to the 'gpio' group`);
      }
      // EBUSY: exported meanwhile by someone else, which the wait below handles.
      if (e.code !== 'EBUSY') throw new Error(`cannot export GPIO ${sysfsNumber}: ${e.message}`);
    }
  }
  const files = ['value', 'direction', 'active_low'].map((f) => path.join(dir, f));
  const started = Date.now();
  for (;;) {
    let blocked: { file: string; code: string } | undefined;
    for (const file of files) {
      try {
        await access(file, constants.R_OK | constants.W_OK);
      } catch (err) {
        blocked = { file, code: (err as NodeJS.ErrnoException).code ?? 'EACCES' };
        break;
      }
    }
    const waitedMs = Date.now() - started;
    if (blocked === undefined) return { waitedMs };
    if (waitedMs >= timeoutMs) {
      const fix =
        blocked.code === 'ENOENT' ? 'the kernel did not create it: check that the pin exists on this board' : "add the service user to the 'gpio' group";
      throw new Error(
        `GPIO ${sysfsNumber}: ${blocked.file} still ${blocked.code === 'ENOENT' ? 'missing' : 'not writable'} ${timeoutMs} ms after the export (${blocked.code}): ${fix}`,
      );
    }
    await sleep(POLL_MS);
  }
}
