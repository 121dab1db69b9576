import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';

/**
 * The application id edge-classifier uses to derive its machine-specific id,
 * as systemd's `sd_id128_get_machine_app_specific()` does. It is a fixed
 * random 128-bit value (made once with `systemd-id128 new`) and must never
 * change: the device id, the default MQTT base topic and client id all
 * derive from it.
 */
export const DEVICE_ID_APP_ID = '4391c8db0a48411ca2f31216cf7386d6';

/** Default places of the machine id, in the order systemd documents them (machine-id(5)). */
const MACHINE_ID_PATHS: readonly string[] = ['/etc/machine-id', '/var/lib/dbus/machine-id'];

/** Length of the device id in hex characters (48 bits). */
const DEVICE_ID_LENGTH = 12;

/** Where `deviceId` looks; parameters so tests can use temp files. */
export interface DeviceIdOptions {
  /** Files to read the machine id from, first readable valid one wins. Default `MACHINE_ID_PATHS`. */
  readonly machineIdPaths?: readonly string[];
  /** Host name used when no machine id can be read. Default `os.hostname()`. */
  readonly hostname?: string;
}

const MACHINE_ID_RE = /^[0-9a-f]{32}$/;

/**
 * Reads the first valid machine id (32 lower-case hex characters, as
 * machine-id(5) defines the file) from `paths`. Empty files and the
 * `uninitialized` marker of a first boot are skipped.
 * Returns `undefined` when none of the files holds a valid id.
 */
function readMachineId(paths: readonly string[]): { id: string } | undefined {
  for (const path of paths) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      continue;
    }
    const id = text.trim().toLowerCase();
    if (MACHINE_ID_RE.test(id)) return { id };
  }
  return undefined;
}

/**
 * A short, stable id of this device that does not reveal its machine id.
 *
 * machine-id(5) asks applications not to publish the raw machine id but a
 * hash keyed per application. This computes exactly what systemd's
 * `sd_id128_get_machine_app_specific()` computes — HMAC-SHA256 keyed with the
 * 16 bytes of the machine id over the 16 bytes of `DEVICE_ID_APP_ID` — and
 * keeps the first 12 hex characters (48 bits), so on a device
 * `systemd-id128 machine-id --app-specific=4391c8db0a48411ca2f31216cf7386d6 | cut -c1-12`
 * prints the same id.
 *
 * When no machine id is readable (a container, a non-systemd system), the
 * host name is hashed the same way (HMAC keyed with its UTF-8 bytes); that
 * id changes when the host name changes. Note that SD cards cloned from one
 * image share a machine id until it is regenerated
 * (`rm /etc/machine-id && systemd-machine-id-setup`), and therefore share a
 * device id, base topic and client id.
 *
 * Returns 12 lower-case hex characters, e.g. `f50949f48743`: the default MQTT
 * base topic is `edge-classifier/<id>`, the client id `edge-classifier-<id>`.
 * Never throws: the host name fallback always exists.
 */
export function deviceId(options: DeviceIdOptions = {}): string {
  const appId = Buffer.from(DEVICE_ID_APP_ID, 'hex');
  const machine = readMachineId(options.machineIdPaths ?? MACHINE_ID_PATHS);
  if (machine !== undefined) {
    const digest = createHmac('sha256', Buffer.from(machine.id, 'hex')).update(appId).digest('hex');
    return digest.slice(0, DEVICE_ID_LENGTH);
  }
  const host = options.hostname ?? osHostname();
  const digest = createHmac('sha256', Buffer.from(host, 'utf8')).update(appId).digest('hex');
  return digest.slice(0, DEVICE_ID_LENGTH);
}
