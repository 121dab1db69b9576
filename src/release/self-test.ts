import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { OperationError } from './atomic.js';
import { execCapture, lastLines } from './exec.js';
import type { Progress } from './gate.js';

/** Image files a sample folder may hold (what sharp decodes; BMP is not among them). */
const SAMPLE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp']);
/** Longest a self-test step may take, ms (a big model on a Zero 2 W loads slowly). */
const STEP_TIMEOUT_MS = 180_000;

/** Options of {@link selfTestRelease}. */
export interface SelfTestOptions {
  /** The release folder to test (unpacked, not yet activatable). */
  readonly dir: string;
  /** The Node.js that will run it (the unit's). */
  readonly node: string;
  /** The live configuration file, when the device has one. */
  readonly config?: string;
  /** `--source` for `run --check-config` (pack has no camera; a device uses its configured one). */
  readonly source?: string;
  /** Overrides for `classify` (model install tests a model before the configuration names it). */
  readonly model?: string;
  readonly labels?: string;
  /** Folders to take sample frames from, first one holding images wins. */
  readonly samples: readonly string[];
  readonly progress: Progress;
  readonly env?: NodeJS.ProcessEnv;
  /** How many sample frames to classify (default 1). */
  readonly frames?: number;
}

/** Result of one classified sample frame, as `classify --json` prints it. */
export interface SampleResult {
  readonly file: string;
  readonly classes: readonly { index: number; label: string; score: number }[];
}

/** Sample frames from the first folder of `folders` that holds any, in name order. */
async function sampleFrames(folders: readonly string[]): Promise<string[]> {
  for (const dir of folders) {
    if (!existsSync(dir)) continue;
    const files = (await readdir(dir)).filter((f) => SAMPLE_EXTENSIONS.has(path.extname(f).toLowerCase())).sort();
    if (files.length > 0) return files.map((f) => path.join(dir, f));
  }
  return [];
}

/**
 * Runs a release the way the unit will, before it can be activated:
 * `run --check-config --self-test` with the live configuration (loads the
 * TFLite library and the model on the configured engine, sharp, the GPIO
 * backend — exit 78 naming the part that cannot load), then `classify --json`
 * of sample frames with the live model, which must give a result.
 * @returns the classified samples.
 * @throws OperationError (`self-test`) with the release's own message.
 */
export async function selfTestRelease(o: SelfTestOptions): Promise<SampleResult[]> {
  const cli = path.join(o.dir, 'dist', 'cli.js');
  if (!existsSync(cli)) throw new OperationError('self-test', `${cli} is missing: the release is incomplete`);
  const env = { ...(o.env ?? process.env) };
  // The self-test is not the service: it must not talk to systemd or write the service's health file.
  delete env.NOTIFY_SOCKET;
  delete env.RUNTIME_DIRECTORY;
  delete env.WATCHDOG_USEC;
  const configArgs = o.config ? ['--config', o.config] : [];
  const modelArgs = [...(o.model ? ['--model', o.model] : []), ...(o.labels ? ['--labels', o.labels] : [])];
  const check = await execCapture(
    o.node,
    [cli, 'run', '--check-config', '--self-test', ...configArgs, ...modelArgs, ...(o.source ? ['--source', o.source] : [])],
    { cwd: o.dir, env, timeoutMs: STEP_TIMEOUT_MS },
  );
  if (check.code !== 0) {
    const why = check.timedOut
      ? `did not finish within ${STEP_TIMEOUT_MS / 1000} s`
      : check.spawnError
        ? `could not start ${o.node} (${check.spawnError.code})`
        : `exited ${check.code ?? check.signal}`;
    throw new OperationError(
      'self-test',
      `run --check-config --self-test ${why}: ${lastLines(check.stderr || check.stdout, 6) || 'no message'}`,
      check.code === 78 ? 'fix what it names (configuration, model, or a native part of the release)' : undefined,
    );
  }
  o.progress('self-test: configuration, TFLite, sharp and GPIO load');

  const frames = (await sampleFrames(o.samples)).slice(0, o.frames ?? 1);
  if (frames.length === 0) {
    throw new OperationError(
      'self-test',
      `no sample frame to classify in ${o.samples.join(' or ')}`,
      `put a JPEG or PNG frame from this device's camera into ${o.samples[0]}`,
    );
  }
  const r = await execCapture(o.node, [cli, 'classify', '--json', ...configArgs, ...modelArgs, ...frames], { cwd: o.dir, env, timeoutMs: STEP_TIMEOUT_MS });
  const results: SampleResult[] = [];
  const errors: string[] = [];
  for (const line of r.stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const j = JSON.parse(line) as { file: string; classes?: SampleResult['classes']; error?: string };
      if (Array.isArray(j.classes)) results.push({ file: j.file, classes: j.classes });
      else if (j.error) errors.push(j.error);
    } catch {
      // not a result line
    }
  }
  if (r.code !== 0 || results.length !== frames.length) {
    const why = errors.length > 0 ? errors.join('; ') : lastLines(r.stderr || r.stdout, 6) || `exit ${r.code ?? r.signal}`;
    throw new OperationError('self-test', `classify of the sample frame${frames.length > 1 ? 's' : ''} failed: ${why}`);
  }
  const first = results[0]!;
  o.progress(
    `self-test: ${path.basename(first.file)} → ${first.classes[0] ? `${first.classes[0].label} ${first.classes[0].score.toFixed(3)}` : 'nothing above the score threshold'}`,
  );
  return results;
}
