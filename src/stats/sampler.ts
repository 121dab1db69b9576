import { access, constants as fsConstants } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { SystemStats } from '../core/types.js';
import { readCpuTemperature, readThrottled, THERMAL_ROOT } from './system.js';

/** Options of `SystemSampler`; defaults read the real machine. */
export interface SystemSamplerOptions {
  /** Thermal zones folder. Default `/sys/class/thermal`. */
  readonly thermalRoot?: string;
  /** `vcgencmd` program: a name looked up on PATH or a path. Default `vcgencmd`. */
  readonly vcgencmd?: string;
  /** PATH to look `vcgencmd` up in. Default `process.env.PATH`. */
  readonly pathEnv?: string;
}

/** The path of `program` (a name looked up on `pathEnv`, or a path) when it is an executable file, else null. */
async function findExecutable(program: string, pathEnv: string): Promise<string | null> {
  const candidates = program.includes('/')
    ? [program]
    : pathEnv
        .split(path.delimiter)
        .filter(Boolean)
        .map((d) => path.join(d, program));
  for (const c of candidates) {
    const ok = await new Promise<boolean>((resolve) => access(c, fsConstants.X_OK, (err) => resolve(!err)));
    if (ok) return c;
  }
  return null;
}

/**
 * Takes the `system` readings of `<base>/stats` (see `readCpuTemperature`,
 * `readThrottled`): memory from `process.memoryUsage()`, CPU percent from
 * `process.cpuUsage()` between two samples, the 1-minute load average, the
 * CPU temperature and, where `vcgencmd` exists, the firmware's throttling
 * flags. Whether `vcgencmd` exists is looked up once, so a machine without
 * it never spawns a process per sample.
 */
export class SystemSampler {
  private readonly thermalRoot: string;
  private readonly vcgencmd: string;
  private readonly pathEnv: string;
  private vcgencmdPath: Promise<string | null> | undefined;
  private lastCpu = process.cpuUsage();
  private lastAt = performance.now();

  constructor(options: SystemSamplerOptions = {}) {
    this.thermalRoot = options.thermalRoot ?? THERMAL_ROOT;
    this.vcgencmd = options.vcgencmd ?? 'vcgencmd';
    this.pathEnv = options.pathEnv ?? process.env.PATH ?? '';
  }

  /** One sample; never throws (missing readings are null). */
  async sample(): Promise<SystemStats> {
    const now = performance.now();
    const cpu = process.cpuUsage(this.lastCpu);
    const elapsedMs = now - this.lastAt;
    this.lastCpu = process.cpuUsage();
    this.lastAt = now;
    // cpuUsage is in µs: (user + system) µs / (elapsed ms × 1000) × 100 %.
    const cpuPercent = elapsedMs > 0 ? ((cpu.user + cpu.system) / (elapsedMs * 1000)) * 100 : 0;
    this.vcgencmdPath ??= findExecutable(this.vcgencmd, this.pathEnv);
    const [temperature, throttled] = await Promise.all([
      readCpuTemperature(this.thermalRoot),
      this.vcgencmdPath.then((file) => (file !== null ? readThrottled(file) : null)),
    ]);
    const mem = process.memoryUsage();
    return {
      rss_bytes: mem.rss,
      heap_used_bytes: mem.heapUsed,
      cpu_percent: Math.round(cpuPercent * 10) / 10,
      load_1m: Math.round(loadavg()[0]! * 100) / 100,
      cpu_temperature_c: temperature?.celsius ?? null,
      cpu_temperature_source: temperature?.source ?? null,
      throttled,
    };
  }
}
