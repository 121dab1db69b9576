import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { HealthProblem, HealthRecord } from '../service/health-file.js';
import { processAlive } from './atomic.js';

/** A health file older than this many write intervals (and at least {@link MIN_STALE_MS}) is stale. */
const STALE_INTERVALS = 3;
/** Least age, ms, at which a health file counts as stale (a busy Pi may delay a write). */
const MIN_STALE_MS = 10_000;

/** The verdict `edge-classifier health` prints and the health gates wait for. */
export interface HealthReport {
  readonly healthy: boolean;
  /** Why not healthy, one sentence each; empty when healthy. */
  readonly reasons: string[];
  readonly file: string;
  readonly pid: number | null;
  /** Release folder name the daemon runs from (`releases/<version>`), else its package version. */
  readonly release: string | null;
  readonly version: string | null;
  readonly model: { readonly path: string; readonly sha256: string; readonly name: string } | null;
  readonly ready: boolean;
  /** When the running configuration became ready (first frame classified), ISO 8601. */
  readonly since: string | null;
  readonly fps: number | null;
  readonly classified: number | null;
  readonly reloads: number | null;
  readonly mqtt_connected: boolean | null;
  readonly problems: readonly HealthProblem[];
  readonly updated_at: string | null;
  /** The record as read, for callers that need more. */
  readonly record: HealthRecord | null;
}

/** Reads and parses the health file; null when it does not exist or cannot be parsed (a write in progress is never seen: it is renamed in). */
export async function readHealthRecord(file: string): Promise<HealthRecord | null> {
  try {
    const r = JSON.parse(await readFile(file, 'utf8')) as HealthRecord;
    return typeof r === 'object' && r !== null && r.format === 1 ? r : null;
  } catch {
    return null;
  }
}

/**
 * Judges a health record: healthy when the daemon's process is alive, the
 * file is fresh, a configuration is running and ready (≥ 1 frame
 * classified), frames are not stalled and no problem of severity `error` is
 * raised (warnings are listed, not counted).
 */
export function judgeHealth(record: HealthRecord | null, file: string, now = Date.now()): HealthReport {
  const reasons: string[] = [];
  if (record === null) {
    reasons.push(`no health file at ${file}: the daemon is not running, or not yet started`);
    return {
      healthy: false,
      reasons,
      file,
      pid: null,
      release: null,
      version: null,
      model: null,
      ready: false,
      since: null,
      fps: null,
      classified: null,
      reloads: null,
      mqtt_connected: null,
      problems: [],
      updated_at: null,
      record,
    };
  }
  if (!processAlive(record.pid)) reasons.push(`the daemon's process ${record.pid} is gone (the file is left from an earlier run)`);
  const age = now - Date.parse(record.updated_at);
  const staleMs = Math.max(MIN_STALE_MS, STALE_INTERVALS * record.interval_ms);
  if (!(age <= staleMs))
    reasons.push(`the health file was last written ${Math.round(age / 1000)} s ago (stale after ${Math.round(staleMs / 1000)} s): the daemon is hung`);
  const p = record.pipeline;
  if (record.state !== 'running' || p === null) reasons.push(`the daemon is ${record.state === 'running' ? 'not running a configuration' : record.state}`);
  else {
    if (!p.ready) reasons.push('not ready: no frame classified yet');
    if (p.stalled) reasons.push(`no frame classified since ${p.last_classified_at ?? 'start'}: the source has stalled`);
  }
  const problems = p?.problems ?? [];
  for (const pr of problems) if (pr.severity === 'error') reasons.push(`problem ${pr.id}: ${pr.message}`);
  const parent = path.basename(path.dirname(record.program_dir));
  return {
    healthy: reasons.length === 0,
    reasons,
    file,
    pid: record.pid,
    release: parent === 'releases' ? path.basename(record.program_dir) : record.version,
    version: record.version,
    model: record.model,
    ready: p?.ready ?? false,
    since: record.ready_at,
    fps: p?.fps ?? null,
    classified: p?.classified ?? null,
    reloads: record.reloads,
    mqtt_connected: p?.mqtt_connected ?? null,
    problems,
    updated_at: record.updated_at,
    record,
  };
}

/** The health report as human lines (for `edge-classifier health` without `--json`). */
export function formatHealth(r: HealthReport): string {
  const lines = [`${r.healthy ? 'healthy' : 'NOT healthy'}${r.pid !== null ? ` (pid ${r.pid})` : ''}`];
  for (const why of r.reasons) lines.push(`  - ${why}`);
  if (r.record) {
    lines.push(`release: ${r.release ?? '?'} (version ${r.version})`);
    if (r.model) lines.push(`model: ${r.model.name} sha256 ${r.model.sha256.slice(0, 12)}… (${r.model.path})`);
    lines.push(`ready since: ${r.since ?? 'not ready'}; reloads: ${r.reloads}`);
    if (r.classified !== null) lines.push(`classified: ${r.classified} frames, ${r.fps?.toFixed(1)} fps; mqtt ${r.mqtt_connected ? 'connected' : 'offline'}`);
    for (const p of r.problems) lines.push(`${p.severity}: ${p.id}: ${p.message} — ${p.hint}`);
    lines.push(`updated: ${r.updated_at}`);
  }
  return lines.join('\n');
}

/** The report without the raw record, for `--json`. */
export function healthJson(r: HealthReport): Omit<HealthReport, 'record'> {
  const { record: _record, ...rest } = r;
  return rest;
}
