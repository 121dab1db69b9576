import { setTimeout as sleep } from 'node:timers/promises';
import { OperationError } from './atomic.js';
import { type HealthReport, judgeHealth, readHealthRecord } from './health.js';
import type { ServiceManager, UnitStatus } from './service-manager.js';

/** How often the gate looks at the unit and the health file, ms. */
const POLL_MS = 250;
/** Time allowed beyond the unit's own `TimeoutStartSec=` for systemd to act on it, ms. */
const START_SLACK_MS = 5_000;
/** Longest wait for a start whatever `TimeoutStartSec=` says (`infinity`), ms. */
const MAX_START_WAIT_MS = 600_000;

/** A line of progress for the operator (stderr on a terminal, the fleet's per-host log). */
export type Progress = (line: string) => void;

/** Options of the health gates. */
export interface GateOptions {
  readonly manager: ServiceManager;
  /** The daemon's health file. */
  readonly healthFile: string;
  /** How long the health conditions may take, ms (`--health-timeout`). */
  readonly healthTimeoutMs: number;
  readonly progress: Progress;
}

function describeExit(st: UnitStatus): string {
  const how =
    st.result === 'exit-code'
      ? `exit status ${st.execMainStatus}${st.execMainStatus === 78 ? ' (EX_CONFIG: the configuration or a part of the release cannot work)' : ''}`
      : `result ${st.result}`;
  return `${how} (ActiveState=${st.activeState}, SubState=${st.subState})`;
}

/**
 * Restarts the unit and waits for it the way `systemctl restart` does: for
 * `Type=notify` the job ends when the new main process has sent READY=1, or
 * fails when it exits, or when the unit's `TimeoutStartSec=` passes.
 * The start rate limit is reset first (`systemctl reset-failed`): each
 * failed activation costs two or three starts (the new release, its
 * automatic restart, the rollback), and the unit's `StartLimitBurst=10`
 * in 300 s would otherwise refuse the rollback's start after a few retried
 * pushes, leaving the device stopped on the old release.
 * @returns the new main pid.
 * @throws OperationError (`start`) with systemd's account of the failure.
 */
export async function restartAndWaitReady(o: GateOptions): Promise<number> {
  const before = await o.manager.show();
  const started = Date.now();
  const limit = Math.min(before.timeoutStartMs, MAX_START_WAIT_MS) + START_SLACK_MS;
  o.progress(`restarting ${o.manager.unit} (READY expected within ${Math.round(before.timeoutStartMs / 1000)} s)`);
  // A failure here is not the restart's: the restart says what is wrong.
  await o.manager.resetFailed().catch((err: Error) => o.progress(`reset-failed did not work (${err.message}); restarting anyway`));
  try {
    await o.manager.restart(limit);
  } catch (err) {
    const st = await o.manager.show().catch(() => undefined);
    throw new OperationError(
      'start',
      `the service did not start: ${(err as Error).message}${st ? `; ${describeExit(st)}` : ''}`,
      `journalctl -u ${o.manager.unit} -n 50 shows why`,
    );
  }
  const st = await o.manager.show();
  if (st.activeState !== 'active' || st.mainPid <= 0) {
    throw new OperationError('start', `the service is not running after its restart: ${describeExit(st)}`, `journalctl -u ${o.manager.unit} -n 50 shows why`);
  }
  o.progress(`service active (READY) as pid ${st.mainPid} after ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return st.mainPid;
}

/** Conditions on the health record beyond "healthy". */
export interface HealthExpectation {
  /** The daemon's pid must be this one (the process systemd started, or the one that was reloaded). */
  readonly pid: number;
  /** The model in use must have this sha256. */
  readonly modelSha256?: string;
  /** The daemon must have loaded more configurations than this (a reload happened). */
  readonly reloadsAbove?: number;
  /** ISO time after which a failed reload counts (the reload request). */
  readonly reloadRequestedAt?: string;
}

/**
 * Waits until the daemon's own health file shows the expected process
 * healthy — ready, ≥ 1 frame classified, frames not stalled, no `error`
 * problem — in two successive writes (so a daemon that dies right after
 * its first frame is not passed), while systemd keeps the same main pid
 * active, within `healthTimeoutMs`.
 * @returns the last report.
 * @throws OperationError (`health`) with the last reasons when it is not
 * healthy in time, at once when the process is replaced or the unit fails,
 * or when the daemon reports that the reload failed.
 */
export async function waitForHealthy(o: GateOptions, expect: HealthExpectation): Promise<HealthReport> {
  const started = Date.now();
  let lastReasons: string[] = ['no health record from the daemon yet'];
  let firstHealthyAt: string | undefined;
  for (;;) {
    const st = await o.manager.show();
    if (st.mainPid !== expect.pid || (st.activeState !== 'active' && st.activeState !== 'reloading')) {
      throw new OperationError(
        'health',
        `the service did not stay up: pid ${expect.pid} was replaced or stopped (${describeExit(st)}, MainPID=${st.mainPid})`,
        `journalctl -u ${o.manager.unit} -n 50 shows why`,
      );
    }
    const record = await readHealthRecord(o.healthFile);
    const report = judgeHealth(record, o.healthFile);
    const reasons = [...report.reasons];
    if (record !== null) {
      if (record.pid !== expect.pid) reasons.push(`the health file is from pid ${record.pid}, not the service's pid ${expect.pid}`);
      else {
        const lr = record.last_reload;
        if (expect.reloadRequestedAt !== undefined && lr && !lr.ok && lr.at >= expect.reloadRequestedAt) {
          throw new OperationError('reload', `the daemon refused the new configuration: ${lr.error}`, 'the running configuration was kept');
        }
        if (expect.reloadsAbove !== undefined && record.reloads <= expect.reloadsAbove) reasons.push('the daemon has not reloaded yet');
        else if (expect.modelSha256 !== undefined && record.model?.sha256 !== expect.modelSha256) {
          if (expect.reloadsAbove !== undefined) {
            throw new OperationError(
              'reload',
              `the daemon reloaded but runs model ${record.model?.path ?? 'none'} (sha256 ${record.model?.sha256.slice(0, 12) ?? '-'}…), not the one with sha256 ${expect.modelSha256.slice(0, 12)}… (a CPU fallback, or a model override in its environment)`,
              'edge-classifier health and the daemon log say why',
            );
          }
          reasons.push(`the daemon runs model ${record.model?.sha256.slice(0, 12) ?? 'none'}…, expected ${expect.modelSha256.slice(0, 12)}…`);
        }
      }
    }
    if (reasons.length === 0 && record !== null) {
      if (firstHealthyAt === undefined) firstHealthyAt = record.updated_at;
      else if (record.updated_at !== firstHealthyAt) {
        o.progress(
          `healthy: ${report.classified} frames classified, ${report.fps?.toFixed(1)} fps, no error problem (${((Date.now() - started) / 1000).toFixed(1)} s)`,
        );
        return report;
      }
    } else {
      firstHealthyAt = undefined;
      lastReasons = reasons;
    }
    if (Date.now() - started > o.healthTimeoutMs) {
      throw new OperationError(
        'health',
        `not healthy within ${Math.round(o.healthTimeoutMs / 1000)} s: ${lastReasons.join('; ')}`,
        `edge-classifier health and journalctl -u ${o.manager.unit} show more`,
      );
    }
    await sleep(POLL_MS);
  }
}
