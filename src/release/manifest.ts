import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { checkVersion } from './layout.js';

/** File name of the release manifest at the top of an archive and of an installed release. */
export const MANIFEST_FILE = 'release.json';

/**
 * What a release archive holds, written by `pack` and checked by
 * `release install` before anything is unpacked.
 */
export interface ReleaseManifest {
  /** Always `edge-classifier`. */
  readonly name: 'edge-classifier';
  /** Layout version of this manifest (1). */
  readonly format: 1;
  /** Release version, also the folder name under `releases/`. */
  readonly version: string;
  /** git commit of the source (40 hex digits), or `unknown` outside a git checkout. */
  readonly commit: string;
  /** True when the source had uncommitted changes. */
  readonly dirty: boolean;
  /** `linux`. */
  readonly platform: string;
  /** Node.js `process.arch` the native parts were built for: `x64`, `arm64`, `arm`. */
  readonly arch: string;
  /** `process.versions.modules` of the Node.js that built or installed the native parts (NODE_MODULE_VERSION, e.g. `115` for Node.js 20). */
  readonly node_abi: string;
  /** That Node.js's version, e.g. `v20.20.2` (informative). */
  readonly node_version: string;
  /** Build date, ISO 8601 UTC. */
  readonly built_at: string;
  /** Bytes of all unpacked files (for the free-space check before unpacking). */
  readonly unpacked_bytes: number;
  /** Number of unpacked files. */
  readonly files: number;
  /** Packages with native code in the release, `name@version`. */
  readonly native: readonly string[];
}

/** `edge-classifier-<version>-linux-<arch>.tar.gz`. */
export function archiveName(version: string, arch: string): string {
  return `edge-classifier-${version}-linux-${arch}.tar.gz`;
}

/**
 * Checks a parsed manifest's fields.
 * @throws Error naming the field, what was expected and what came.
 */
export function parseManifest(value: unknown, where: string): ReleaseManifest {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new Error(`${where}: expected a JSON object, got ${JSON.stringify(value)?.slice(0, 60)}`);
  const m = value as Record<string, unknown>;
  const str = (key: string): string => {
    const v = m[key];
    if (typeof v !== 'string' || v === '') throw new Error(`${where}: ${key} must be a non-empty string, got ${JSON.stringify(v)}`);
    return v;
  };
  const count = (key: string): number => {
    const v = m[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new Error(`${where}: ${key} must be a whole number ≥ 0, got ${JSON.stringify(v)}`);
    return v;
  };
  if (m.name !== 'edge-classifier') throw new Error(`${where}: not an edge-classifier release (name ${JSON.stringify(m.name)})`);
  if (m.format !== 1)
    throw new Error(`${where}: manifest format ${JSON.stringify(m.format)} is not known to this version (expected 1): install it with a newer edge-classifier`);
  const version = str('version');
  try {
    checkVersion(version);
  } catch (err) {
    throw new Error(`${where}: ${(err as Error).message}`);
  }
  if (!/^\d+$/.test(str('node_abi'))) throw new Error(`${where}: node_abi must be a number such as "115", got ${JSON.stringify(m.node_abi)}`);
  const native = m.native;
  if (!Array.isArray(native) || !native.every((n) => typeof n === 'string')) throw new Error(`${where}: native must be a list of package names`);
  if (Number.isNaN(Date.parse(str('built_at')))) throw new Error(`${where}: built_at must be an ISO 8601 date, got ${JSON.stringify(m.built_at)}`);
  return {
    name: 'edge-classifier',
    format: 1,
    version,
    commit: str('commit'),
    dirty: m.dirty === true,
    platform: str('platform'),
    arch: str('arch'),
    node_abi: str('node_abi'),
    node_version: str('node_version'),
    built_at: str('built_at'),
    unpacked_bytes: count('unpacked_bytes'),
    files: count('files'),
    native: native as string[],
  };
}

/** Reads `release.json` of an installed (or unpacked) release folder. */
export async function readManifest(dir: string): Promise<ReleaseManifest> {
  const file = path.join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new Error(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: not JSON (${(err as Error).message})`);
  }
  return parseManifest(json, file);
}
