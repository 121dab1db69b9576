import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { arch, cpus, homedir } from 'node:os';
import path from 'node:path';
import { type EngineLoadOptions, type EngineName, liteRtVersion, type TensorArray, typedArrayFor } from './engine-api.js';
import type { Candidate, MeasureResult } from './inference-worker.js';
import { machineCores, measureCandidates } from './session.js';

/** Total time `auto` may spend measuring engines at start, ms (worker start-up and loading included). */
const MEASURE_BUDGET_MS = 1800;

/** Version of the cache file's layout; a file of another version is ignored and rewritten. */
const CACHE_VERSION = 1;

/** The engine whose output the others must agree with: the TFLite C library's default kernels, one thread. */
const REFERENCE: Candidate = { engine: 'tflite', threads: 1 };

/** `inference.engine`: an engine, or `auto` to measure. */
export type EngineSetting = EngineName | 'auto';
/** `inference.threads`: a count, or `auto` to measure 1 … cores − 1 (see `maxAutoThreads`). */
export type ThreadsSetting = number | 'auto';

/** One line of the engine table. */
export interface ChoiceRow extends Candidate {
  /** Median time of one run, ms (absent when it failed). */
  readonly p50_ms?: number;
  /** Lower quartile of one run, ms: what the choice compares (a busy moment on the machine only adds time). */
  readonly p25_ms?: number;
  readonly runs?: number;
  /** `chosen`, `ok`, `failed` (could not load or run the model), `disagrees` (outputs differ from the reference), `reference` (measured only to check the others). */
  readonly status: 'chosen' | 'ok' | 'failed' | 'disagrees' | 'reference';
  /** Why it failed or disagrees, or a note (e.g. XNNPACK did not apply). */
  readonly reason?: string;
}

/** The outcome of `chooseEngine`. */
export interface EngineChoice {
  readonly engine: EngineName;
  readonly threads: number;
  /** Every candidate measured (empty when neither setting is `auto`). */
  readonly table: readonly ChoiceRow[];
  /** True when the choice came from the cache file. */
  readonly cached: boolean;
  /** The cache key: model sha256, library, machine and settings. */
  readonly key: string;
  /** Warnings to log: engines skipped and why, a corrupt cache file. */
  readonly warnings: readonly string[];
}

/** Least Pearson correlation between an engine's scores and the reference's (see `disagreement`). */
const MIN_CORRELATION = 0.9;

/**
 * Whether `candidate` scores agree with `reference` scores (both dequantized
 * to real values, same length). Returns null when they agree, else a
 * sentence with the first difference:
 * - the top-1 classes: the candidate's top-1 must be among the reference's
 *   top 5 and the reference's among the candidate's top 5 (with fewer than
 *   25 classes: the same top-1), unless the reference scores the two within
 *   `step` × 2 (a tie);
 * - the whole score vector: Pearson correlation ≥ MIN_CORRELATION (a NaN
 *   score, constant scores or shuffled classes fail); for fewer than 3
 *   values, or a constant reference, every value within 2 × `step` or 1 %
 *   of the largest reference value instead.
 * Not "every score within two quantization steps": measured on the asset
 * models and images, XNNPACK's int8 kernels and LiteRT.js differ from the
 * reference kernels by up to 24 steps (0.094 on a 0…1 score), and on a
 * low-confidence frame by 8 steps on the top-1 itself, while the correlation
 * stays ≥ 0.98 and the top-1 within each other's top 5; an engine computing
 * wrong scores correlates near 0.
 */
export function disagreement(reference: ArrayLike<number>, candidate: ArrayLike<number>, step: number): string | null {
  const n = reference.length;
  if (candidate.length !== n) return `it gives ${candidate.length} scores, the reference ${n}`;
  for (let i = 0; i < n; i++) if (Number.isNaN(candidate[i]!)) return `its score of class ${i} is NaN`;
  const k = n >= 25 ? 5 : 1;
  const refTop = topIndices(reference, k);
  const candTop = topIndices(candidate, k);
  const r0 = refTop[0]!;
  const c0 = candTop[0]!;
  const tie = reference[r0]! - reference[c0]! <= 2 * step;
  if (!tie && (!refTop.includes(c0) || !candTop.includes(r0))) {
    return `its top-1 is class ${c0} (${fmt(candidate[c0]!)}), the reference's class ${r0} (${fmt(reference[r0]!)})`;
  }
  let worst = 0;
  for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(reference[i]! - candidate[i]!));
  // Too few values, or constant ones, have no correlation: then the values themselves must be close.
  if (n < 3 || Number.isNaN(correlation(reference, reference))) {
    let scale = 0;
    for (let i = 0; i < n; i++) scale = Math.max(scale, Math.abs(reference[i]!));
    const allowed = Math.max(2 * step, 0.01 * scale);
    return worst <= allowed ? null : `its outputs differ from the reference's by ${fmt(worst)} (allowed ${fmt(allowed)})`;
  }
  const r = correlation(reference, candidate);
  if (!(r >= MIN_CORRELATION))
    return `its scores correlate with the reference's by r = ${Number.isNaN(r) ? 'NaN' : fmt(r)} (at least ${MIN_CORRELATION} expected)`;
  return null;
}

/** The indices of the `k` highest values, highest first (ties: lower index first). */
function topIndices(xs: ArrayLike<number>, k: number): number[] {
  return Array.from({ length: xs.length }, (_, i) => i)
    .sort((a, b) => xs[b]! - xs[a]! || a - b)
    .slice(0, k);
}

/** Pearson correlation of two equally long vectors; NaN when either is constant. */
export function correlation(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i]!;
    mb += b[i]!;
  }
  ma /= n;
  mb /= n;
  let s = 0;
  let sa = 0;
  let sb = 0;
  for (let i = 0; i < n; i++) {
    const da = a[i]! - ma;
    const db = b[i]! - mb;
    s += da * db;
    sa += da * da;
    sb += db * db;
  }
  return s / Math.sqrt(sa * sb);
}

const fmt = (x: number): string => (Number.isFinite(x) ? Number(x.toPrecision(4)).toString() : String(x));

/** Real values of a raw output tensor: (q − zero_point) × scale for quantized ones, the values for float. */
function dequantized(raw: TensorArray, scale: number, zeroPoint: number): Float64Array {
  const out = new Float64Array(raw.length);
  for (let i = 0; i < raw.length; i++) {
    const q = Number(raw[i]!);
    out[i] = scale > 0 ? (q - zeroPoint) * scale : q;
  }
  return out;
}

/**
 * The most interpreter threads `threads: auto` tries on a machine with
 * `cores` cores: cores − 1 (at least 1), since the frame pipeline decodes and
 * prepares the next frame on another core while the interpreter runs.
 * Measured on a 2-core x86-64 machine, TF2 MobileNet V2 with XNNPACK: alone,
 * 2 threads take 2.7 ms against 4.2 for 1; in the pipeline (raw frames, one
 * always ready) 2 threads classified 40 frames/s and 1 thread 152, since
 * XNNPACK's 2 threads leave no core for the frame work.
 */
export function maxAutoThreads(cores = machineCores()): number {
  return Math.max(1, cores - 1);
}

/** The candidates for the settings: every engine × 1 … `maxAutoThreads(cores)` for `auto`, else the one given; ordered by thread count. */
export function candidatesFor(engine: EngineSetting, threads: ThreadsSetting, cores = machineCores(), liteRt = liteRtVersion() !== null): Candidate[] {
  const engines: EngineName[] = engine === 'auto' ? ['tflite', 'tflite-xnnpack', ...(liteRt ? ['litert-wasm' as const] : [])] : [engine];
  const counts = threads === 'auto' ? Array.from({ length: maxAutoThreads(cores) }, (_, i) => i + 1) : [threads];
  // By thread count first: when the time runs out (a busy machine), what is left unmeasured is the
  // high thread counts, which rarely win on a small board that also decodes frames.
  const out: Candidate[] = [];
  for (const t of counts) {
    for (const e of engines) {
      // LiteRT.js is single-threaded on Node.js 20 (no relaxed SIMD): one thread count only.
      if (e === 'litert-wasm' && t !== counts[0]) continue;
      out.push({ engine: e, threads: e === 'litert-wasm' ? 1 : t });
    }
  }
  return out;
}

/** How `chooseEngine` reads the model's scores output. */
interface ScoresOutput {
  /** Position of the class-scores output among the outputs. */
  readonly index: number;
  /** Its dtype, e.g. uint8. */
  readonly dtype: string;
  /** Scale and zero point from the flatbuffer (LiteRT.js does not report them). */
  readonly scale: number;
  readonly zero_point: number;
}

/** Options of `chooseEngine`. */
export interface ChooseOptions {
  readonly load: EngineLoadOptions;
  readonly engine: EngineSetting;
  readonly threads: ThreadsSetting;
  /** The same input for every candidate: one typed array per model input. */
  readonly probe: readonly ArrayBufferView[];
  readonly scores: ScoresOutput;
  /** JSON cache of choices; null for none. */
  readonly cacheFile: string | null;
  /** Measuring time, ms (default MEASURE_BUDGET_MS). */
  readonly budgetMs?: number;
  /** Replaces `measureCandidates` (tests: stand-in engines). */
  readonly measure?: typeof measureCandidates;
  /** Machine identity in the cache key (default: CPU model, arch, cores). */
  readonly machine?: string;
  /** Cores the thread counts of `auto` derive from (default: this machine's; tests). */
  readonly cores?: number;
}

/**
 * Where the engine choice is cached by default: `engine-choice.json` in
 * $STATE_DIRECTORY (set by systemd's StateDirectory=; the first entry when
 * it lists several), else in $XDG_STATE_HOME/edge-classifier, else in
 * ~/.local/state/edge-classifier.
 */
export function defaultCacheFile(env: NodeJS.ProcessEnv = process.env): string {
  const systemd = env.STATE_DIRECTORY?.split(':')[0];
  const dir = systemd || path.join(env.XDG_STATE_HOME || path.join(homedir(), '.local', 'state'), 'edge-classifier');
  return path.join(dir, 'engine-choice.json');
}

/** The machine part of the cache key: CPU model, architecture and core count. */
function machineId(): string {
  return `${cpus()[0]?.model.trim() ?? 'unknown CPU'} ${arch()} x${machineCores()}`;
}

/** sha256 (hex) of `bytes`. */
function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Chooses the engine and thread count for a model. With neither setting
 * `auto`, returns them as given. Otherwise: looks the choice up in
 * `cacheFile` under a key of the model's sha256, the TFLite library file's
 * sha256, the LiteRT.js version, the machine and the settings; on a miss,
 * measures the candidates (see `measureCandidates`) plus the reference
 * (`tflite`, 1 thread), drops those that fail to load or disagree with the
 * reference on the probe input (see `disagreement`), picks the lowest
 * lower-quartile time (a busy moment on the machine only adds time), and writes the cache. A corrupt or foreign cache file is ignored
 * (a warning) and rewritten. Throws when no candidate can run the model,
 * with each engine's reason.
 */
export async function chooseEngine(o: ChooseOptions): Promise<EngineChoice> {
  const candidates = candidatesFor(o.engine, o.threads, o.cores);
  if (o.engine !== 'auto' && o.threads !== 'auto') {
    return { engine: o.engine, threads: o.threads, table: [], cached: false, key: '', warnings: [] };
  }
  const warnings: string[] = [];
  const libraryFile = o.load.library ?? (await import('./tflite-c.js')).bundledLibraryPath();
  let libraryHash = 'missing';
  try {
    libraryHash = sha256(await readFile(libraryFile)).slice(0, 16);
  } catch {
    // The engines report the missing library when they load; the key just cannot name it.
  }
  const key = [
    `model ${sha256(o.load.modelBytes)}`,
    `library ${path.basename(libraryFile)} ${libraryHash}`,
    `litert ${liteRtVersion() ?? 'none'}`,
    `machine ${o.machine ?? machineId()}`,
    `engine ${o.engine} threads ${o.threads === 'auto' ? `auto (1-${maxAutoThreads(o.cores)})` : o.threads}`,
    ...(o.load.inputShapes?.size ? [`inputs ${JSON.stringify([...o.load.inputShapes])}`] : []),
  ].join('; ');

  const cache = o.cacheFile ? await readCache(o.cacheFile, warnings) : { version: CACHE_VERSION, entries: {} };
  const hit = cache.entries[key];
  if (hit && candidates.some((c) => c.engine === hit.engine && c.threads === hit.threads)) {
    return { engine: hit.engine, threads: hit.threads, table: hit.table, cached: true, key, warnings };
  }

  const withReference = candidates.some((c) => c.engine === REFERENCE.engine && c.threads === REFERENCE.threads) ? candidates : [REFERENCE, ...candidates];
  const measured = await (o.measure ?? measureCandidates)(o.load, withReference, o.probe, o.budgetMs ?? MEASURE_BUDGET_MS);
  const isCandidate = (r: Candidate): boolean => candidates.some((c) => c.engine === r.engine && c.threads === r.threads);
  const ref = measured.find((r) => !r.error && r.engine === REFERENCE.engine && r.threads === REFERENCE.threads) ?? measured.find((r) => !r.error);
  const rows: ChoiceRow[] = [];
  for (const r of measured) {
    const base = {
      engine: r.engine,
      threads: r.threads,
      ...(r.p50_ms !== undefined ? { p50_ms: r.p50_ms, runs: r.runs } : {}),
      ...(r.p25_ms !== undefined ? { p25_ms: r.p25_ms } : {}),
    };
    if (r.error) {
      rows.push({ ...base, status: 'failed', reason: r.error });
      continue;
    }
    let reason: string | null = null;
    if (ref && r !== ref) {
      const a = decodeScores(ref, o.scores);
      const b = decodeScores(r, o.scores);
      reason = a && b ? disagreement(a, b, o.scores.scale > 0 ? o.scores.scale : 1 / 256) : 'its outputs could not be read';
    }
    if (reason) rows.push({ ...base, status: 'disagrees', reason });
    else rows.push({ ...base, status: isCandidate(r) ? 'ok' : 'reference', ...(r.notes?.length ? { reason: r.notes.join('; ') } : {}) });
  }
  const cost = (r: ChoiceRow): number => r.p25_ms ?? r.p50_ms!;
  const usable = rows.filter((r) => r.status === 'ok' && r.p50_ms !== undefined).sort((a, b) => cost(a) - cost(b));
  for (const r of rows) {
    if (r.status === 'failed' && isCandidate(r)) warnings.push(`engine ${r.engine} (${r.threads} thread${r.threads > 1 ? 's' : ''}) skipped: ${r.reason}`);
    if (r.status === 'disagrees')
      warnings.push(`engine ${r.engine} (${r.threads} thread${r.threads > 1 ? 's' : ''}) skipped: its output disagrees with ${ref!.engine}: ${r.reason}`);
  }
  const best = usable[0];
  if (!best) {
    const why = rows
      .filter(isCandidate)
      .map((r) => `${r.engine}: ${r.reason ?? r.status}`)
      .join('; ');
    throw new Error(`no inference engine can run ${o.load.model} (${why})`);
  }
  const table = rows.map((r) => (r === best ? { ...r, status: 'chosen' as const } : r));
  if (o.cacheFile) {
    cache.entries[key] = { engine: best.engine, threads: best.threads, table, measured_at: new Date().toISOString() };
    try {
      await writeCache(o.cacheFile, cache);
    } catch (err) {
      warnings.push(`cannot write the engine choice cache ${o.cacheFile}: ${(err as Error).message} (engines are measured again at the next start)`);
    }
  }
  return { engine: best.engine, threads: best.threads, table, cached: false, key, warnings };
}

function decodeScores(r: MeasureResult, s: ScoresOutput): Float64Array | null {
  const buf = r.outputs?.[s.index];
  if (!buf) return null;
  return dequantized(typedArrayFor(s.dtype, buf), s.scale, s.zero_point);
}

interface CacheEntry {
  engine: EngineName;
  threads: number;
  table: ChoiceRow[];
  measured_at: string;
}
interface CacheFile {
  version: number;
  entries: Record<string, CacheEntry>;
}

async function readCache(file: string, warnings: string[]): Promise<CacheFile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') warnings.push(`cannot read the engine choice cache ${file}: ${(err as Error).message}`);
    return { version: CACHE_VERSION, entries: {} };
  }
  try {
    const data = JSON.parse(text) as CacheFile;
    if (data?.version !== CACHE_VERSION || typeof data.entries !== 'object' || data.entries === null) {
      throw new Error(`expected {"version": ${CACHE_VERSION}, "entries": {...}}`);
    }
    for (const e of Object.values(data.entries)) {
      if (typeof e?.engine !== 'string' || !Number.isInteger(e.threads) || !Array.isArray(e.table)) throw new Error('an entry lacks engine, threads or table');
    }
    return data;
  } catch (err) {
    warnings.push(
      `the engine choice cache ${file} is corrupt or from another version (${(err as Error).message}): ignored, engines are measured again and the file rewritten`,
    );
    return { version: CACHE_VERSION, entries: {} };
  }
}

async function writeCache(file: string, data: CacheFile): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(data, null, 2)}\n`);
  await rename(tmp, file);
}

/** The engine table as aligned text lines for the log and `bench`. */
export function formatTable(table: readonly ChoiceRow[]): string {
  const ms = (x: number | undefined): string => (x !== undefined ? x.toFixed(2) : '-');
  const rows = table.map((r) => [r.engine, String(r.threads), ms(r.p50_ms), ms(r.p25_ms), r.status, r.reason ?? '']);
  const head = ['engine', 'threads', 'p50 ms', 'p25 ms', 'status', 'note'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows]
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
