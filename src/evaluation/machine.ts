import { readFileSync } from 'node:fs';
import os from 'node:os';

/** Where and when figures were measured, printed in every report. */
export interface MeasuredOn {
  /** ISO 8601 time the run ended, e.g. `2026-12-02T16:07:44.000Z`. */
  readonly date: string;
  /** The board when the device tree names it (`Raspberry Pi 4 Model B Rev 1.4`), else the CPU model. */
  readonly machine: string;
  /** CPU model as the kernel reports it. */
  readonly cpu: string;
  /** Logical CPUs. */
  readonly cores: number;
  /** e.g. `arm64`, `x64`. */
  readonly arch: string;
  /** e.g. `Debian GNU/Linux 12 (bookworm), Linux 6.1.0-18-amd64`. */
  readonly os: string;
  /** Node.js version, e.g. `v20.20.2`. */
  readonly node: string;
  /** The inference library and its version, e.g. `TFLite 2.9.0`. */
  readonly library: string;
  /** Engine the models ran on, e.g. `tflite`; several joined with `, ` when they differ per model. */
  readonly engine: string;
  /** Interpreter threads, e.g. `1`; several joined with `, ` when they differ per model. */
  readonly threads: string;
}

function readText(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/**
 * Describes this machine: the board from `/proc/device-tree/model` (set on a
 * Raspberry Pi), the CPU model from `os.cpus()` (on arm64 Linux often empty:
 * then `/proc/cpuinfo`'s `Model` or `CPU part`), the distribution from
 * `/etc/os-release` (`PRETTY_NAME`) and the kernel release.
 */
export function describeMachine(run: { library: string; engine: string; threads: string; date?: Date }): MeasuredOn {
  const cpus = os.cpus();
  let cpu = cpus[0]?.model?.trim() ?? '';
  if (!cpu || cpu === 'unknown') {
    const info = readText('/proc/cpuinfo') ?? '';
    cpu = /^Model\s*:\s*(.+)$/m.exec(info)?.[1]?.trim() ?? /^CPU part\s*:\s*(.+)$/m.exec(info)?.[1]?.trim() ?? 'unknown CPU';
  }
  const board = readText('/proc/device-tree/model')?.replace(/\0/g, '').trim();
  const distro = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readText('/etc/os-release') ?? '')?.[1];
  return {
    date: (run.date ?? new Date()).toISOString(),
    machine: board || cpu,
    cpu,
    cores: cpus.length,
    arch: os.arch(),
    os: `${distro ? `${distro}, ` : ''}${os.type()} ${os.release()}`,
    node: process.version,
    library: run.library,
    engine: run.engine,
    threads: run.threads,
  };
}
