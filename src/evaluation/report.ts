import path from 'node:path';
import type { QuantizationAnalysis } from '../inference/model-analysis.js';
import { formatBytes } from '../inference/model-analysis.js';
import type { ModelResults, Skipped } from './evaluate.js';
import type { MeasuredOn } from './machine.js';
import { type Latency, latency as latencyOf, type Metrics, type Sample, tutorialLine } from './metrics.js';

/*
 * The figures of `eval` and `compare` as one object — what `--json` prints —
 * and its terminal and Markdown renderings. The HTML rendering is in
 * report-html.ts. Every renderer reads the same object, so the figures agree.
 */

/** One model of a report. The first model of a comparison is the reference. */
export interface ModelEntry {
  readonly path: string;
  /** File name without `.tflite`, e.g. `mobilenet_v1_0.25_224_full_int8`. */
  readonly name: string;
  readonly size_bytes: number;
  /** size_bytes / the reference's size_bytes (1 for the reference). */
  readonly size_ratio: number;
  readonly quantization: QuantizationAnalysis;
  /** The engine and interpreter threads the model ran on. */
  readonly engine: string;
  readonly threads: number;
  /** Accuracy on the labelled folder; null without one. */
  readonly metrics: Metrics | null;
  /** Invoke latency on this machine. */
  readonly latency: Latency;
  /** The reference's p50 / this model's p50 (> 1: faster than the reference). */
  readonly speedup: number;
  /** Fraction of images whose top-1 equals the reference's top-1 (1 for the reference); null without images. */
  readonly top1_agreement: number | null;
  /** Mean over images of |this model's score − the reference's score| for the reference's top-1 class; null without images. */
  readonly mean_abs_delta_score: number | null;
  /** Per image: file, true class index, top-5 class indices, top-1 score, invoke ms (empty without a labelled folder). */
  readonly samples: Sample[];
}

/** What `eval --json` and `compare --json` print. */
export interface Report {
  /** `eval` (one model) or `compare` (several, the first the reference). */
  readonly command: 'eval' | 'compare';
  /** The labelled folder, or null (`compare` without `--data`). */
  readonly data: string | null;
  /** Images classified per model (after skipped files). */
  readonly images: number;
  readonly classes: number;
  readonly models: ModelEntry[];
  /** Files that could not be used, with the reason. */
  readonly skipped: Skipped[];
  /** Remarks on the set (empty folders, files outside class folders). */
  readonly notes: string[];
  readonly measured_on: MeasuredOn;
}

/** What `buildReport` needs of each model besides its results. */
export interface ModelRun {
  readonly path: string;
  readonly size_bytes: number;
  readonly quantization: QuantizationAnalysis;
  readonly engine: string;
  readonly threads: number;
  /** The runtime that ran it, e.g. `TFLite 2.9.0` or `LiteRT.js 2.5.3`. */
  readonly runtime: string;
  readonly results: ModelResults;
  /** Latencies when measured apart from `results` (compare without a folder), ms. */
  readonly latencies?: readonly number[];
}

/**
 * Assembles a report from model runs (the first is the reference): size
 * ratios, speed-ups and agreement relative to it; metrics only when a
 * labelled folder was used (`data` not null).
 */
export function buildReport(args: {
  command: 'eval' | 'compare';
  data: string | null;
  classes: number;
  runs: readonly ModelRun[];
  skipped: Skipped[];
  notes: string[];
  measuredOn: MeasuredOn;
}): Report {
  const ref = args.runs[0]!;
  const lat = (r: ModelRun) => (r.latencies ? latencyOf(r.latencies) : r.results.metrics.latency);
  const refP50 = lat(ref).p50_ms;
  const models = args.runs.map((r): ModelEntry => {
    const l = lat(r);
    const vs = r.results.vsReference;
    const withImages = args.data !== null && vs.length > 0;
    return {
      path: r.path,
      name: path.basename(r.path).replace(/\.tflite$/i, ''),
      size_bytes: r.size_bytes,
      size_ratio: r.size_bytes / ref.size_bytes,
      quantization: r.quantization,
      engine: r.engine,
      threads: r.threads,
      metrics: args.data === null ? null : r.results.metrics,
      latency: l,
      speedup: refP50 / l.p50_ms,
      top1_agreement: withImages ? vs.filter((v) => v.agrees).length / vs.length : null,
      mean_abs_delta_score: withImages ? vs.reduce((a, v) => a + Math.abs(v.score - v.refScore), 0) / vs.length : null,
      samples: args.data === null ? [] : r.results.samples,
    };
  });
  return {
    command: args.command,
    data: args.data,
    images: args.runs[0]!.results.samples.length,
    classes: args.classes,
    models,
    skipped: args.skipped,
    notes: args.notes,
    measured_on: args.measuredOn,
  };
}

/** `77.8 %` (one decimal); `—` for null. */
export const pct = (x: number | null | undefined): string => (x === null || x === undefined || Number.isNaN(x) ? '—' : `${(x * 100).toFixed(1)} %`);
/** `1.23` ms with 3 significant digits (at least 2 decimals below 1 ms). */
export const ms = (x: number): string => (Number.isNaN(x) ? '—' : x < 1 ? x.toFixed(2) : x < 100 ? x.toPrecision(3) : x.toFixed(0));
/** `0.51×`. */
const times = (x: number): string => (Number.isFinite(x) ? `${x.toFixed(2)}×` : '—');
/** `1,234,567`. */
export const thousands = (n: number): string => n.toLocaleString('en-US');

/** The label's first name, for narrow columns: `hotdog` for `hotdog, hot dog, red hot`. */
export const shortLabel = (label: string): string => label.split(', ')[0] ?? label;

/** I/O dtypes as `uint8 → uint8`. */
const ioDtypes = (q: QuantizationAnalysis): string => `${q.input_dtypes.join('+') || '—'} → ${q.output_dtypes.join('+') || '—'}`;

/** Rows of the comparison table, as strings, with its header: shared by the terminal and Markdown renderings. */
export function comparisonRows(r: Report): { header: string[]; rows: string[][]; align: ('l' | 'r')[] } {
  const withData = r.data !== null;
  const header = [
    'model',
    'size',
    'ratio',
    'kind',
    'I/O',
    ...(withData ? ['top-1', 'top-5', 'agree', 'mean |Δ score|'] : []),
    'p50 ms',
    'p95 ms',
    'speed-up',
    'engine',
  ];
  const align: ('l' | 'r')[] = ['l', 'r', 'r', 'l', 'l', ...(withData ? (['r', 'r', 'r', 'r'] as const) : []), 'r', 'r', 'r', 'l'];
  const rows = r.models.map((m, i) => [
    m.name,
    formatBytes(m.size_bytes),
    times(m.size_ratio),
    m.quantization.label,
    ioDtypes(m.quantization),
    ...(withData
      ? [
          pct(m.metrics?.top1_accuracy),
          pct(m.metrics?.top5_accuracy),
          i === 0 ? 'reference' : pct(m.top1_agreement),
          i === 0 ? '—' : m.mean_abs_delta_score === null ? '—' : m.mean_abs_delta_score.toFixed(3),
        ]
      : []),
    ms(m.latency.p50_ms),
    ms(m.latency.p95_ms),
    i === 0 ? 'reference' : times(m.speedup),
    // Each model runs on the engine chosen for it: a speed-up may come from the engine as much as from the model.
    `${m.engine}@${m.threads}`,
  ]);
  return { header, rows, align };
}

function table(header: string[], rows: string[][], align: ('l' | 'r')[]): string[] {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((v, c) => (align[c] === 'r' ? v.padStart(widths[c]!) : v.padEnd(widths[c]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)];
}

/** Where, with what and when the figures were measured. */
function engineLine(r: Report): string {
  const m = r.measured_on;
  return `measured on ${m.machine} (${m.cores} cores, ${m.arch}), ${m.library}, engine ${m.engine}, ${m.threads} thread(s), ${m.date}`;
}

/** Per-class table, confusion matrix and misclassified files of one model, as terminal lines. */
function evalDetails(m: ModelEntry): string[] {
  const met = m.metrics;
  if (!met) return [];
  const out: string[] = [];
  out.push('');
  out.push(
    ...table(
      ['#', 'class', 'folder', 'images', 'precision', 'recall'],
      met.per_class.map((c, i) => [
        String(i + 1),
        shortLabel(c.label),
        c.folder === c.label ? '' : c.folder,
        String(c.images),
        pct(c.precision),
        pct(c.recall),
      ]),
      ['r', 'l', 'l', 'r', 'r', 'r'],
    ),
  );
  out.push('', 'confusion matrix (rows: true class #, columns: top-1 class #; other = a class outside the set)');
  const k = met.confusion.classes.length;
  out.push(
    ...table(
      ['', ...met.confusion.classes.map((_, i) => String(i + 1)), 'other'],
      met.confusion.matrix.map((row, i) => [String(i + 1), ...row.map((v) => (v === 0 ? '.' : String(v)))]),
      Array<'r'>(k + 2).fill('r'),
    ),
  );
  if (met.misclassified.length) {
    out.push('', `misclassified (${met.misclassified.length}):`);
    for (const x of met.misclassified) out.push(`  ${x.file}: ${shortLabel(x.truth)} taken for ${x.predicted} (${x.score.toFixed(3)})`);
  }
  return out;
}

/** The terminal rendering of a report (what `eval` and `compare` print without `--json`). */
export function renderText(r: Report): string {
  const out: string[] = [];
  if (r.command === 'eval') {
    const m = r.models[0]!;
    const met = m.metrics!;
    out.push(`${m.path}: ${m.quantization.summary}`);
    out.push(
      `${formatBytes(m.size_bytes)}, ${m.quantization.parameters === null ? 'parameters inside the Edge TPU op' : `${thousands(m.quantization.parameters)} parameters`}; ${r.images} images in ${r.classes} classes from ${r.data}`,
    );
    out.push('');
    out.push(tutorialLine(met));
    out.push(
      `top-1 accuracy ${pct(met.top1_accuracy)} (${met.top1_correct}/${met.images}), top-5 accuracy ${pct(met.top5_accuracy)} (${met.top5_correct}/${met.images})`,
    );
    out.push(
      `latency p50 ${ms(m.latency.p50_ms)} ms, p95 ${ms(m.latency.p95_ms)} ms (invoke, ${m.latency.n} images), engine ${m.engine}, ${m.threads} thread(s)`,
    );
    out.push(...evalDetails(m));
  } else {
    out.push(
      `${r.models.length} models${r.data ? ` on ${r.images} images in ${r.classes} classes from ${r.data}` : ' (no --data: latency on a synthetic image, no accuracy)'}; reference: ${r.models[0]!.name}`,
    );
    out.push('');
    const t = comparisonRows(r);
    out.push(...table(t.header, t.rows, t.align));
    if (r.data) {
      out.push('');
      for (const m of r.models) out.push(`${m.name}: ${tutorialLine(m.metrics!)}`);
    }
  }
  if (r.skipped.length) {
    out.push('', `skipped ${r.skipped.length} file(s):`);
    for (const s of r.skipped) out.push(`  ${s.reason}`);
  }
  for (const n of r.notes) out.push(`note: ${n}`);
  out.push('', engineLine(r));
  return `${out.join('\n')}\n`;
}

const mdCell = (s: string) => s.replace(/\|/g, '\\|');

function mdTable(header: string[], rows: string[][], align: ('l' | 'r')[]): string[] {
  return [
    `| ${header.map(mdCell).join(' | ')} |`,
    `| ${align.map((a) => (a === 'r' ? '---:' : '---')).join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(mdCell).join(' | ')} |`),
  ];
}

/** The Markdown rendering (`--format md`): the same figures, for an issue or a pull request. */
export function renderMarkdown(r: Report): string {
  const out: string[] = [];
  if (r.command === 'eval') {
    const m = r.models[0]!;
    const met = m.metrics!;
    out.push(`### ${mdCell(m.name)} on ${mdCell(r.data ?? '')}`, '');
    out.push(`**${tutorialLine(met)}**`, '');
    out.push(
      ...mdTable(
        ['size', 'kind', 'I/O', 'parameters', 'top-1', 'top-5', 'p50 ms', 'p95 ms', 'engine', 'threads'],
        [
          [
            formatBytes(m.size_bytes),
            m.quantization.label,
            ioDtypes(m.quantization),
            m.quantization.parameters === null ? '—' : thousands(m.quantization.parameters),
            pct(met.top1_accuracy),
            pct(met.top5_accuracy),
            ms(m.latency.p50_ms),
            ms(m.latency.p95_ms),
            m.engine,
            String(m.threads),
          ],
        ],
        ['r', 'l', 'l', 'r', 'r', 'r', 'r', 'r', 'l', 'r'],
      ),
    );
    out.push(
      '',
      ...mdTable(
        ['class', 'images', 'precision', 'recall'],
        met.per_class.map((c) => [c.label, String(c.images), pct(c.precision), pct(c.recall)]),
        ['l', 'r', 'r', 'r'],
      ),
    );
    const labels = met.confusion.labels.map(shortLabel);
    out.push('', 'Confusion matrix (rows: true class, columns: top-1):', '');
    out.push(
      ...mdTable(
        ['', ...labels, 'other'],
        met.confusion.matrix.map((row, i) => [labels[i]!, ...row.map(String)]),
        Array<'r'>(labels.length + 2).fill('r'),
      ),
    );
    if (met.misclassified.length) {
      out.push('', '<details><summary>Misclassified</summary>', '');
      for (const x of met.misclassified) out.push(`- \`${x.file}\`: ${shortLabel(x.truth)} taken for ${x.predicted} (${x.score.toFixed(3)})`);
      out.push('', '</details>');
    }
  } else {
    out.push(`### ${r.models.length} models${r.data ? ` on ${mdCell(r.data)} (${r.images} images, ${r.classes} classes)` : ''}`, '');
    const t = comparisonRows(r);
    out.push(...mdTable(t.header, t.rows, t.align));
  }
  if (r.skipped.length) out.push('', `Skipped ${r.skipped.length} file(s): ${r.skipped.map((s) => `\`${s.file}\``).join(', ')}`);
  out.push('', `_${engineLine(r).replace(/^m/, 'M')}, Node.js ${r.measured_on.node}, ${r.measured_on.os}._`);
  return `${out.join('\n')}\n`;
}
