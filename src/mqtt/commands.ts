import { assertPublishTopic } from './topics.js';

/**
 * The command side of the MQTT contract: which topics the daemon
 * subscribes to, and how a message on one becomes a typed command or a
 * refusal. Transport only: values are checked by the service against the
 * same schema as the config file (see `LiveSettings`); here the topic, the
 * JSON, the envelope and the top-level keys are.
 *
 * Topics (all under the base topic, subscribed exactly: no wildcard
 * subscription is ever made, and nothing outside the base):
 * - `<base>/set` — several settings at once: `{"threshold":0.4,"state":{"min_frames":3}}`;
 * - `<base>/set/<key>` — one setting, the body its JSON value (`0.4`) or
 *   `{"value":0.4,"persist":true}`; keys: {@link SETTING_TOPIC_KEYS},
 *   `state/<key>` ({@link STATE_KEYS}) and `gpio/<pin>/<key>` ({@link GPIO_KEYS})
 *   for each configured GPIO rule;
 * - `<base>/request/<command>` — {@link REQUESTS}, body `{}` or empty.
 * Every body may carry `persist` (set only), `by` (who, for the log) and
 * `id` (echoed in the response).
 */

/** Commands of `<base>/request/<command>`. */
const REQUESTS = ['snapshot', 'reload', 'classify_now', 'get_config'] as const;
export type RequestName = (typeof REQUESTS)[number];

/** Top-level live settings (`<base>/set/<key>` and keys of a `<base>/set` body). */
const SETTING_TOPIC_KEYS = ['threshold', 'top_k', 'prediction_interval_ms', 'paused'] as const;
/** Keys of the `state` section that can be set live (`<base>/set/state/<key>`). */
const STATE_KEYS = ['min_score', 'hysteresis', 'min_frames', 'window_frames', 'min_dwell_ms', 'expire_after_s', 'labels'] as const;
/** Keys of a GPIO rule that can be set live (`<base>/set/gpio/<pin>/<key>`). */
const GPIO_KEYS = ['min_score', 'hold_ms'] as const;

/** Keys of a `<base>/set` body. */
const SET_BODY_KEYS = [...SETTING_TOPIC_KEYS, 'state', 'gpio'];
/** Envelope keys allowed in every body. */
const META_KEYS = ['persist', 'by', 'id'];

/** A partial of the settings payload: what one set command changes. Keys as in the config file. */
export interface SettingsPatch {
  threshold?: unknown;
  top_k?: unknown;
  prediction_interval_ms?: unknown;
  paused?: unknown;
  state?: Record<string, unknown>;
  gpio?: Record<string, Record<string, unknown>>;
}

/** Where a response goes: the MQTT 5 response topic with its correlation data, or `<base>/response/<command>`. */
export interface ReplyTo {
  readonly topic: string;
  readonly correlationData?: Buffer;
}

/** Who and what for one accepted command. */
interface CommandBase {
  /** `set`, `set/<key>` or the request name: the `<command>` of `<base>/response/<command>`. */
  readonly name: string;
  readonly reply: ReplyTo;
  /** The body's `id`, echoed in the response. */
  readonly id?: string | number;
  /** Who sent it: MQTT 5 user property `by` or `client_id`, else the body's `by`; undefined when unknown. */
  readonly by?: string;
}

interface SetCommand extends CommandBase {
  readonly kind: 'set';
  readonly patch: SettingsPatch;
  /** Write the change into the config file. */
  readonly persist: boolean;
}

interface RequestCommand extends CommandBase {
  readonly kind: 'request';
  readonly command: RequestName;
}

/** A message that is not a usable command; `reply` undefined when nobody should get an answer (a retained message). */
interface Refusal {
  readonly kind: 'refused';
  readonly name: string;
  readonly error: string;
  readonly reply?: ReplyTo;
  readonly id?: string | number;
  readonly by?: string;
}

export type ParsedCommand = SetCommand | RequestCommand | Refusal;

/** One received message, as mqtt.js gives it (v5 properties when the connection speaks MQTT 5). */
export interface IncomingMessage {
  readonly topic: string;
  readonly payload: Buffer;
  readonly retain: boolean;
  readonly responseTopic?: string;
  readonly correlationData?: Buffer;
  readonly userProperties?: Readonly<Record<string, string | string[]>>;
}

/**
 * The exact topics to subscribe for commands: `<base>/set`, one per
 * settable key (GPIO keys for `gpioPins` only) and one per request in
 * `requests`.
 */
export function commandTopics(base: string, gpioPins: readonly number[], requests: readonly string[] = REQUESTS): string[] {
  const topics = [`${base}/set`];
  for (const k of SETTING_TOPIC_KEYS) topics.push(`${base}/set/${k}`);
  for (const k of STATE_KEYS) topics.push(`${base}/set/state/${k}`);
  for (const pin of gpioPins) for (const k of GPIO_KEYS) topics.push(`${base}/set/gpio/${pin}/${k}`);
  for (const r of requests) topics.push(`${base}/request/${r}`);
  return topics;
}

type Plain = Record<string, unknown>;
const isPlain = (v: unknown): v is Plain => typeof v === 'object' && v !== null && !Array.isArray(v);

const show = (v: unknown): string => {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
};

/** The sender named by MQTT 5 user properties (`by`, else `client_id`). */
function byFromProperties(props: IncomingMessage['userProperties']): string | undefined {
  const pick = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
  return pick(props?.by) ?? pick(props?.client_id);
}

/**
 * Turns one message on a command topic into a command or a refusal:
 * - a retained message is refused without reply (commands must not be
 *   retained: one left on the broker would replay on every connect);
 * - the body must be JSON (empty = `{}` for requests); the envelope
 *   (`persist`, `by`, `id`) is checked; unknown top-level keys are refused
 *   naming the expected ones;
 * - the reply goes to the MQTT 5 response topic when one is given and can
 *   be published to, else to `<base>/response/<name>`.
 * `requests`: the request names this daemon serves.
 */
export function parseCommand(base: string, msg: IncomingMessage, requests: readonly string[] = REQUESTS): ParsedCommand {
  const rest = msg.topic.startsWith(`${base}/`) ? msg.topic.slice(base.length + 1) : undefined;
  const name = rest === undefined ? msg.topic : rest.startsWith('request/') ? rest.slice('request/'.length) : rest;
  let reply: ReplyTo = { topic: `${base}/response/${name}` };
  if (msg.responseTopic !== undefined) {
    try {
      assertPublishTopic(msg.responseTopic);
      reply = msg.correlationData !== undefined ? { topic: msg.responseTopic, correlationData: msg.correlationData } : { topic: msg.responseTopic };
    } catch {
      // A response topic we cannot publish to (wildcards): answer on the default topic instead.
    }
  }
  let by = byFromProperties(msg.userProperties);
  const refuse = (error: string, id?: string | number): Refusal => ({
    kind: 'refused',
    name,
    error,
    reply,
    ...(id !== undefined ? { id } : {}),
    ...(by !== undefined ? { by } : {}),
  });

  if (rest === undefined) return { kind: 'refused', name, error: `topic '${msg.topic}' is not under the base topic '${base}'` };
  if (msg.retain) {
    return {
      kind: 'refused',
      name,
      error: `retained message on ${msg.topic} ignored: commands must not be retained (clear it with an empty retained message)`,
    };
  }

  const text = msg.payload.toString('utf8').trim();
  let body: unknown;
  if (text === '') body = rest.startsWith('request/') ? {} : undefined;
  else {
    try {
      body = JSON.parse(text) as unknown;
    } catch (err) {
      return refuse(
        `${msg.topic}: the payload is not JSON (${(err as Error).message}): expected e.g. ${rest.startsWith('request/') ? '{}' : rest === 'set' ? '{"threshold":0.4}' : '0.4 or {"value":0.4}'}`,
      );
    }
  }
  if (body === undefined) return refuse(`${msg.topic}: the payload is empty: expected a JSON value`);

  // The envelope: `by`, `id`, `persist`.
  let id: string | number | undefined;
  let persist = false;
  const envelope = (o: Plain): string | undefined => {
    if (o.id !== undefined) {
      if (typeof o.id !== 'string' && typeof o.id !== 'number') return `id: expected a string or a number, but received ${show(o.id)}`;
      id = o.id;
    }
    if (o.by !== undefined) {
      if (typeof o.by !== 'string' || o.by.length > 128) return `by: expected a string of at most 128 characters, but received ${show(o.by)}`;
      by ??= o.by;
    }
    if (o.persist !== undefined) {
      if (typeof o.persist !== 'boolean') return `persist: expected true or false, but received ${show(o.persist)}`;
      persist = o.persist;
    }
    return undefined;
  };

  if (rest.startsWith('request/')) {
    const command = rest.slice('request/'.length);
    if (!requests.includes(command)) return refuse(`unknown command '${command}': expected one of ${requests.join(', ')}`);
    if (!isPlain(body)) return refuse(`${msg.topic}: expected a JSON object such as {} or {"id":"1"}, but received ${show(body)}`);
    const bad = envelope(body);
    if (bad !== undefined) return refuse(`${msg.topic}: ${bad}`, id);
    const unknown = Object.keys(body).filter((k) => k !== 'id' && k !== 'by');
    if (unknown.length > 0) return refuse(`${msg.topic}: unknown key ${unknown.map((k) => `'${k}'`).join(', ')} (expected: id, by)`, id);
    return { kind: 'request', name: command, command: command as RequestName, reply, ...(id !== undefined ? { id } : {}), ...(by !== undefined ? { by } : {}) };
  }

  if (rest === 'set') {
    if (!isPlain(body)) return refuse(`${msg.topic}: expected a JSON object of settings such as {"threshold":0.4}, but received ${show(body)}`);
    const bad = envelope(body);
    if (bad !== undefined) return refuse(`${msg.topic}: ${bad}`, id);
    const patch: Plain = {};
    for (const [k, v] of Object.entries(body)) {
      if (META_KEYS.includes(k)) continue;
      if (!SET_BODY_KEYS.includes(k)) return refuse(`${k}: unknown key (expected one of: ${SET_BODY_KEYS.join(', ')})`, id);
      if ((k === 'state' || k === 'gpio') && !isPlain(v)) return refuse(`${k}: expected a mapping, but received ${show(v)}`, id);
      if (k === 'gpio') {
        for (const [pin, rule] of Object.entries(v as Plain)) {
          if (!isPlain(rule)) return refuse(`gpio.${pin}: expected a mapping such as {"min_score":0.6}, but received ${show(rule)}`, id);
        }
      }
      patch[k] = v;
    }
    if (Object.keys(patch).length === 0) return refuse(`${msg.topic}: no setting given (expected one of: ${SET_BODY_KEYS.join(', ')})`, id);
    return { kind: 'set', name, patch: patch as SettingsPatch, persist, reply, ...(id !== undefined ? { id } : {}), ...(by !== undefined ? { by } : {}) };
  }

  // set/<key>: a bare value, or {"value": …} with the envelope.
  const path = rest.split('/').slice(1);
  let value: unknown = body;
  if (isPlain(body) && 'value' in body && Object.keys(body).every((k) => k === 'value' || META_KEYS.includes(k))) {
    const bad = envelope(body);
    if (bad !== undefined) return refuse(`${msg.topic}: ${bad}`, id);
    value = body.value;
  }
  let patch: SettingsPatch;
  if (path.length === 1 && (SETTING_TOPIC_KEYS as readonly string[]).includes(path[0]!)) patch = { [path[0]!]: value };
  else if (path.length === 2 && path[0] === 'state' && (STATE_KEYS as readonly string[]).includes(path[1]!)) patch = { state: { [path[1]!]: value } };
  else if (path.length === 3 && path[0] === 'gpio' && /^\d+$/.test(path[1]!) && (GPIO_KEYS as readonly string[]).includes(path[2]!)) {
    patch = { gpio: { [path[1]!]: { [path[2]!]: value } } };
  } else return refuse(`unknown setting '${path.join('/')}'`, id);
  return { kind: 'set', name, patch, persist, reply, ...(id !== undefined ? { id } : {}), ...(by !== undefined ? { by } : {}) };
}

/**
 * Token bucket for commands: `ratePerS` tokens per second, at most `burst`
 * in the bucket. `take()` spends one and returns false when the bucket is
 * empty (the command is refused and counted).
 */
export class RateLimiter {
  private tokens: number;
  private last: number | undefined;

  /** Throws when `ratePerS` or `burst` is not positive. */
  constructor(
    private readonly ratePerS: number,
    private readonly burst: number,
  ) {
    if (!(ratePerS > 0) || !(burst >= 1)) throw new Error(`command rate limit ${ratePerS}/s burst ${burst}: expected a rate above 0 and a burst of at least 1`);
    this.tokens = burst;
  }

  /** Spends one token at `nowMs` (a monotonic ms clock); false when none is left. */
  take(nowMs: number): boolean {
    if (this.last !== undefined) this.tokens = Math.min(this.burst, this.tokens + ((nowMs - this.last) / 1000) * this.ratePerS);
    this.last = nowMs;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
