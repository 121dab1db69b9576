import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { parseThrottled, readCpuTemperature, readThrottled } from '../../src/stats/system.js';

/** A folder laid out as /sys/class/thermal, with the given zones (type, temp file contents). */
async function thermalTree(dir: string, zones: [string, string][]): Promise<string> {
  for (const [i, [type, temp]] of zones.entries()) {
    const zone = path.join(dir, `thermal_zone${i}`);
    await mkdir(zone, { recursive: true });
    await writeFile(path.join(zone, 'type'), `${type}\n`);
    await writeFile(path.join(zone, 'temp'), `${temp}\n`);
  }
  return dir;
}

t.test('CPU temperature: the CPU zone in millidegrees, else zone 0; null without zones', async (t) => {
  const root = t.testdir();
  // A Pi 5 has cpu-thermal as zone 0; a laptop often lists acpitz before x86_pkg_temp.
  const pi = await thermalTree(path.join(root, 'pi'), [['cpu-thermal', '52615']]);
  t.same(await readCpuTemperature(pi), { celsius: 52.6, source: `${path.join(pi, 'thermal_zone0')} (cpu-thermal)` });
  const laptop = await thermalTree(path.join(root, 'laptop'), [
    ['acpitz', '27800'],
    ['iwlwifi_1', 'N/A'],
    ['x86_pkg_temp', '61000'],
  ]);
  t.equal((await readCpuTemperature(laptop))?.celsius, 61);
  const other = await thermalTree(path.join(root, 'other'), [['battery', '30500']]);
  t.equal((await readCpuTemperature(other))?.celsius, 30.5, 'no CPU zone: the first readable one');
  t.equal(await readCpuTemperature(t.testdir()), null, 'no zone in the folder');
  t.equal(await readCpuTemperature('/nonexistent/thermal'), null);
});

t.test('vcgencmd get_throttled decoded bit by bit', async (t) => {
  // 0x50005: under-voltage now (bit 0), throttled now (bit 2), both occurred (16, 18) — a weak power supply.
  t.same(parseThrottled('throttled=0x50005\n'), {
    raw: '0x50005',
    under_voltage: true,
    frequency_capped: false,
    throttled: true,
    soft_temperature_limit: false,
    under_voltage_occurred: true,
    frequency_capped_occurred: false,
    throttled_occurred: true,
    soft_temperature_limit_occurred: false,
  });
  t.equal(parseThrottled('throttled=0x0')?.throttled_occurred, false);
  t.equal(parseThrottled('throttled=0x80000')?.soft_temperature_limit_occurred, true);
  t.equal(parseThrottled('VCHI initialization failed'), null);
});

t.test('readThrottled runs the program, null when it is missing or fails', async (t) => {
  const dir = t.testdir();
  const ok = path.join(dir, 'vcgencmd');
  await writeFile(ok, '#!/bin/sh\n[ "$1" = get_throttled ] && echo "throttled=0x20002" && exit 0\nexit 1\n');
  await chmod(ok, 0o755);
  t.same((await readThrottled(ok))?.frequency_capped, true);
  const failing = path.join(dir, 'vcgencmd-fail');
  await writeFile(failing, '#!/bin/sh\necho "VCHI initialization failed" >&2\nexit 255\n');
  await chmod(failing, 0o755);
  t.equal(await readThrottled(failing), null);
  t.equal(await readThrottled(path.join(dir, 'missing')), null);
});

t.test('SystemSampler: memory, CPU percent, temperature and throttling from a stand-in Pi', async (t) => {
  const { SystemSampler } = await import('../../src/stats/sampler.js');
  const root = t.testdir();
  const thermal = await thermalTree(path.join(root, 'thermal'), [['cpu-thermal', '48312']]);
  const bin = path.join(root, 'bin');
  await mkdir(bin);
  await writeFile(path.join(bin, 'vcgencmd'), '#!/bin/sh\necho throttled=0x50000\n');
  await chmod(path.join(bin, 'vcgencmd'), 0o755);
  const sampler = new SystemSampler({ thermalRoot: thermal, pathEnv: bin });
  // Burn 200 ms of CPU time between two samples: cpu_percent must match the CPU time over the wall time,
  // measured here from process.cpuUsage() (so a busy machine, which stretches the wall time, changes both alike).
  await sampler.sample();
  const cpu0 = process.cpuUsage();
  const wall0 = performance.now();
  while (process.cpuUsage(cpu0).user < 200_000) Math.sqrt(Math.random());
  const s = await sampler.sample();
  const used = process.cpuUsage(cpu0);
  const expected = ((used.user + used.system) / 1000 / (performance.now() - wall0)) * 100;
  t.ok(Math.abs(s.cpu_percent - expected) < 15, `cpu_percent ${s.cpu_percent} after a busy loop, ${expected.toFixed(1)} measured here`);
  t.equal(s.cpu_temperature_c, 48.3);
  t.equal(s.throttled?.under_voltage_occurred, true);
  t.equal(s.throttled?.under_voltage, false);
  t.ok(s.rss_bytes > 10 * 1024 * 1024 && s.rss_bytes === Math.floor(s.rss_bytes), `rss ${s.rss_bytes} bytes`);
  const none = await new SystemSampler({ thermalRoot: path.join(root, 'none'), pathEnv: path.join(root, 'empty') }).sample();
  t.same([none.cpu_temperature_c, none.cpu_temperature_source, none.throttled], [null, null, null], 'a machine without sensors or vcgencmd');
});
