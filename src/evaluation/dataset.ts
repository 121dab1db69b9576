import type { Dirent } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { EvalClass } from './metrics.js';

/*
 * A labelled folder: one sub-folder per class, named after a label of the
 * model, holding that class's images (the layout of Keras'
 * `image_dataset_from_directory` and of the TensorFlow flowers tutorial).
 */

/** An evaluation set that cannot be used: names the folder, what was expected and what came. */
class DatasetError extends Error {
  override readonly name = 'DatasetError';
}

/** One class folder and its files. */
interface DatasetClass extends EvalClass {
  /** Files of the folder (full paths), in name order; whether they are images is found when they are decoded. */
  readonly files: string[];
}

/** A labelled folder matched to a model's labels. */
export interface Dataset {
  readonly dir: string;
  /** Classes in folder-name order; each has at least one file. */
  readonly classes: DatasetClass[];
  /** Things worth saying that do not stop the evaluation (empty class folders, files outside class folders). */
  readonly notes: string[];
}

/** Names a label is known by: the whole label and, for ImageNet's `hotdog, hot dog, red hot`, each synonym; lower case. */
function labelNames(label: string): string[] {
  const whole = label.trim().toLowerCase();
  if (!whole.includes(', ')) return [whole];
  return [
    whole,
    ...whole
      .split(', ')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
  ];
}

/**
 * Model class indices whose label matches `name` as GPIO rules match labels:
 * case-insensitively and whole, against the whole label or one of its
 * comma-separated synonyms. A name of digits only is a class index (for
 * labels that are ambiguous, as ImageNet's two `crane`s). Whole-label matches
 * win over synonym matches.
 */
export function matchLabel(name: string, labels: readonly string[]): number[] {
  const want = name.trim().toLowerCase();
  if (/^\d+$/.test(want)) {
    const i = Number(want);
    return i < labels.length ? [i] : [];
  }
  const whole: number[] = [];
  const synonym: number[] = [];
  labels.forEach((label, i) => {
    const names = labelNames(label);
    if (names[0] === want) whole.push(i);
    else if (names.slice(1).includes(want)) synonym.push(i);
  });
  return whole.length > 0 ? whole : synonym;
}

/** Levenshtein edit distance (insertions, deletions, substitutions of one character). */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/**
 * Up to `max` labels close to `name`, best first: a name (whole label or a
 * synonym) one edit away (a typo); then labels holding the name as a word or
 * held in it (`bottle` → `beer bottle`); then names within an edit distance
 * of a quarter of the name's length (at least 2 for names over 4 characters).
 * E.g. `teddy bears` → `teddy, teddy bear`; `hot-dog` → `hotdog, hot dog, red hot`.
 */
export function nearMatches(name: string, labels: readonly string[], max = 5): string[] {
  const want = name.trim().toLowerCase();
  const limit = want.length <= 4 ? 1 : Math.max(2, Math.floor(want.length / 4));
  const wantWord = new RegExp(`\\b${escapeRegExp(want)}\\b`);
  const scored: { label: string; d: number }[] = [];
  const seen = new Set<string>();
  for (const label of labels) {
    if (seen.has(label) || label === '') continue;
    let best = Infinity;
    for (const n of labelNames(label)) {
      const d = editDistance(want, n);
      if (d <= 1) best = Math.min(best, d);
      else if (want.length >= 3 && (wantWord.test(n) || (n.length >= 3 && new RegExp(`\\b${escapeRegExp(n)}\\b`).test(want)))) {
        best = Math.min(best, 1.5 + Math.abs(n.length - want.length) / 1000);
      } else if (d <= limit) best = Math.min(best, d + 1);
    }
    if (best < Infinity) {
      seen.add(label);
      scored.push({ label, d: best });
    }
  }
  return scored
    .sort((a, b) => a.d - b.d)
    .slice(0, max)
    .map((s) => s.label);
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Reads a labelled folder and matches each sub-folder to a model class (see
 * `matchLabel`). Hidden entries (`.name`) are skipped; files directly in
 * `dir` (a README, a SOURCES.md) are noted and ignored; an empty class
 * folder is noted and left out.
 *
 * Throws DatasetError when `dir` is missing or not a folder, holds no
 * sub-folder, when a folder matches no label (the message lists near
 * matches) or several (it names them and suggests the class index), when two
 * folders match the same class, or when no folder holds a file.
 */
export async function readDataset(dir: string, labels: readonly string[], labelsSource: string): Promise<Dataset> {
  let entries: Dirent[];
  try {
    if (!(await stat(dir)).isDirectory()) throw new DatasetError(`${dir} is not a folder: expected a folder with one sub-folder of images per class`);
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (err instanceof DatasetError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new DatasetError(`cannot read the evaluation folder ${dir}: ${code === 'ENOENT' ? 'no such folder' : (err as Error).message}`);
  }
  const notes: string[] = [];
  const folders = entries
    .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort();
  const loose = entries
    .filter((e) => e.isFile() && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort();
  if (folders.length === 0) {
    throw new DatasetError(
      `${dir} holds no class folders${loose.length ? ` (only ${loose.length} file${loose.length > 1 ? 's' : ''})` : ' (it is empty)'}: expected one sub-folder per class, named after a label of the model (e.g. '${labels[1] ?? labels[0] ?? 'cat'}/'), holding that class's images`,
    );
  }
  if (loose.length)
    notes.push(
      `${loose.length} file${loose.length > 1 ? 's' : ''} directly in ${dir} ignored (${loose.slice(0, 3).join(', ')}${loose.length > 3 ? ', …' : ''}): only class folders are read`,
    );
  if (labels.length === 0) {
    throw new DatasetError(`the model has no labels, so the folders of ${dir} cannot be matched to classes: give a labels file with --labels`);
  }

  const classes: DatasetClass[] = [];
  const byIndex = new Map<number, string>();
  const problems: string[] = [];
  for (const folder of folders) {
    const found = matchLabel(folder, labels);
    if (found.length === 0) {
      const near = nearMatches(folder, labels);
      problems.push(`folder '${folder}' matches no label of ${labelsSource}${near.length ? `; near matches: ${near.map((l) => `'${l}'`).join(', ')}` : ''}`);
      continue;
    }
    if (found.length > 1) {
      problems.push(
        `folder '${folder}' matches ${found.length} labels (${found.map((i) => `${i} '${labels[i]}'`).join(', ')}): rename it to the class index, e.g. '${found[0]}'`,
      );
      continue;
    }
    const index = found[0]!;
    const other = byIndex.get(index);
    if (other !== undefined) {
      problems.push(`folders '${other}' and '${folder}' both match class ${index} '${labels[index]}': merge them`);
      continue;
    }
    byIndex.set(index, folder);
    const sub = path.join(dir, folder);
    const files = (await readdir(sub, { withFileTypes: true }))
      .filter((e) => !e.name.startsWith('.') && (e.isFile() || e.isSymbolicLink()))
      .map((e) => path.join(sub, e.name))
      .sort();
    if (files.length === 0) {
      notes.push(`folder '${folder}' is empty: class '${labels[index]}' is left out`);
      continue;
    }
    classes.push({ index, label: labels[index]!, folder, files });
  }
  if (problems.length) {
    throw new DatasetError(
      `${dir}: ${problems.join('; ')}. Class folders are compared with the labels case-insensitively, whole label or one of its comma-separated synonyms`,
    );
  }
  if (classes.length === 0) throw new DatasetError(`${dir}: every class folder is empty: expected image files in them`);
  return { dir, classes, notes };
}
