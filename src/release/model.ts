import { existsSync } from 'node:fs';
import { chmod, chown, copyFile, mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { checkLabelCount, readLabelsFile } from '../inference/labels.js';
import { readModelInfo } from '../inference/tflite-model.js';
import { acquireLock, fsyncDir, OperationError, sha256File, writeFileAtomic } from './atomic.js';
import { waitForHealthy } from './gate.js';
import { type HealthReport, healthJson, judgeHealth, readHealthRecord } from './health.js';
import { History } from './history.js';
import type { Layout } from './layout.js';
import { type DeviceContext, doctorFindings, type SwitchResult } from './releases.js';
import { selfTestRelease } from './self-test.js';
import { serviceNode } from './unit-file.js';

/** Sample frames classified by the model check (more than one: a model that only fails on some input is rarer, but a file that loads and then fails is not). */
const CHECK_FRAMES = 3;

/** A model (and labels) to put into the configuration. */
interface ModelChoice {
  /** Value for `model.path` in the configuration; null: none (the release's default model). */
  readonly modelPath: string | null;
  /** Value for `model.labels`; null: the labels in the model's metadata. */
  readonly labelsPath: string | null;
  readonly sha256: string;
}

/** Copies `file` into `<dir>/<name>` through a temporary file and rename; an ENOSPC leaves nothing behind. */
async function storeFile(file: string, dir: string, name: string): Promise<string> {
  const dest = path.join(dir, name);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  if (existsSync(dest)) return dest;
  const tmp = `${dest}.tmp-${process.pid}`;
  try {
    await copyFile(file, tmp);
    // Readable by the service user whatever the installer's umask: models are not secret.
    await chmod(tmp, 0o644);
    await rename(tmp, dest);
  } catch (err) {
    await rm(tmp, { force: true });
    if ((err as NodeJS.ErrnoException).code === 'ENOSPC') {
      throw new OperationError('disk', `no space left in ${dir} to store ${path.basename(file)}`, 'free space, e.g. edge-classifier release prune --keep 2');
    }
    throw err;
  }
  await fsyncDir(dir);
  return dest;
}

/** The program that runs the checks: the current release (what the daemon runs), else this one. */
function checkingProgram(layout: Layout, thisProgram: string): string {
  return existsSync(path.join(layout.current, 'dist', 'cli.js')) ? layout.current : thisProgram;
}

/**
 * Checks a model before it is switched to: its output size matches its
 * labels (the `--labels` file, else the labels in its metadata; a model
 * with neither is refused), and it loads on the configured engine and
 * classifies the sample frames, run by the current release in a child
 * process with the live configuration (an Edge TPU delegate that crashes
 * takes only the child down).
 * @throws OperationError (`labels` or `model`).
 */
async function checkModel(ctx: DeviceContext, thisProgram: string, model: string, labels: string | null): Promise<void> {
  let info: Awaited<ReturnType<typeof readModelInfo>>;
  try {
    info = await readModelInfo(model);
  } catch (err) {
    throw new OperationError('model', `${path.basename(model)} is not a usable TFLite model: ${(err as Error).message}`);
  }
  const out = info.outputs[0];
  const classes = out?.shape[out.shape.length - 1];
  if (classes === undefined) throw new OperationError('model', `${path.basename(model)} has no output tensor`);
  let count: number;
  let source: string;
  if (labels !== null) {
    try {
      count = (await readLabelsFile(labels)).length;
    } catch (err) {
      throw new OperationError('labels', (err as Error).message);
    }
    source = path.basename(labels);
  } else if (info.metadata?.labels) {
    count = info.metadata.labels.length;
    source = `the labels in ${path.basename(model)}'s metadata`;
  } else {
    throw new OperationError(
      'labels',
      `${path.basename(model)} carries no labels in its metadata and no labels file was given`,
      'pass --labels FILE (one label per line, in output order)',
    );
  }
  const mismatch = checkLabelCount(count, classes, source, `the output ${out!.name} [${out!.shape.join(',')}]`);
  if (mismatch) throw new OperationError('labels', mismatch, 'use the labels file that belongs to this model');
  ctx.progress(`model check: ${classes} classes, ${count} labels (${source})`);

  const program = checkingProgram(ctx.layout, thisProgram);
  await selfTestRelease({
    dir: program,
    node: serviceNode(ctx.layout, ctx.node).path,
    config: existsSync(ctx.layout.configFile) ? ctx.layout.configFile : undefined,
    model,
    labels: labels ?? undefined,
    samples: [ctx.layout.samplesDir, path.join(program, 'samples')],
    frames: CHECK_FRAMES,
    progress: ctx.progress,
    env: ctx.env,
  }).catch((err: unknown) => {
    if (err instanceof OperationError) throw new OperationError('model', `the model does not work on this device's engine: ${err.message}`, err.fix);
    throw err;
  });
}

/** Writes `model.path`/`model.labels` into the configuration text, keeping its comments and layout. */
function withModel(text: string, choice: { modelPath: string | null; labelsPath: string | null }): string {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) throw new OperationError('config', `the configuration cannot be parsed: ${doc.errors[0]!.message}`);
  if (choice.modelPath === null) doc.deleteIn(['model', 'path']);
  else doc.setIn(['model', 'path'], choice.modelPath);
  doc.setIn(['model', 'labels'], choice.labelsPath);
  // lineWidth 0: a long path stays on one line (the default folds it at 80 columns with `\` escapes, which grep and a reader do not follow).
  return doc.toString({ lineWidth: 0 });
}

/** Replaces the configuration file atomically, keeping its mode and owner. */
async function writeConfig(file: string, text: string): Promise<void> {
  const st = await stat(file);
  await writeFileAtomic(file, text, st.mode & 0o7777);
  await chown(file, st.uid, st.gid).catch(() => undefined);
}

/** Options of {@link installModel} and {@link rollbackModel}. */
export interface ModelOptions {
  readonly healthTimeoutMs: number;
  /** This program's root folder (runs the checks when there is no current release). */
  readonly programDir: string;
}

/**
 * Switches the live configuration to `choice` and holds the running daemon
 * to the health gate after a reload (SIGHUP through the unit's
 * `ExecReload=`; no restart: the gate requires the same pid): the daemon
 * reports one more reload, runs the model with the expected sha256, and is
 * healthy. On failure the configuration file is put back byte for byte,
 * the daemon reloaded again and held to the same gate with the old model.
 */
async function switchModel(ctx: DeviceContext, choice: ModelChoice, action: 'model-install' | 'model-rollback', o: ModelOptions): Promise<SwitchResult> {
  const { layout, manager, progress } = ctx;
  const history = new History(layout.historyFile);
  if (!existsSync(layout.configFile))
    throw new OperationError('config', `no configuration at ${layout.configFile}`, 'install one (bootstrap does) before installing models');
  const st = await manager.show();
  const before = await readHealthRecord(layout.healthFile);
  if (st.activeState !== 'active' || before === null || before.pid !== st.mainPid) {
    throw new OperationError(
      'service',
      `the service is not running (${st.activeState}${before && before.pid !== st.mainPid ? `, health file from pid ${before.pid}` : ''}): a model is switched on a running daemon`,
      `start it (systemctl start ${manager.unit}) or activate a release first`,
    );
  }
  const previousSha = before.model?.sha256 ?? null;
  if (previousSha === choice.sha256) {
    progress(`model ${choice.sha256.slice(0, 12)}… is already running`);
    return {
      ok: true,
      action,
      target: choice.sha256,
      previous: previousSha,
      rolled_back: false,
      healthy_at_end: true,
      health: healthJson(judgeHealth(before, layout.healthFile)),
    };
  }
  const original = await readFile(layout.configFile, 'utf8');
  const originalDoc = parseDocument(original);
  const previousValues = {
    path: (originalDoc.getIn(['model', 'path']) as string | undefined) ?? null,
    labels: (originalDoc.getIn(['model', 'labels']) as string | null | undefined) ?? null,
  };
  const gate = { manager, healthFile: layout.healthFile, healthTimeoutMs: o.healthTimeoutMs, progress };

  const reloadAndWait = async (sha: string) => {
    const rec = await readHealthRecord(layout.healthFile);
    const requestedAt = new Date().toISOString();
    await manager.reload();
    return waitForHealthy(gate, { pid: st.mainPid, modelSha256: sha, reloadsAbove: rec?.reloads ?? 0, reloadRequestedAt: requestedAt });
  };

  progress(`switching model.path to ${choice.modelPath ?? "the release's default"} and reloading (no restart)`);
  await writeConfig(layout.configFile, withModel(original, choice));
  try {
    const health = await reloadAndWait(choice.sha256);
    await history.append({
      event: 'model-activated',
      version: choice.sha256,
      previous: previousSha,
      detail: {
        path: choice.modelPath,
        labels: choice.labelsPath,
        previous_path: previousValues.path,
        previous_labels: previousValues.labels,
        previous_resolved: before.model?.path ?? null,
        rollback: action === 'model-rollback',
      },
    });
    progress(`model ${health.model?.name ?? choice.sha256.slice(0, 12)} is running and healthy`);
    return { ok: true, action, target: choice.sha256, previous: previousSha, rolled_back: false, healthy_at_end: true, health: healthJson(health) };
  } catch (err) {
    if (!(err instanceof OperationError)) throw err;
    progress(`health gate failed: ${err.message}`);
    progress('rolling back: the previous configuration, reload');
    await writeConfig(layout.configFile, original);
    let rollbackHealthy = true;
    let health: HealthReport | undefined;
    let rollbackReason: string | undefined;
    try {
      health = previousSha ? await reloadAndWait(previousSha) : undefined;
    } catch (e2) {
      rollbackHealthy = false;
      rollbackReason = (e2 as Error).message;
      progress(`the previous model is not healthy either: ${rollbackReason}`);
    }
    const findings = await doctorFindings(ctx);
    await history.append({
      event: 'model-rolled-back',
      version: choice.sha256,
      to: previousSha,
      check: err.check,
      reason: err.message,
      detail: { path: choice.modelPath, rollback_healthy: rollbackHealthy, ...(rollbackReason ? { rollback_reason: rollbackReason } : {}) },
    });
    return {
      ok: false,
      action,
      target: choice.sha256,
      previous: previousSha,
      rolled_back: true,
      rollback_healthy: rollbackHealthy,
      healthy_at_end: rollbackHealthy,
      check: err.check,
      reason: err.message,
      fix: err.fix,
      health: health ? healthJson(health) : undefined,
      doctor: findings,
    };
  }
}

/**
 * `model install FILE [--labels FILE]`: stores the model (and labels) by
 * sha256 under the state folder (`models/<sha256>/<name>`), checks it
 * (labels match the output size; it loads on the configured engine and
 * classifies the sample frames), then switches the configuration's
 * `model.path`/`model.labels` atomically and has the daemon reload without a
 * restart, with the health gate and a rollback to the previous model.
 * @throws OperationError for a refused model (nothing switched); a failed
 * gate is a result with `ok: false`.
 */
export async function installModel(ctx: DeviceContext, file: string, labels: string | undefined, o: ModelOptions): Promise<SwitchResult> {
  const { layout, progress } = ctx;
  await mkdir(layout.stateDir, { recursive: true });
  const unlock = await acquireLock(layout.lockFile, `model install ${path.basename(file)}`);
  try {
    for (const f of [file, labels]) if (f !== undefined && !existsSync(f)) throw new OperationError('model', `${f}: no such file`);
    const sha = await sha256File(file);
    const stored = await storeFile(file, path.join(layout.modelsDir, sha), path.basename(file));
    let storedLabels: string | null = null;
    if (labels !== undefined) {
      const lsha = await sha256File(labels);
      storedLabels = await storeFile(labels, path.join(layout.modelsDir, 'labels', lsha), path.basename(labels));
    }
    progress(`stored ${path.relative(layout.stateDir, stored)}`);
    try {
      await checkModel(ctx, o.programDir, stored, storedLabels);
    } catch (err) {
      if (err instanceof OperationError)
        await new History(layout.historyFile).append({
          event: 'model-failed',
          version: sha,
          check: err.check,
          reason: err.message,
          detail: { file: path.basename(file) },
        });
      throw err;
    }
    return await switchModel(ctx, { modelPath: stored, labelsPath: storedLabels, sha256: sha }, 'model-install', o);
  } finally {
    await unlock();
  }
}

/**
 * `model rollback`: puts back the model (and labels) that ran before the
 * last model switch that succeeded, with the same checks, reload and gate.
 * @throws OperationError (`no-previous`) when no model switch is recorded.
 */
export async function rollbackModel(ctx: DeviceContext, o: ModelOptions): Promise<SwitchResult> {
  const { layout } = ctx;
  const unlock = await acquireLock(layout.lockFile, 'model rollback');
  try {
    const events = await new History(layout.historyFile).read();
    const last = [...events].reverse().find((e) => e.event === 'model-activated');
    if (!last?.previous)
      throw new OperationError('no-previous', 'no earlier model is recorded to roll back to', 'install a model with edge-classifier model install FILE');
    const detail = (last.detail ?? {}) as { previous_path?: string | null; previous_labels?: string | null; previous_resolved?: string | null };
    const configDir = path.dirname(layout.configFile);
    const modelPath = detail.previous_path ?? null;
    // No model.path before: the release's default model, which the daemon reported running.
    const resolved = modelPath === null ? (detail.previous_resolved ?? null) : path.resolve(configDir, modelPath);
    if (resolved === null || !existsSync(resolved))
      throw new OperationError(
        'no-previous',
        `the previous model ${resolved ?? ''} is no longer there`,
        'install it again with edge-classifier model install FILE',
      );
    const labels = detail.previous_labels ? path.resolve(configDir, detail.previous_labels) : null;
    await checkModel(ctx, o.programDir, resolved, labels);
    return await switchModel(ctx, { modelPath, labelsPath: detail.previous_labels ?? null, sha256: await sha256File(resolved) }, 'model-rollback', o);
  } finally {
    await unlock();
  }
}
