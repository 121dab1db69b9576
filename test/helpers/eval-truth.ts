/**
 * Accuracy figures computed from per-image `classify --json` results, apart
 * from the code of `eval` and `compare`, for tests to check them against.
 */
import { copyFileSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { runCli } from './cli.js';

export interface Classified {
  file: string;
  truth: number;
  /** Class indices, highest score first (as classify lists them). */
  ranked: number[];
  /** Score by class index (the 1000 highest: classify ran with --top-k 1000, its limit, and --threshold 0). */
  scores: Map<number, number>;
}

/** The labelled images of an eval folder: `<dir>/<label>/<file>`, folders named exactly as a line of `labels`. */
export function labelledImages(dir: string, labels: string[]): { file: string; truth: number }[] {
  const out: { file: string; truth: number }[] = [];
  for (const folder of readdirSync(dir).sort()) {
    const sub = path.join(dir, folder);
    if (!statSync(sub).isDirectory()) continue;
    const truth = labels.indexOf(folder);
    if (truth < 0) throw new Error(`test set: folder ${folder} is not a label`);
    for (const f of readdirSync(sub).sort()) out.push({ file: path.join(sub, f), truth });
  }
  return out;
}

/** Runs `classify --json` on every image with every class reported, and pairs the results with the truth. */
export async function classifyAll(images: { file: string; truth: number }[], args: string[]): Promise<Classified[]> {
  const r = await runCli(['classify', '--json', '--top-k', '1000', '--threshold', '0', ...args, ...images.map((i) => i.file)]);
  if (r.code !== 0) throw new Error(`classify failed (${r.code}): ${r.stderr}`);
  const lines = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { file: string; classes: { index: number; score: number }[] });
  return lines.map((l, i) => ({
    file: l.file,
    truth: images[i]!.truth,
    ranked: l.classes.map((c) => c.index),
    scores: new Map(l.classes.map((c) => [c.index, c.score])),
  }));
}

/** Confusion counts (rows: truth in `classes` order, columns: top-1 in `classes` order then "other"). */
export function confusion(results: Classified[], classes: number[]): number[][] {
  const m = classes.map(() => new Array<number>(classes.length + 1).fill(0));
  for (const r of results) {
    const col = classes.indexOf(r.ranked[0]!);
    m[classes.indexOf(r.truth)]![col < 0 ? classes.length : col]!++;
  }
  return m;
}

/** numpy's default percentile (linear interpolation between closest ranks). */
export function numpyPercentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  const h = ((s.length - 1) * p) / 100;
  return s[Math.floor(h)]! + (h - Math.floor(h)) * (s[Math.ceil(h)]! - s[Math.floor(h)]!);
}

export const imagenetLabels = (file: string): string[] =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l, i, all) => l !== '' || i < all.length - 1);

/** A small labelled folder (one image of each of three classes, copied from `evalDir`) for tests that check output shapes, not figures. */
export function smallEvalFolder(evalDir: string, into: string): string {
  const dir = path.join(into, 'small-eval');
  for (const [folder, file] of [
    ['banana', 'jetson_banana_0.jpg'],
    ['hotdog, hot dog, red hot', 'coral_imprinting_hotdog_test_0.png'],
    ['toaster', 'mlnet_wikimedia_toaster.jpg'],
  ] as const) {
    mkdirSync(path.join(dir, folder), { recursive: true });
    copyFileSync(path.join(evalDir, folder, file), path.join(dir, folder, file));
  }
  return dir;
}
