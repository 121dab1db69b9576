/**
 * The fleet inventory: which devices exist, how to reach them over SSH and
 * which groups they belong to. A YAML (or JSON) file:
 *
 *   defaults:                 # applied to every host that does not set its own
 *     user: pi
 *     identity_file: ~/.ssh/id_ed25519
 *   hosts:
 *     kitchen:                # the host's name: letters, digits, '.', '_', '-'
 *       address: 192.168.1.20 # what ssh connects to; default: the name
 *       groups: [house]
 *     barn:
 *       address: barn.local
 *       port: 2222
 *       user: admin
 *     build-pi:
 *       address: 192.168.1.30
 *       builder: true         # may build releases for its arch
 *
 * Unknown keys are refused; every message names the host, the key and the
 * line. Relative file paths resolve against the inventory's folder, `~/`
 * against the operator's home.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { isMap, isNode, isScalar, LineCounter, parseDocument, stringify } from 'yaml';
import { z } from 'zod';

/** One device of the fleet, with every default applied. */
export interface FleetHost {
  /** Name in the inventory (and in every table and message). */
  readonly name: string;
  /** Host name or IP address ssh connects to. */
  readonly address: string;
  /** SSH port, 1–65535. */
  readonly port: number;
  /** Remote login; undefined: whatever ssh would use (ssh_config, then the local user name). */
  readonly user: string | undefined;
  /** Group names, in file order, without duplicates. */
  readonly groups: readonly string[];
  /** True when the host may build releases for its arch (`fleet build`). */
  readonly builder: boolean;
  /** Run the device commands through `sudo -n` (the rule `fleet bootstrap` installs). */
  readonly sudo: boolean;
  /** The device-side program, a name on the remote PATH or an absolute path. */
  readonly command: string;
  /** Private key file (absolute), or undefined to let ssh and the agent choose. */
  readonly identityFile: string | undefined;
  /** known_hosts file (absolute), or undefined for ssh's own (~/.ssh/known_hosts). */
  readonly knownHostsFile: string | undefined;
  /** ssh_config file given to ssh with -F (absolute), or undefined for the user's own. */
  readonly sshConfigFile: string | undefined;
  /** Extra `Key=Value` ssh options, passed as `-o Key=Value` after the ones fleet sets. */
  readonly sshOptions: readonly string[];
  /** Folder on the device where uploads wait until installed; relative to the login's home. */
  readonly stagingDir: string;
}

/** A parsed inventory: hosts in file order. */
export interface Inventory {
  readonly file: string;
  readonly hosts: readonly FleetHost[];
  /** Every group name, sorted. */
  readonly groups: readonly string[];
}

/** An inventory that cannot be used; `problems` each name the host, key and line. */
export class InventoryError extends Error {
  constructor(
    readonly problems: readonly string[],
    readonly file?: string,
  ) {
    super(
      `${file !== undefined ? `inventory ${file}: ` : ''}${problems.length === 1 ? problems[0] : `${problems.length} problems:\n  - ${problems.join('\n  - ')}`}`,
    );
    this.name = 'InventoryError';
  }
}

/** Default folder for uploads on a device, relative to the SSH login's home. */
export const DEFAULT_STAGING_DIR = '.cache/edge-classifier/staging';
/** The device-side program's default name, found on the remote PATH (sudo's secure_path). */
const DEFAULT_REMOTE_COMMAND = 'edge-classifier';

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const nameSchema = z.string().regex(NAME, 'expected letters, digits, ".", "_" or "-" (not starting with "." or "-")');
const sshOption = z.string().regex(/^[A-Za-z][A-Za-z0-9]*[= ]\S/, "expected 'Key=Value', e.g. 'ProxyJump=bastion'");

const settings = {
  user: z
    .string()
    .min(1)
    .regex(/^[^\s@:]+$/, 'expected a user name without spaces, "@" or ":"'),
  port: z.number().int().min(1).max(65535),
  sudo: z.boolean(),
  command: z.string().min(1),
  identity_file: z.string().min(1),
  known_hosts_file: z.string().min(1),
  ssh_config_file: z.string().min(1),
  ssh_options: z.array(sshOption),
  staging_dir: z.string().min(1),
};

const defaultsSchema = z.strictObject(settings).partial();
const hostSchema = z
  .strictObject({
    ...settings,
    address: z
      .string()
      .min(1)
      .regex(/^[^\s@]+$/, 'expected a host name or IP address without spaces or "@"'),
    groups: z.array(nameSchema),
    builder: z.boolean(),
  })
  .partial();
const fileSchema = z.strictObject({
  defaults: defaultsSchema.optional(),
  hosts: z.record(nameSchema, hostSchema.nullable()),
});

type Keys = readonly PropertyKey[];

function expandPath(value: string | undefined, base: string): string | undefined {
  if (value === undefined) return undefined;
  if (value === '~') return homedir();
  if (value.startsWith('~/')) return path.join(homedir(), value.slice(2));
  return path.resolve(base, value);
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return `${typeof value} ${JSON.stringify(value)}`;
}

function valueAt(root: unknown, keys: Keys): unknown {
  let v = root;
  for (const k of keys) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[k as string];
  }
  return v;
}

/**
 * Parses inventory text. `file` is used in messages and to resolve relative
 * paths. Throws InventoryError listing every problem found.
 */
export function parseInventory(text: string, file: string): Inventory {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new InventoryError(
      doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        return `${pos ? `line ${pos.line}: ` : ''}${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`;
      }),
      file,
    );
  }
  const data: unknown = doc.toJS();
  const lineOf = (keys: Keys): number | undefined => {
    let node: unknown = doc.contents;
    let line: number | undefined;
    for (const k of keys) {
      if (!isMap(node)) break;
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(k));
      if (!pair) break;
      if (isNode(pair.key) && pair.key.range) line = lineCounter.linePos(pair.key.range[0]).line;
      node = pair.value;
    }
    return line;
  };
  const name = (keys: Keys): string =>
    keys[0] === 'hosts' && keys.length >= 2
      ? `host '${String(keys[1])}'${keys.length > 2 ? ` ${keys.slice(2).join('.')}` : ''}`
      : keys.join('.') || 'top level';
  const at = (line: number | undefined): string => (line !== undefined ? `line ${line}: ` : '');
  const where = (keys: Keys): string => `${at(lineOf(keys))}${name(keys)}`;

  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new InventoryError([`expected a mapping with 'hosts' (and optionally 'defaults') at the top level but found ${describe(data)}`], file);
  }
  const parsed = fileSchema.safeParse(data);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const keys = issue.path;
      if (issue.code === 'unrecognized_keys') {
        const known = Object.keys(keys.length === 0 ? fileSchema.shape : keys[0] === 'defaults' ? settings : hostSchema.shape);
        return issue.keys.map((k) => `${at(lineOf([...keys, k]))}${name(keys)}: unknown key '${k}' (known: ${known.join(', ')})`).join('; ');
      }
      if (issue.code === 'invalid_key')
        return `${where(keys)}: host name ${issue.message.replace(/^Invalid key in record$/, 'not valid: expected letters, digits, ".", "_" or "-"')}`;
      let message = issue.message.replace(/^Invalid input: /, '');
      if (issue.code === 'too_small' && issue.origin === 'string') message = 'expected a non-empty string';
      if (issue.code === 'too_small' && issue.origin === 'number') message = `expected at least ${String(issue.minimum)}`;
      if (issue.code === 'too_big') message = `expected at most ${String(issue.maximum)}`;
      if (issue.code === 'invalid_type') {
        const expected = ({ record: 'a mapping', object: 'a mapping', array: 'a list' } as Record<string, string>)[issue.expected] ?? `a ${issue.expected}`;
        const value = valueAt(data, keys);
        message = value === undefined ? `missing (expected ${expected})` : `expected ${expected}, got ${describe(value)}`;
      }
      return `${where(keys)}: ${message}`;
    });
    throw new InventoryError(problems, file);
  }

  const base = path.dirname(path.resolve(file));
  const d = parsed.data.defaults ?? {};
  const hosts: FleetHost[] = [];
  const problems: string[] = [];
  for (const [name, h0] of Object.entries(parsed.data.hosts)) {
    const h = h0 ?? {};
    const groups = [...new Set(h.groups ?? [])];
    if (groups.includes(name)) problems.push(`${where(['hosts', name, 'groups'])}: group '${name}' has the host's own name; host and group names must differ`);
    hosts.push({
      name,
      address: h.address ?? name,
      port: h.port ?? d.port ?? 22,
      user: h.user ?? d.user,
      groups,
      builder: h.builder ?? false,
      sudo: h.sudo ?? d.sudo ?? true,
      command: h.command ?? d.command ?? DEFAULT_REMOTE_COMMAND,
      identityFile: expandPath(h.identity_file ?? d.identity_file, base),
      knownHostsFile: expandPath(h.known_hosts_file ?? d.known_hosts_file, base),
      sshConfigFile: expandPath(h.ssh_config_file ?? d.ssh_config_file, base),
      sshOptions: [...(d.ssh_options ?? []), ...(h.ssh_options ?? [])],
      stagingDir: h.staging_dir ?? d.staging_dir ?? DEFAULT_STAGING_DIR,
    });
  }
  if (hosts.length === 0) problems.push(`${where(['hosts'])}: no hosts; add at least one under 'hosts:'`);
  const names = new Set(hosts.map((h) => h.name));
  const groups = [...new Set(hosts.flatMap((h) => h.groups))].sort();
  for (const g of groups) {
    if (names.has(g)) problems.push(`group '${g}' has the name of a host; host and group names must differ`);
    if (g === 'all') problems.push(`group 'all' is reserved (it selects every host)`);
  }
  if (problems.length > 0) throw new InventoryError(problems, file);
  return { file, hosts, groups };
}

/** Reads and parses an inventory file; a missing file is an InventoryError naming it. */
export function loadInventory(file: string): Inventory {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new InventoryError([e.code === 'ENOENT' ? `no such file (give one with --inventory FILE or EDGE_CLASSIFIER_INVENTORY)` : e.message], file);
  }
  return parseInventory(text, file);
}

/**
 * The hosts a `--limit` pattern selects, in inventory order: a comma-separated
 * list of host names, group names and `all`; a leading `!` excludes
 * (`all,!barn`). Undefined or empty selects every host. Throws InventoryError
 * naming each unknown name and listing the known ones.
 */
export function selectHosts(inventory: Inventory, limit: string | undefined): FleetHost[] {
  const words = (limit ?? '')
    .split(',')
    .map((w) => w.trim())
    .filter((w) => w !== '');
  if (words.length === 0) return [...inventory.hosts];
  const include = new Set<string>();
  const exclude = new Set<string>();
  const unknown: string[] = [];
  let onlyExcludes = true;
  for (const w of words) {
    const negate = w.startsWith('!');
    const name = negate ? w.slice(1) : w;
    if (!negate) onlyExcludes = false;
    const matched = name === 'all' ? inventory.hosts : inventory.hosts.filter((h) => h.name === name || h.groups.includes(name));
    if (matched.length === 0) unknown.push(name);
    for (const h of matched) (negate ? exclude : include).add(h.name);
  }
  if (unknown.length > 0) {
    throw new InventoryError(
      [
        `--limit: no host or group named ${unknown.map((u) => `'${u}'`).join(', ')} (hosts: ${inventory.hosts.map((h) => h.name).join(', ')}; groups: ${inventory.groups.join(', ') || 'none'})`,
      ],
      inventory.file,
    );
  }
  if (onlyExcludes) for (const h of inventory.hosts) include.add(h.name);
  const picked = inventory.hosts.filter((h) => include.has(h.name) && !exclude.has(h.name));
  if (picked.length === 0) throw new InventoryError([`--limit '${limit}' selects no host`], inventory.file);
  return picked;
}

/**
 * The hosts as an Ansible YAML inventory: connection variables
 * (`ansible_host`, `ansible_port`, `ansible_user`, the key, known_hosts and
 * ssh options), the role's variables (`edge_classifier_command`,
 * `edge_classifier_sudo`, `edge_classifier_staging_dir`), the inventory's
 * groups as Ansible groups and `edge_classifier_builders`.
 */
export function toAnsibleInventory(hosts: readonly FleetHost[]): string {
  const vars = (h: FleetHost): Record<string, unknown> => {
    const common = [
      ...(h.sshConfigFile !== undefined ? ['-F', h.sshConfigFile] : []),
      ...(h.knownHostsFile !== undefined ? ['-o', `UserKnownHostsFile=${h.knownHostsFile}`] : []),
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      'BatchMode=yes',
      ...h.sshOptions.flatMap((o) => ['-o', o]),
    ];
    return {
      ansible_host: h.address,
      ansible_port: h.port,
      ...(h.user !== undefined ? { ansible_user: h.user } : {}),
      ...(h.identityFile !== undefined ? { ansible_ssh_private_key_file: h.identityFile } : {}),
      ansible_ssh_common_args: common.map((w) => (/^[A-Za-z0-9_/.:=@%+,-]+$/.test(w) ? w : `'${w}'`)).join(' '),
      edge_classifier_command: h.command,
      edge_classifier_sudo: h.sudo,
      edge_classifier_staging_dir: h.stagingDir,
    };
  };
  const groups: Record<string, { hosts: Record<string, null> }> = {};
  for (const h of hosts) {
    for (const g of [...h.groups, ...(h.builder ? ['edge_classifier_builders'] : [])]) {
      groups[g] ??= { hosts: {} };
      groups[g].hosts[h.name] = null;
    }
  }
  const doc = { all: { hosts: Object.fromEntries(hosts.map((h) => [h.name, vars(h)])), ...(Object.keys(groups).length > 0 ? { children: groups } : {}) } };
  return stringify(doc, { lineWidth: 0 });
}
