import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { execCapture } from './exec.js';
import type { Layout } from './layout.js';

/** The device paths of the shipped unit that move under a test root. */
const DEVICE_PATHS = ['/opt/edge-classifier', '/etc/edge-classifier', '/var/lib/edge-classifier', '/run/edge-classifier'] as const;

/** A parsed unit file: settings per section, each key with all its values in order (drop-ins included). */
export type UnitSettings = Map<string, Map<string, string[]>>;

/**
 * Parses systemd unit file text (systemd.syntax(7)): `[Section]` headers,
 * `Key=Value` lines, `#`/`;` comments, lines continued with a trailing
 * backslash. An empty assignment (`Key=`) resets the list, as systemd does
 * for list settings. Later texts (drop-ins) add to earlier ones.
 */
export function parseUnit(...texts: string[]): UnitSettings {
  const units: UnitSettings = new Map();
  for (const text of texts) {
    let section = '';
    const lines = text.replace(/\\\n/g, ' ').split('\n');
    for (const raw of lines) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
      const header = /^\[(.+)\]$/.exec(line);
      if (header) {
        section = header[1]!;
        if (!units.has(section)) units.set(section, new Map());
        continue;
      }
      const eq = line.indexOf('=');
      if (eq < 0 || section === '') continue;
      const key = line.slice(0, eq).trim();
      const value = line.slice(eq + 1).trim();
      const keys = units.get(section)!;
      if (value === '') keys.set(key, []);
      else keys.set(key, [...(keys.get(key) ?? []), value]);
    }
  }
  return units;
}

/** The unit file and its drop-ins (`<unit>.d/*.conf`, in name order) as parsed settings, or undefined when the unit is not installed. */
export function readInstalledUnit(layout: Layout): UnitSettings | undefined {
  if (!existsSync(layout.unitFile)) return undefined;
  const texts = [readFileSync(layout.unitFile, 'utf8')];
  const dropins = `${layout.unitFile}.d`;
  if (existsSync(dropins)) {
    for (const f of readdirSync(dropins)
      .filter((n) => n.endsWith('.conf'))
      .sort())
      texts.push(readFileSync(path.join(dropins, f), 'utf8'));
  }
  return parseUnit(...texts);
}

/**
 * The program `ExecStart=` runs (its first word, without the `-@+!:`
 * prefixes systemd allows), or undefined when there is none.
 */
export function execStartProgram(unit: UnitSettings): string | undefined {
  const values = unit.get('Service')?.get('ExecStart');
  const last = values?.[values.length - 1];
  if (last === undefined) return undefined;
  const first = last
    .replace(/^[-@+!:]+/, '')
    .trim()
    .split(/\s+/)[0];
  return first === '' ? undefined : first;
}

/** A Node.js binary's identity, from running it. */
export interface NodeIdentity {
  /** The binary. */
  readonly path: string;
  /** `process.versions.modules` (NODE_MODULE_VERSION). */
  readonly abi: string;
  /** `process.version`. */
  readonly version: string;
  /** `process.arch`. */
  readonly arch: string;
}

/**
 * Runs `node -p` to learn its ABI, version and arch.
 * @throws Error naming the binary when it cannot run.
 */
export async function nodeIdentity(node: string): Promise<NodeIdentity> {
  const r = await execCapture(node, ['-p', 'process.versions.modules + " " + process.version + " " + process.arch'], { timeoutMs: 30_000 });
  const parts = r.stdout.trim().split(' ');
  if (r.code !== 0 || parts.length !== 3) {
    const why = r.spawnError ? (r.spawnError.code ?? r.spawnError.message) : `exit ${r.code ?? r.signal}: ${r.stderr.trim().slice(0, 200)}`;
    throw new Error(`cannot run the Node.js ${node} (${why})`);
  }
  return { path: node, abi: parts[0]!, version: parts[1]!, arch: parts[2]! };
}

/**
 * The Node.js the service runs: `--node` when given, else the first word of
 * the installed unit's `ExecStart=` (mapped into the root when it is a
 * path inside it), else this process's own binary. `source` says which.
 */
export function serviceNode(layout: Layout, override?: string): { path: string; source: 'flag' | 'unit' | 'this process' } {
  if (override !== undefined) return { path: override, source: 'flag' };
  const unit = readInstalledUnit(layout);
  const program = unit && execStartProgram(unit);
  if (program !== undefined) return { path: program, source: 'unit' };
  return { path: process.execPath, source: 'this process' };
}

/**
 * The unit file text for `layout`'s root and Node.js `node`: the shipped
 * unit with its device paths (`/opt/edge-classifier`, `/etc/edge-classifier`,
 * `/var/lib/edge-classifier`) moved under the root and `/usr/bin/node`
 * replaced by `node`. With root `/` and the default node it is the shipped
 * file unchanged.
 */
export function renderUnit(template: string, layout: Layout, node = '/usr/bin/node'): string {
  let text = template.replace(/^(ExecStart=)\/usr\/bin\/node(?=\s)/m, `$1${node}`);
  if (layout.root !== '/') {
    for (const p of DEVICE_PATHS) text = text.split(p).join(layout.inRoot(p));
  }
  return text;
}
