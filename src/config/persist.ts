import { constants } from 'node:fs';
import { access, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { isMap, isSeq, parseDocument } from 'yaml';

/** One setting to write: its key path in the config file (`['inference', 'threshold']`, `['gpio', 'rules', 0, 'min_score']`) and value. */
export interface SettingChange {
  readonly path: readonly (string | number)[];
  readonly value: unknown;
}

const dotted = (keys: readonly (string | number)[]): string =>
  keys.reduce<string>((acc, k) => (typeof k === 'number' ? `${acc}[${k}]` : acc ? `${acc}.${k}` : k), '');

/**
 * Writes live settings into the config file they came from, keeping
 * everything else as it was: YAML files are edited through the `yaml`
 * library's Document API, so comments, key order and the other values stay
 * (only the changed scalars are rewritten, plus their parent mappings when
 * missing); `.json` files are rewritten as JSON with 2-space indentation.
 *
 * The write is atomic: a temporary file in the same folder, with the
 * original's permission bits, is written, flushed to disk and renamed over
 * the original; a crash leaves either the old or the new file.
 *
 * Throws (nothing written) when the file or its folder is not writable,
 * when it does not parse, or when a change indexes into a list the file
 * does not have (e.g. a GPIO rule given by a `--gpio` flag, not the file).
 */
export async function persistSettings(file: string, changes: readonly SettingChange[]): Promise<void> {
  try {
    await access(file, constants.R_OK | constants.W_OK);
    await access(path.dirname(file), constants.W_OK);
  } catch (err) {
    throw new Error(`cannot persist settings to ${file}: not writable (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const text = await readFile(file, 'utf8');
  const doc = parseDocument(text);
  if (doc.errors.length > 0) throw new Error(`cannot persist settings to ${file}: it does not parse (${doc.errors[0]!.message.split('\n')[0]})`);
  for (const change of changes) {
    // A numeric key must index an existing list item: setIn would otherwise invent a mapping with key 0.
    for (let i = 0; i < change.path.length; i++) {
      const k = change.path[i]!;
      if (typeof k !== 'number') continue;
      const parent = doc.getIn(change.path.slice(0, i) as (string | number)[], true);
      if (!isSeq(parent) || k >= parent.items.length) {
        throw new Error(
          `cannot persist ${dotted(change.path)} to ${file}: the file has no ${dotted(change.path.slice(0, i + 1))} (it came from the command line?)`,
        );
      }
    }
    const parentPath = change.path.slice(0, -1) as (string | number)[];
    const parent = parentPath.length === 0 ? doc.contents : doc.getIn(parentPath, true);
    if (parent !== undefined && parent !== null && !isMap(parent) && !isSeq(parent)) {
      throw new Error(`cannot persist ${dotted(change.path)} to ${file}: ${dotted(parentPath)} is not a mapping there`);
    }
    doc.setIn(change.path as (string | number)[], change.value);
  }
  const out = file.toLowerCase().endsWith('.json') ? `${JSON.stringify(doc.toJS(), null, 2)}\n` : doc.toString();
  const mode = (await stat(file)).mode & 0o7777;
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    const handle = await open(tmp, 'w', mode);
    try {
      await handle.writeFile(out, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw new Error(`cannot persist settings to ${file}: ${(err as Error).message}`);
  }
  // Make the rename itself durable (the folder entry), as far as the file system allows.
  const dir = await open(path.dirname(file), 'r').catch(() => undefined);
  await dir?.sync().catch(() => {});
  await dir?.close();
}
