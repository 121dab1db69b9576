import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Throttled } from '../core/types.js';

/**
 * Readings of the machine the daemon runs on, for `<base>/stats`:
 *
 * - CPU temperature from the Linux thermal framework:
 *   `/sys/class/thermal/thermal_zone<N>/temp` (millidegrees Celsius) of the
 *   zone whose `type` names the CPU (`cpu-thermal` on a Raspberry Pi,
 *   `x86_pkg_temp`, `soc_thermal`, …), else zone 0;
 * - on a Raspberry Pi, the firmware's throttling flags from
 *   `vcgencmd get_throttled` (`throttled=0x50005`) when `vcgencmd` is on
 *   PATH — under-voltage, frequency capping, throttling and the soft
 *   temperature limit, each "now" and "since boot".
 *
 * Neither exists in most containers and on laptops without sensors: the
 * readers then return null, never throw.
 */

/** Where the thermal zones are; tests point it at a folder laid out the same way. */
export const THERMAL_ROOT = '/sys/class/thermal';

/** Zone types that name the CPU package, most specific first. */
const CPU_ZONE_TYPES = [/^cpu[-_]thermal$/i, /^x86_pkg_temp$/i, /^soc[-_]thermal$/i, /cpu/i, /soc/i, /pkg|package/i];

/** A CPU temperature reading. */
export interface CpuTemperature {
  /** Degrees Celsius, one decimal. */
  readonly celsius: number;
  /** Where it was read, e.g. `/sys/class/thermal/thermal_zone0 (cpu-thermal)`. */
  readonly source: string;
}

/**
 * Reads the CPU temperature from the thermal zones under `root`. Returns
 * null when there is no zone or none is readable.
 */
export async function readCpuTemperature(root: string = THERMAL_ROOT): Promise<CpuTemperature | null> {
  let zones: string[];
  try {
    zones = (await readdir(root)).filter((n) => /^thermal_zone\d+$/.test(n));
  } catch {
    return null;
  }
  zones.sort((a, b) => Number(a.slice(12)) - Number(b.slice(12)));
  const typed: { zone: string; type: string }[] = [];
  for (const zone of zones) {
    const type = await readFile(path.join(root, zone, 'type'), 'utf8').then(
      (s) => s.trim(),
      () => '',
    );
    typed.push({ zone, type });
  }
  const ordered = [...CPU_ZONE_TYPES.flatMap((re) => typed.filter((z) => re.test(z.type))), ...typed];
  for (const { zone, type } of ordered) {
    const text = await readFile(path.join(root, zone, 'temp'), 'utf8').catch(() => '');
    const milli = Number.parseInt(text.trim(), 10);
    // Some drivers report degrees, not millidegrees; anything above 1000 is millidegrees.
    if (!Number.isFinite(milli)) continue;
    const celsius = Math.abs(milli) >= 1000 ? milli / 1000 : milli;
    return { celsius: Math.round(celsius * 10) / 10, source: `${path.join(root, zone)} (${type || 'unknown type'})` };
  }
  return null;
}

/**
 * Decodes `vcgencmd get_throttled` output (`throttled=0x50005`). Bits as
 * documented by Raspberry Pi (the `vcgencmd` page of the Raspberry Pi
 * documentation): 0 under-voltage detected, 1 ARM frequency capped,
 * 2 currently throttled, 3 soft temperature limit active; 16–19 the same
 * "has occurred since boot". Returns null for text of another shape.
 */
export function parseThrottled(output: string): Throttled | null {
  const m = /throttled=(0x[0-9a-f]+)/i.exec(output);
  if (m === null) return null;
  const bits = Number.parseInt(m[1]!, 16);
  const bit = (n: number): boolean => (bits & (1 << n)) !== 0;
  return {
    raw: `0x${bits.toString(16)}`,
    under_voltage: bit(0),
    frequency_capped: bit(1),
    throttled: bit(2),
    soft_temperature_limit: bit(3),
    under_voltage_occurred: bit(16),
    frequency_capped_occurred: bit(17),
    throttled_occurred: bit(18),
    soft_temperature_limit_occurred: bit(19),
  };
}

/**
 * Runs `vcgencmd get_throttled` (found on PATH; `command` for another
 * program) with a 2 s timeout. Returns null when it is missing, fails or
 * prints something else (not a Raspberry Pi, no access to /dev/vchiq).
 */
export function readThrottled(command = 'vcgencmd'): Promise<Throttled | null> {
  return new Promise((resolve) => {
    execFile(command, ['get_throttled'], { timeout: 2000 }, (err, stdout) => {
      resolve(err ? null : parseThrottled(stdout));
    });
  });
}
