import { formatBytes } from '../inference/model-analysis.js';
import { type Metrics, tutorialLine } from './metrics.js';
import { comparisonRows, type ModelEntry, ms, pct, type Report, shortLabel, thousands } from './report.js';

/*
 * The report as one self-contained HTML file: inline CSS and inline SVG, no
 * script, no font, no image or anything else fetched — a Content-Security-
 * Policy of `default-src 'none'` makes the browser refuse any fetch should
 * one ever slip in. It opens from a USB stick on a machine without network.
 *
 * Chart marks carry classes a test (or a script) can count:
 * `circle.bubble` one per model; `rect.cell` one per confusion-matrix cell
 * (classes × (classes + 1) per model, the last column "other"); `text.count`
 * one per non-zero cell; `rect.bar` one per class and model.
 */

/** Colours per model, in model order (Tableau 10, distinguishable for most colour vision deficiencies in pairs). */
const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];
const colour = (i: number) => PALETTE[i % PALETTE.length]!;

/** Escapes text for HTML and SVG content and attribute values. */
function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

const f1 = (x: number) => Number(x.toFixed(1));

/** A "nice" axis maximum ≥ x: 1, 2, 2.5 or 5 × 10^n. */
function niceCeil(x: number): number {
  if (!(x > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}

/** Five to six evenly spaced ticks from `lo` to `hi` on nice steps. */
function ticks(lo: number, hi: number): number[] {
  const step = niceCeil((hi - lo) / 5);
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(10)));
  return out;
}

/**
 * Accuracy (top-1, %) against latency (p50, ms), one bubble per model whose
 * area is proportional to its file size; the reference's bubble is outlined.
 * Bubbles carry the model's number, the legend beside says which is which.
 */
function bubbleChart(models: readonly ModelEntry[]): string {
  const W = 820;
  const H = 400;
  const m = { l: 64, r: 300, t: 24, b: 56 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const acc = models.map((x) => (x.metrics ? x.metrics.top1_accuracy * 100 : 0));
  const lat = models.map((x) => x.latency.p50_ms);
  const xMax = niceCeil(Math.max(...lat) * 1.15);
  const yMin = Math.max(0, Math.floor((Math.min(...acc) - 15) / 10) * 10);
  const yMax = 100;
  const X = (v: number) => m.l + (v / xMax) * pw;
  const Y = (v: number) => m.t + ph - ((v - yMin) / (yMax - yMin)) * ph;
  const maxSize = Math.max(...models.map((x) => x.size_bytes));
  const rMax = 36;
  const out: string[] = [];
  out.push(
    `<svg class="chart bubble-chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="top-1 accuracy against latency, bubble area proportional to file size">`,
  );
  for (const t of ticks(0, xMax)) {
    out.push(
      `<line class="grid" x1="${f1(X(t))}" x2="${f1(X(t))}" y1="${m.t}" y2="${m.t + ph}"/><text class="tick" x="${f1(X(t))}" y="${m.t + ph + 16}" text-anchor="middle">${t}</text>`,
    );
  }
  for (const t of ticks(yMin, yMax)) {
    out.push(
      `<line class="grid" x1="${m.l}" x2="${m.l + pw}" y1="${f1(Y(t))}" y2="${f1(Y(t))}"/><text class="tick" x="${m.l - 8}" y="${f1(Y(t) + 4)}" text-anchor="end">${t} %</text>`,
    );
  }
  out.push(`<rect class="frame" x="${m.l}" y="${m.t}" width="${pw}" height="${ph}"/>`);
  out.push(`<text class="axis" x="${m.l + pw / 2}" y="${H - 14}" text-anchor="middle">latency p50 (ms, invoke) — faster to the left</text>`);
  out.push(`<text class="axis" transform="translate(16 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">top-1 accuracy</text>`);
  out.push(`<text class="hint" x="${m.l + 8}" y="${m.t + 16}">↖ better: more accurate, faster</text>`);
  // Largest first, so small bubbles stay visible on top of big ones.
  const order = models.map((_, i) => i).sort((a, b) => models[b]!.size_bytes - models[a]!.size_bytes);
  for (const i of order) {
    const x = models[i]!;
    const r = Math.max(3, rMax * Math.sqrt(x.size_bytes / maxSize));
    const cx = f1(X(lat[i]!));
    const cy = f1(Y(acc[i]!));
    out.push(
      `<circle class="bubble${i === 0 ? ' reference' : ''}" cx="${cx}" cy="${cy}" r="${f1(r)}" fill="${colour(i)}" data-model="${esc(x.name)}"><title>${esc(`${x.name}: ${pct(acc[i]! / 100)} top-1, ${ms(lat[i]!)} ms p50, ${formatBytes(x.size_bytes)}, ${x.quantization.label}`)}</title></circle>`,
      `<text class="bubble-num" x="${cx}" y="${f1(Number(cy) + 4)}" text-anchor="middle">${i + 1}</text>`,
    );
  }
  const lx = m.l + pw + 18;
  models.forEach((x, i) => {
    const y = m.t + 8 + i * 44;
    out.push(
      `<circle cx="${lx + 8}" cy="${y + 6}" r="8" fill="${colour(i)}"/><text class="bubble-num" x="${lx + 8}" y="${y + 10}" text-anchor="middle">${i + 1}</text>`,
      `<text class="legend" x="${lx + 22}" y="${y + 10}">${esc(truncate(x.name, 42))}</text>`,
      `<text class="legend-sub" x="${lx + 22}" y="${y + 25}">${esc(`${x.quantization.label}, ${formatBytes(x.size_bytes)}`)}</text>`,
    );
  });
  out.push(`<text class="legend-sub" x="${lx}" y="${m.t + 8 + models.length * 44 + 6}">bubble area ∝ file size</text>`);
  out.push('</svg>');
  return out.join('\n');
}

const truncate = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

/**
 * Horizontal recall bars per class, one bar per model (grouped), 0–100 %,
 * with the value at the end of each bar.
 */
function recallBars(models: readonly ModelEntry[]): string {
  const withMetrics = models.filter((x) => x.metrics);
  const classes = withMetrics[0]!.metrics!.per_class;
  const n = withMetrics.length;
  const bar = 14;
  const gap = 12;
  const groupH = n * bar + gap;
  const labelW = 190;
  const pw = 440;
  const W = labelW + pw + 70;
  const H = 28 + classes.length * groupH + 24;
  const out: string[] = [];
  out.push(`<svg class="chart recall-chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="recall per class">`);
  for (const t of [0, 25, 50, 75, 100]) {
    const x = labelW + (t / 100) * pw;
    out.push(`<line class="grid" x1="${x}" x2="${x}" y1="20" y2="${H - 20}"/><text class="tick" x="${x}" y="14" text-anchor="middle">${t} %</text>`);
  }
  classes.forEach((c, ci) => {
    const y0 = 24 + ci * groupH;
    out.push(
      `<text class="row-label" x="${labelW - 8}" y="${y0 + (n * bar) / 2 + 4}" text-anchor="end">${esc(truncate(shortLabel(c.label), 28))} (${c.images})</text>`,
    );
    withMetrics.forEach((x, mi) => {
      const f = x.metrics!.per_class[ci]!;
      const r = f.recall ?? 0;
      const y = y0 + mi * bar;
      const i = models.indexOf(x);
      out.push(
        `<rect class="bar" x="${labelW}" y="${y}" width="${f1(Math.max(0.5, r * pw))}" height="${bar - 2}" fill="${colour(i)}"><title>${esc(`${x.name}: ${shortLabel(c.label)} recall ${pct(f.recall)} (${f.correct}/${f.images})`)}</title></rect>`,
        `<text class="bar-value" x="${f1(labelW + r * pw + 4)}" y="${y + bar - 4}">${pct(f.recall)}</text>`,
      );
    });
  });
  out.push('</svg>');
  return out.join('\n');
}

/**
 * The confusion matrix as a heat map: rows the true classes, columns the top-1
 * answers (the classes present, then "other"); the colour's strength is the
 * cell's share of its row (blue on the diagonal, orange off it) and each
 * non-zero cell shows its count.
 */
function confusionHeatMap(met: Metrics, title: string): string {
  const k = met.confusion.classes.length;
  const cell = 34;
  const labelW = 170;
  const top = 120;
  const W = labelW + (k + 1) * cell + 20;
  const H = top + k * cell + 16;
  const labels = met.confusion.labels.map((l) => truncate(shortLabel(l), 22));
  const out: string[] = [];
  out.push(`<svg class="chart confusion-chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">`);
  [...labels, 'other'].forEach((l, j) => {
    const x = labelW + j * cell + cell / 2;
    out.push(`<text class="col-label" transform="translate(${x + 4} ${top - 6}) rotate(-50)">${esc(l)}</text>`);
  });
  met.confusion.matrix.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    const y = top + i * cell;
    out.push(`<text class="row-label" x="${labelW - 8}" y="${y + cell / 2 + 4}" text-anchor="end">${esc(labels[i]!)}</text>`);
    row.forEach((v, j) => {
      const share = v / total;
      const hue = i === j ? '78,121,167' : '242,142,43';
      const fill = v === 0 ? '#f7f7f7' : `rgba(${hue},${(0.15 + 0.85 * share).toFixed(2)})`;
      const x = labelW + j * cell;
      const trueLabel = labels[i]!;
      const predicted = j < k ? labels[j]! : 'another class';
      out.push(
        `<rect class="cell${i === j ? ' diagonal' : ''}" x="${x}" y="${y}" width="${cell - 2}" height="${cell - 2}" fill="${fill}"><title>${esc(`${trueLabel} → ${predicted}: ${v} of ${row.reduce((a, b) => a + b, 0)}`)}</title></rect>`,
      );
      if (v > 0)
        out.push(`<text class="count${share > 0.55 ? ' on-dark' : ''}" x="${x + (cell - 2) / 2}" y="${y + cell / 2 + 3}" text-anchor="middle">${v}</text>`);
    });
  });
  out.push('</svg>');
  return out.join('\n');
}

function htmlTable(header: string[], rows: string[][], align: ('l' | 'r')[], cls = ''): string {
  const th = header.map((h, i) => `<th class="${align[i]}">${esc(h)}</th>`).join('');
  const body = rows.map((r) => `<tr>${r.map((v, i) => `<td class="${align[i]}">${esc(v)}</td>`).join('')}</tr>`).join('\n');
  return `<table${cls ? ` class="${cls}"` : ''}><thead><tr>${th}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

const STYLE = `
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 24px auto; max-width: 1100px; padding: 0 16px; color: #1d1d1f; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.measured { color: #555; margin: 0 0 12px; font-size: 13px; }
.lead { font-size: 18px; font-weight: 600; margin: 8px 0; }
table { border-collapse: collapse; font-size: 13.5px; margin: 6px 0; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e5e5e5; } th { background: #f4f5f7; font-weight: 600; }
td.r, th.r { text-align: right; } td.l, th.l { text-align: left; }
table.main tbody tr:first-child td { font-weight: 600; } table.main td, table.main th { white-space: nowrap; padding: 4px 7px; }
table.main td:first-child { white-space: normal; overflow-wrap: anywhere; max-width: 230px; }
.scroll { overflow-x: auto; }
.lead.small { font-size: 14px; font-weight: 500; margin: 2px 0; }
.charts { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
figure { margin: 0; } figcaption { font-size: 13px; color: #444; margin: 2px 0 6px; font-weight: 600; }
svg.chart { font-size: 12px; max-width: 100%; height: auto; }
svg .grid { stroke: #e6e6e6; } svg .frame { fill: none; stroke: #999; }
svg .tick { fill: #555; font-size: 11px; } svg .axis { fill: #333; font-size: 12.5px; } svg .hint { fill: #2c7a2c; font-size: 12px; }
svg .bubble { fill-opacity: 0.72; stroke: #fff; stroke-width: 1.5; } svg .bubble.reference { stroke: #222; stroke-width: 2; }
svg .bubble-num { fill: #fff; font-weight: 700; font-size: 11px; pointer-events: none; }
svg .legend { fill: #222; font-size: 12.5px; } svg .legend-sub { fill: #666; font-size: 11px; }
svg .row-label, svg .col-label { fill: #333; font-size: 11.5px; } svg .bar-value { fill: #444; font-size: 10.5px; }
svg .count { fill: #222; font-size: 12px; font-weight: 600; } svg .count.on-dark { fill: #fff; }
ul.misses { font-size: 13px; padding-left: 18px; } code { font-size: 12.5px; }
dl.machine { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; font-size: 13px; } dl.machine dt { color: #666; } dl.machine dd { margin: 0; }
`;

/**
 * Renders a report as one self-contained HTML document (UTF-8): the
 * comparison or evaluation table, the accuracy-vs-latency bubble chart, the
 * per-class recall bars, a confusion heat map per model, the misclassified
 * files, and the machine, library, engine, threads and date of the run.
 * Without a labelled folder only the table and the machine are shown.
 */
export function renderHtml(r: Report): string {
  const mo = r.measured_on;
  const title = r.command === 'eval' ? `eval: ${r.models[0]!.name}` : `compare: ${r.models.length} models`;
  const body: string[] = [];
  body.push(`<header><h1>edge-classifier ${esc(title)}</h1>`);
  body.push(
    `<p class="measured">${esc(`${r.data ? `${r.images} images in ${r.classes} classes from ${r.data}` : 'no labelled folder: latency only'} — measured on ${mo.machine}, ${mo.library}, engine ${mo.engine}, ${mo.threads} thread(s), ${mo.date}`)}</p></header>`,
  );

  if (r.data) {
    body.push('<section id="summary">');
    for (const m of r.models)
      body.push(`<p class="lead${r.models.length > 1 ? ' small' : ''}">${esc(`${r.models.length > 1 ? `${m.name}: ` : ''}${tutorialLine(m.metrics!)}`)}</p>`);
    body.push('</section>');
  }
  const t = comparisonRows(r);
  body.push(
    `<section id="table"><h2>${r.command === 'eval' ? 'Model' : 'Trade-off'}</h2><div class="scroll">${htmlTable(t.header, t.rows, t.align, 'main')}</div>`,
  );
  body.push(
    htmlTable(
      ['model', 'quantization', 'parameters', 'weights by dtype', 'engine', 'threads'],
      r.models.map((m) => [
        m.name,
        m.quantization.summary,
        m.quantization.parameters === null ? '—' : thousands(m.quantization.parameters),
        Object.entries(m.quantization.weight_bytes)
          .map(([d, b]) => `${d} ${formatBytes(b!)}`)
          .join(', ') || '—',
        m.engine,
        String(m.threads),
      ]),
      ['l', 'l', 'r', 'l', 'l', 'r'],
    ),
    '</section>',
  );

  if (r.data) {
    body.push('<section id="charts"><h2>At a glance</h2><div class="charts">');
    body.push(`<figure><figcaption>Top-1 accuracy vs latency — bubble area = file size</figcaption>${bubbleChart(r.models)}</figure>`);
    body.push(`<figure><figcaption>Recall per class (images per class in brackets)</figcaption>${recallBars(r.models)}</figure>`);
    body.push('</div></section>');
    body.push('<section id="confusion"><h2>Confusion matrices (rows: true class, columns: top-1)</h2><div class="charts">');
    for (const m of r.models)
      body.push(`<figure><figcaption>${esc(m.name)}</figcaption>${confusionHeatMap(m.metrics!, `confusion matrix of ${m.name}`)}</figure>`);
    body.push('</div></section>');
    body.push('<section id="per-class"><h2>Per class</h2>');
    for (const m of r.models) {
      const met = m.metrics!;
      body.push(`<h3>${esc(m.name)}</h3>`);
      body.push(
        htmlTable(
          ['class', 'folder', 'images', 'precision', 'recall'],
          met.per_class.map((c) => [c.label, c.folder, String(c.images), pct(c.precision), pct(c.recall)]),
          ['l', 'l', 'r', 'r', 'r'],
        ),
      );
      if (met.misclassified.length) {
        body.push(`<details><summary>${met.misclassified.length} misclassified</summary><ul class="misses">`);
        for (const x of met.misclassified)
          body.push(`<li><code>${esc(x.file)}</code>: ${esc(shortLabel(x.truth))} taken for <b>${esc(x.predicted)}</b> (${x.score.toFixed(3)})</li>`);
        body.push('</ul></details>');
      }
    }
    body.push('</section>');
  }
  if (r.skipped.length || r.notes.length) {
    body.push('<section id="skipped"><h2>Skipped files and notes</h2><ul class="misses">');
    for (const s of r.skipped) body.push(`<li>${esc(s.reason)}</li>`);
    for (const n of r.notes) body.push(`<li>${esc(n)}</li>`);
    body.push('</ul></section>');
  }
  body.push('<footer><h2>Measured on</h2><dl class="machine">');
  const facts: [string, string][] = [
    ['machine', mo.machine],
    ['CPU', `${mo.cpu} (${mo.cores} logical cores, ${mo.arch})`],
    ['system', mo.os],
    ['Node.js', mo.node],
    ['library', mo.library],
    ['engine', mo.engine],
    ['threads', mo.threads],
    ['date', mo.date],
  ];
  for (const [k, v] of facts) body.push(`<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`);
  body.push('</dl></footer>');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>${esc(`edge-classifier ${title}`)}</title>
<style>${STYLE}</style>
</head>
<body>
${body.join('\n')}
</body>
</html>
`;
}
