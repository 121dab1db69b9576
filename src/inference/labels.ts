import { readFile } from 'node:fs/promises';
import { unreadableFileError } from '../core/errors.js';

/** How a labels file is laid out: one label per line (`plain`), or `<index> <label>` lines (`indexed`). */
export type LabelsFormat = 'plain' | 'indexed';

/** A line of an indexed labels file: `0 background`, `1 tench` (index, whitespace, label). */
const INDEXED_LINE = /^\s*(\d+)\s+(\S.*?)\s*$/;

/**
 * Class labels indexed by the model output's class index. `entries[i]` is
 * the label of class i, or undefined when the file has none for it (a gap in
 * an indexed file, an empty line in a plain one, or past its end).
 */
export class Labels {
  constructor(
    readonly entries: readonly (string | undefined)[],
    /** Where the labels came from, for messages: a file path or `<model> metadata (labels.txt)`. */
    readonly source: string,
    readonly format: LabelsFormat = 'plain',
  ) {}

  /** Number of label slots (the highest index with a label, plus one). */
  get length(): number {
    return this.entries.length;
  }

  /** The label of class `index`, or `class <index>` when there is none. */
  labelFor(index: number): string {
    return labelFor(this.entries, index);
  }

  /**
   * Compares the label count with the output's class count N (from shape
   * [1,N]); returns a warning sentence when they differ, else null. The common
   * case of one label too few on a 1001-class ImageNet output is named: the
   * missing index-0 `background` class shifts every label by one.
   */
  checkClassCount(classCount: number, output = 'the model output'): string | null {
    return checkLabelCount(this.entries.length, classCount, this.source, output);
  }
}

/** The label of class `index` in `labels`, or `class <index>` when the list has none (missing, empty or too short). */
export function labelFor(labels: readonly (string | undefined)[] | undefined, index: number): string {
  const label = labels?.[index];
  return label === undefined || label === '' ? `class ${index}` : label;
}

/**
 * Warning for a labels count that does not match an output's class count, or
 * null when they match. Returned, not thrown: the daemon still runs, with
 * `class <index>` for classes past the end of the labels.
 */
export function checkLabelCount(labelCount: number, classCount: number, source: string, output = 'the model output'): string | null {
  if (labelCount === classCount) return null;
  let message = `${source} has ${labelCount} labels but ${output} has ${classCount} classes`;
  if (labelCount === classCount - 1) {
    message += ': it probably lacks the "background" label at index 0 that 1001-class ImageNet models have, so every label would be one class off';
  } else if (labelCount === classCount + 1) {
    message += ': it probably has an extra "background" label at index 0 that this model does not have, so every label would be one class off';
  } else if (labelCount < classCount) {
    message += `: classes ${labelCount} and above are shown as "class <index>"`;
  } else {
    message += `: labels past index ${classCount - 1} are never used`;
  }
  return message;
}

/**
 * Parses a labels file's text. `format` `auto` (the default) detects the
 * layout: `indexed` when the first non-blank line looks like `<index> <label>`
 * with index 0 or 1 (e.g. `0 background`), or when every non-blank line does
 * (a sparse map such as `286 Egyptian cat`), else `plain` (one label per line,
 * line N = class N, an empty line is a class without a label). Blank lines at
 * the end are ignored; CRLF line ends and a UTF-8 byte order mark are accepted.
 *
 * Throws an Error naming `source` and the line: in an indexed file, a line not
 * of the form `<index> <label>` (`labels.txt line 7: expected "<index> <label>"
 * like line 1, found "cat"`) or an index given twice.
 */
export function parseLabels(text: string, source: string, format: 'auto' | LabelsFormat = 'auto'): Labels {
  if (text.includes('\u0000') || text.includes('\uFFFD')) {
    throw new Error(`${source} is not a UTF-8 text file: expected one label per line, or "<index> <label>" lines`);
  }
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  while (lines.length > 0 && lines[lines.length - 1]!.trim() === '') lines.pop();
  const first = lines.findIndex((l) => l.trim() !== '');
  let detected: LabelsFormat = 'plain';
  if (format === 'indexed') detected = 'indexed';
  else if (format === 'auto' && first >= 0) {
    const m = INDEXED_LINE.exec(lines[first]!);
    const allIndexed = lines.every((l) => l.trim() === '' || INDEXED_LINE.test(l));
    if (m && (m[1] === '0' || m[1] === '1' || allIndexed)) detected = 'indexed';
  }
  if (detected === 'plain') {
    return new Labels(
      lines.map((l) => {
        const t = l.trim();
        return t === '' ? undefined : t;
      }),
      source,
      'plain',
    );
  }
  const entries: (string | undefined)[] = [];
  const lineOf = new Map<number, number>();
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '') continue;
    const m = INDEXED_LINE.exec(line);
    if (!m) {
      throw new Error(
        `${source} line ${i + 1}: expected "<index> <label>" like line ${first + 1} (${JSON.stringify(lines[first]!.trim())}), found ${JSON.stringify(line.trim())}`,
      );
    }
    const index = Number(m[1]);
    const previous = lineOf.get(index);
    if (previous !== undefined) {
      throw new Error(`${source} line ${i + 1}: index ${index} appears again (first on line ${previous})`);
    }
    if (index > 1_000_000) {
      throw new Error(`${source} line ${i + 1}: index ${index} is too large for a class index (at most 1000000)`);
    }
    lineOf.set(index, i + 1);
    entries[index] = m[2]!;
  }
  // Fill holes so that `entries` is a dense array of string | undefined.
  return new Labels(
    Array.from(entries, (e) => e),
    source,
    'indexed',
  );
}

/**
 * Reads a labels file (UTF-8): see `parseLabels` for the two layouts.
 * Throws when the file cannot be read (naming the path) or is malformed.
 */
export async function readLabelsFile(path: string): Promise<Labels> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw unreadableFileError('the labels file', path, err);
  }
  return parseLabels(text, path);
}
