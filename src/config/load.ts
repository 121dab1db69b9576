import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMap, isNode, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import { describeValue, unreadableFileError } from '../core/errors.js';
import { type Config, configSchema, DEFAULTS, GPIO_RULE_DEFAULTS, type GpioRuleConfig } from './schema.js';

/** sysexits.h EX_CONFIG: the systemd unit lists it in RestartPreventExitStatus. */
export const EX_CONFIG = 78;

/**
 * A configuration that cannot be used. `problems` holds one sentence per
 * problem, each naming its key (and the file line when it came from a file).
 * The process shell exits with {@link EX_CONFIG} on it.
 */
export class ConfigError extends Error {
  readonly exitCode = EX_CONFIG;
  constructor(
    readonly problems: string[],
    readonly file?: string,
  ) {
    super(
      problems.length === 1
        ? `invalid configuration${file ? ` in ${file}` : ''}: ${problems[0]}`
        : `invalid configuration${file ? ` in ${file}` : ''}:\n  - ${problems.join('\n  - ')}`,
    );
    this.name = 'ConfigError';
  }
}

/** The package's root folder (holding package.json); default relative paths resolve against it. */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

type Plain = Record<string, unknown>;
const isPlain = (v: unknown): v is Plain => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Deep merge: plain objects merge key by key, everything else (arrays too) replaces. */
function merge(base: unknown, over: unknown): unknown {
  if (over === undefined) return base;
  if (!isPlain(base) || !isPlain(over)) return over;
  const out: Plain = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = merge(base[k], v);
  return out;
}

/** Overrides from the command line, already parsed; undefined means "not given". */
export interface ConfigOverrides {
  source?: string;
  model?: string;
  labels?: string;
  cpuModel?: string;
  delegate?: string;
  engine?: string;
  mqttUrl?: string;
  baseTopic?: string;
  topK?: number;
  threshold?: number;
  threads?: number | 'auto';
  logLevel?: string;
  /** GPIO rules from `--gpio` flags (see `parseGpioFlag`); replace the file's rules when given. */
  gpioRules?: Array<Pick<GpioRuleConfig, 'pin' | 'labels'> & Partial<GpioRuleConfig>>;
}

/** Environment variables read as overrides (below flags, above the file). */
const ENV_VARS = {
  EDGE_CLASSIFIER_SOURCE: 'source.spec',
  EDGE_CLASSIFIER_MODEL: 'model.path',
  EDGE_CLASSIFIER_LABELS: 'model.labels',
  EDGE_CLASSIFIER_DELEGATE: 'inference.delegate',
  EDGE_CLASSIFIER_ENGINE: 'inference.engine',
  EDGE_CLASSIFIER_TFLITE_LIB: 'inference.library',
  EDGE_CLASSIFIER_MQTT_URL: 'mqtt.url',
  EDGE_CLASSIFIER_MQTT_USERNAME: 'mqtt.username',
  EDGE_CLASSIFIER_MQTT_PASSWORD: 'mqtt.password',
  EDGE_CLASSIFIER_BASE_TOPIC: 'mqtt.base_topic',
  EDGE_CLASSIFIER_LOG_LEVEL: 'log.level',
} as const;

function setPath(target: Plain, dotted: string, value: unknown): void {
  const keys = dotted.split('.');
  let node = target;
  for (const k of keys.slice(0, -1)) {
    if (!isPlain(node[k])) node[k] = {};
    node = node[k] as Plain;
  }
  node[keys[keys.length - 1]!] = value;
}

/** Keys whose string values are file paths, resolved against the folder they were given in. */
const PATH_KEYS = [
  'model.path',
  'model.labels',
  'model.cpu_fallback',
  'inference.library',
  'inference.cache',
  'mqtt.tls.ca',
  'mqtt.tls.cert',
  'mqtt.tls.key',
  'snapshot.dir',
];

/** A source spec that names a file or folder (not `rpicam`, not a URL) is a path too. */
const isPathSpec = (spec: string) => !/^rpicam(:\d+)?$/.test(spec) && !/^[a-z][a-z0-9+.-]*:\/\//i.test(spec);

function resolvePaths(layer: Plain, base: string): void {
  for (const dotted of PATH_KEYS) {
    const keys = dotted.split('.');
    let node: unknown = layer;
    for (const k of keys.slice(0, -1)) node = isPlain(node) ? node[k] : undefined;
    const last = keys[keys.length - 1]!;
    if (isPlain(node) && typeof node[last] === 'string' && node[last] !== '') node[last] = path.resolve(base, node[last] as string);
  }
  const source = layer.source;
  if (isPlain(source) && typeof source.spec === 'string' && source.spec !== '' && isPathSpec(source.spec)) source.spec = path.resolve(base, source.spec);
}

/** Accepts `source: rpicam` as shorthand for `source: {spec: rpicam}`; fills each GPIO rule's defaults. */
function normalizeShorthands(layer: Plain): void {
  if (typeof layer.source === 'string') layer.source = { spec: layer.source };
  const gpio = layer.gpio;
  if (isPlain(gpio) && Array.isArray(gpio.rules)) {
    gpio.rules = gpio.rules.map((r) => (isPlain(r) ? { ...GPIO_RULE_DEFAULTS, ...r } : r));
  }
}

interface FileLayer {
  data: Plain;
  /** Line (1-based) of the key at a key path in the file (or of its nearest parent), when known. */
  lineOf(pathKeys: PropertyKey[]): number | undefined;
}

function readConfigFile(file: string): FileLayer {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([unreadableFileError('config file', file, err).message]);
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        return `${pos ? `line ${pos.line} column ${pos.col}: ` : ''}${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`;
      }),
      file,
    );
  }
  const data: unknown = doc.toJS() ?? {};
  if (!isPlain(data)) {
    throw new ConfigError([`expected a mapping of keys (source, model, inference, ...) at the top level but found ${describeValue(data)}`], file);
  }
  return {
    data,
    lineOf(pathKeys) {
      for (let n = pathKeys.length; n > 0; n--) {
        const parent = n === 1 ? doc.contents : doc.getIn(pathKeys.slice(0, n - 1) as (string | number)[], true);
        const last = pathKeys[n - 1];
        if (isMap(parent)) {
          const pair = parent.items.find((p) => isScalar(p.key) && p.key.value === last);
          if (pair && isNode(pair.key) && pair.key.range) return lineCounter.linePos(pair.key.range[0]).line;
        } else if (isSeq(parent) && typeof last === 'number') {
          const item = parent.items[last];
          if (isNode(item) && item.range) return lineCounter.linePos(item.range[0]).line;
        }
      }
      return undefined;
    },
  };
}

function valueAt(root: unknown, keys: PropertyKey[]): unknown {
  let node = root;
  for (const k of keys) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<PropertyKey, unknown>)[k];
  }
  return node;
}

const keyName = (keys: PropertyKey[]) =>
  keys.reduce<string>((acc, k) => (typeof k === 'number' ? `${acc}[${k}]` : acc ? `${acc}.${String(k)}` : String(k)), '') || '(top level)';

function explainIssue(issue: z.core.$ZodIssue, merged: unknown, origin: (keys: PropertyKey[]) => string): string {
  const keys = issue.path;
  if (issue.code === 'unrecognized_keys') {
    const known = Object.keys(
      (valueAt(
        DEFAULTS,
        keys.filter((k) => typeof k === 'string'),
      ) as Plain) ?? {},
    );
    return issue.keys
      .map((k) => `${keyName([...keys, k])}: unknown key${origin([...keys, k])}${known.length ? ` (expected one of: ${known.join(', ')})` : ''}`)
      .join('\n');
  }
  const received = valueAt(merged, keys);
  let message = issue.message.replace(/^Invalid input: /, '').replace(/^Invalid option: /, '');
  if (issue.code === 'too_big') message = `expected at most ${String(issue.maximum)}`;
  if (issue.code === 'too_big' && !issue.inclusive) message = `expected less than ${String(issue.maximum)}`;
  if (issue.code === 'too_small') {
    if (issue.origin === 'string' && Number(issue.minimum) === 1) message = 'expected a non-empty string';
    else if (issue.origin === 'array' && Number(issue.minimum) === 1) message = 'expected at least one item';
    else {
      const unit = issue.origin === 'string' ? ' characters' : issue.origin === 'array' ? ' items' : '';
      message = `expected ${issue.inclusive ? 'at least' : 'more than'} ${String(issue.minimum)}${unit}`;
    }
  }
  if (issue.code === 'invalid_type') {
    const names: Record<string, string> = {
      array: 'a list',
      object: 'a mapping',
      int: 'a whole number',
      number: 'a number',
      string: 'a string',
      boolean: 'true or false',
    };
    message = `expected ${names[issue.expected] ?? `a ${issue.expected}`}`;
  }
  return `${keyName(keys)}: ${message}, but received ${describeValue(received)}${origin(keys)}`;
}

/** What `loadConfig` needs; all optional. */
export interface LoadOptions {
  /** Path of a YAML or JSON config file. */
  file?: string;
  overrides?: ConfigOverrides;
  env?: NodeJS.ProcessEnv;
  /** Folder that relative flag and environment paths resolve against (default: process.cwd()). */
  cwd?: string;
}

/**
 * Builds the configuration: defaults, then the file, then environment
 * variables ({@link ENV_VARS}), then command-line overrides; validates it
 * against {@link configSchema}.
 * @throws ConfigError listing every problem, each naming its key, where the
 *   value came from (file line, environment variable or flag), what was
 *   expected and what was received.
 */
export function loadConfig(options: LoadOptions = {}): Config {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();

  const defaults = structuredClone(DEFAULTS) as unknown as Plain;
  resolvePaths(defaults, packageRoot);

  let fileLayer: FileLayer | undefined;
  const file = options.file ? path.resolve(cwd, options.file) : undefined;
  if (file) {
    fileLayer = readConfigFile(file);
    normalizeShorthands(fileLayer.data);
    resolvePaths(fileLayer.data, path.dirname(file));
  }

  const envLayer: Plain = {};
  const envOrigin = new Map<string, string>();
  for (const [name, dotted] of Object.entries(ENV_VARS)) {
    const value = env[name];
    if (value !== undefined && value !== '') {
      setPath(envLayer, dotted, value);
      envOrigin.set(dotted, name);
    }
  }
  resolvePaths(envLayer, cwd);

  const o = options.overrides ?? {};
  const flagLayer: Plain = {};
  const flagOrigin = new Map<string, string>();
  const flag = (dotted: string, value: unknown, name: string) => {
    if (value === undefined) return;
    setPath(flagLayer, dotted, value);
    flagOrigin.set(dotted, name);
  };
  flag('source.spec', o.source, '--source');
  flag('model.path', o.model, '--model');
  flag('model.labels', o.labels, '--labels');
  flag('model.cpu_fallback', o.cpuModel, '--cpu-model');
  flag('inference.delegate', o.delegate, '--delegate');
  flag('inference.engine', o.engine, '--engine');
  flag('inference.top_k', o.topK, '--top-k');
  flag('inference.threshold', o.threshold, '--threshold');
  flag('inference.threads', o.threads, '--threads');
  flag('mqtt.url', o.mqttUrl, '--mqtt-url');
  flag('mqtt.base_topic', o.baseTopic, '--base-topic');
  flag('log.level', o.logLevel, '--log-level');
  if (o.gpioRules)
    flag(
      'gpio.rules',
      o.gpioRules.map((r) => ({ ...GPIO_RULE_DEFAULTS, ...r })),
      '--gpio',
    );
  resolvePaths(flagLayer, cwd);

  const merged = [fileLayer?.data, envLayer, flagLayer].reduce<unknown>((acc, layer) => merge(acc, layer), defaults);

  const origin = (keys: PropertyKey[]): string => {
    const dotted = keys.filter((k) => typeof k === 'string').join('.');
    for (const [k, name] of flagOrigin) if (dotted === k || dotted.startsWith(`${k}.`)) return ` (from ${name})`;
    for (const [k, name] of envOrigin) if (dotted === k) return ` (from ${name})`;
    const line = fileLayer?.lineOf(keys);
    return line ? ` (line ${line})` : '';
  };

  const result = configSchema.safeParse(merged);
  if (!result.success) {
    const problems = result.error.issues.flatMap((issue) => explainIssue(issue, merged, origin).split('\n'));
    throw new ConfigError(problems, file);
  }
  return result.data;
}

/**
 * Validates a configuration made in memory — the running one with live
 * settings applied (`<base>/set`) — with the schema and the messages of
 * {@link loadConfig} (without file lines: the values did not come from a
 * file). Returns the validated configuration.
 * @throws ConfigError listing every problem, each naming its key.
 */
export function validateConfig(candidate: unknown): Config {
  const result = configSchema.safeParse(candidate);
  if (!result.success) throw new ConfigError(result.error.issues.flatMap((issue) => explainIssue(issue, candidate, () => '').split('\n')));
  return result.data;
}
