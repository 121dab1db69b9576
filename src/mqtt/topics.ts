import { createHash } from 'node:crypto';
import { type ClassScore, MAX_BCM_PIN, type SystemStats, type Timings } from '../core/types.js';

/**
 * The MQTT contract of edge-classifier: topic names under one base topic and
 * the payload published on each. Subscribers (Home Assistant, Node-RED,
 * dashboards) build on these; keep them stable. Each payload has a JSON
 * Schema in the repository's `schemas/` folder.
 *
 * | topic                          | payload                         | retained | QoS               |
 * |--------------------------------|---------------------------------|----------|-------------------|
 * | `<base>/availability`          | `online` / `offline`            | yes      | 1                 |
 * | `<base>/prediction`            | `PredictionPayload` JSON        | no       | `mqtt.qos`        |
 * | `<base>/state`                 | `StatePayload` JSON             | yes      | ≥ 1               |
 * | `<base>/gpio/<pin>`            | `1` / `0` (logical, BCM pin)    | yes      | ≥ 1               |
 * | `<base>/stats`                 | `StatsPayload` JSON             | yes      | ≥ 1               |
 * | `<base>/problems`              | `ProblemsPayload` JSON          | yes      | ≥ 1               |
 * | `<base>/snapshot`              | JPEG bytes                      | yes      | ≥ 1               |
 * | `<base>/settings`              | `SettingsPayload` JSON          | yes      | ≥ 1               |
 * | `<base>/response/<command>`    | `ResponsePayload` JSON          | no       | 1                 |
 *
 * Commands go the other way: `<base>/set`, `<base>/set/<key>` and
 * `<base>/request/<command>` (see `commands.ts`). "≥ 1" is `mqtt.qos` but
 * at least 1: a retained value must arrive.
 *
 * JSON payload keys are snake_case. Times are ISO 8601 UTC with milliseconds
 * (`Date.prototype.toISOString`).
 */

/** Topic kinds and whether messages on them are retained (fixed by the contract). */
export const RETAIN = {
  availability: true,
  prediction: false,
  state: true,
  gpio: true,
  stats: true,
  problems: true,
  snapshot: true,
  settings: true,
  response: false,
} as const;

/** Payload of `<base>/availability`; `offline` is also the last will. */
export type Availability = 'online' | 'offline';

/** Payload of `<base>/gpio/<pin>`: the logical output level, `1` = rule active. */
type GpioPayload = '1' | '0';

/**
 * JSON payload of `<base>/prediction`, one per classified frame (subject to
 * the rate limit), e.g.
 * `{"time":"2026-11-29T20:22:24.123Z","seq":42,"source":"rpicam 640x480@10",
 * "model":"mobilenet_v2_1.0_224_quant","classes":[{"index":286,"label":"Egyptian cat","score":0.754}],
 * "timings":{"preprocess_ms":4.1,"inference_ms":44.87,"postprocess_ms":0.05,"total_ms":49.6},"dropped":3}`.
 */
export interface PredictionPayload {
  /** When the frame was classified, ISO 8601 UTC. */
  readonly time: string;
  /** Frame sequence number from the source (starts at 1). */
  readonly seq: number;
  /** Source description, e.g. `rpicam 640x480@10`. */
  readonly source: string;
  /** Model name (metadata name or file name without `.tflite`). */
  readonly model: string;
  /** Top-k classes above the score threshold, highest first; scores rounded to 4 decimals. */
  readonly classes: ClassScore[];
  /** Stage timings in ms, rounded to 2 decimals. */
  readonly timings: Timings;
  /** Frames the source delivered that were not classified (latest frame wins), since start. */
  readonly dropped: number;
}

/**
 * JSON payload of `<base>/state` (retained), published when the smoothed
 * state changes (see `StateSmoother`), e.g.
 * `{"status":"detected","label":"Egyptian cat","index":286,"score":0.754,"since":"2026-11-29T20:22:24.123Z",
 * "time":"2026-11-29T20:22:24.123Z","classes":[{"index":286,"label":"Egyptian cat","score":0.754}]}`.
 * `label`, `index` and `score` are null unless `status` is `detected`.
 */
export interface StatePayload {
  /** `detected`, `none` (no class passes its threshold) or `unknown` (no recent frame). */
  readonly status: 'detected' | 'none' | 'unknown';
  readonly label: string | null;
  readonly index: number | null;
  /** Score of `label` in the frame that made it the state. */
  readonly score: number | null;
  /** When the state took this value, ISO 8601 UTC. */
  readonly since: string;
  /** When this message was made, ISO 8601 UTC. */
  readonly time: string;
  /** Top-k of the frame that made the state (scores rounded to 4 decimals); empty for `unknown`. */
  readonly classes: ClassScore[];
}

/** One entry of `<base>/problems` (see `core/problems.ts`). */
interface ProblemPayload {
  readonly id: string;
  readonly message: string;
  readonly hint: string;
  readonly severity: 'warning' | 'error';
  readonly since: string;
}

/** JSON payload of `<base>/problems` (retained): the current problems, oldest first; empty when all is well. */
export interface ProblemsPayload {
  readonly time: string;
  readonly problems: readonly ProblemPayload[];
}

/** p50/p95 of a duration in ms; null before the first sample. */
interface Percentiles {
  readonly p50: number | null;
  readonly p95: number | null;
}

/** JSON payload of `<base>/stats` (retained, every `mqtt.stats_interval_s`); see `schemas/stats.schema.json`. */
export interface StatsPayload {
  readonly time: string;
  readonly uptime_s: number;
  readonly model: string;
  readonly engine: string;
  readonly delegate: 'cpu' | 'edgetpu';
  readonly threads: number;
  readonly source: string;
  readonly paused: boolean;
  readonly frames: { readonly in: number; readonly classified: number; readonly dropped: number; readonly bad: number; readonly failed: number };
  readonly bad_frames: Readonly<Record<string, number>>;
  readonly fps: { readonly in: number; readonly classified: number };
  readonly inference_ms: Percentiles;
  readonly preprocess_ms: Percentiles;
  readonly mqtt: {
    readonly protocol: '3.1.1' | '5';
    readonly reconnects: number;
    readonly published: number;
    readonly dropped_offline: number;
    readonly dropped_rate_limited: number;
    readonly dropped_backpressure: number;
    readonly commands_accepted: number;
    readonly commands_refused: number;
    readonly commands_rate_limited: number;
  };
  readonly system: SystemStats;
  /** Who publishes (host, boot, pid, start), so that a second daemon on this base topic can name the first. */
  readonly instance: { readonly hostname: string; readonly boot_id: string; readonly pid: number; readonly started: string };
}

/** JSON payload of `<base>/settings` (retained): the live settings in force; see `schemas/settings.schema.json`. */
export interface SettingsPayload {
  readonly time: string;
  readonly paused: boolean;
  readonly threshold: number;
  readonly top_k: number;
  readonly prediction_interval_ms: number;
  readonly state: {
    readonly min_score: number;
    readonly hysteresis: number;
    readonly min_frames: number;
    readonly window_frames: number;
    readonly min_dwell_ms: number;
    readonly expire_after_s: number;
    readonly labels: Readonly<Record<string, number>>;
  };
  readonly gpio: Readonly<Record<string, { readonly min_score: number; readonly hold_ms: number }>>;
}

/** JSON payload of a command's response (`<base>/response/<command>` or the MQTT 5 response topic). */
export interface ResponsePayload {
  readonly command: string;
  readonly id?: string | number;
  readonly ok: boolean;
  readonly error?: string;
  readonly result?: unknown;
  readonly time: string;
}

/** Payload type of each topic kind. */
export interface TopicPayloads {
  availability: Availability;
  prediction: PredictionPayload;
  state: StatePayload;
  gpio: GpioPayload;
  stats: StatsPayload;
  problems: ProblemsPayload;
  settings: SettingsPayload;
  response: ResponsePayload;
}

/** Prefix of the default base topic; the device id follows: `edge-classifier/<device id>`. */
const BASE_TOPIC_PREFIX = 'edge-classifier';

/** MQTT limit on a topic name: 65535 bytes of UTF-8 (MQTT 3.1.1 §1.5.3). */
const MAX_TOPIC_BYTES = 65535;

/** Longest suffix this module appends to a base topic (`/availability`). */
const LONGEST_SUFFIX = '/availability';

/** Default base topic for a device id: `edge-classifier/<device id>`. */
export function defaultBaseTopic(deviceId: string): string {
  return `${BASE_TOPIC_PREFIX}/${deviceId}`;
}

/**
 * Default MQTT client id: `edge-classifier-<device id>` (28 characters for a
 * 12-hex id) with the default base topic; with another base topic
 * `edge-classifier-<device id>-<first 6 hex of sha256(base topic)>`, so two
 * daemons on one device (two cameras, two base topics) do not take each
 * other's session on the broker.
 */
export function defaultClientId(deviceId: string, baseTopic: string = defaultBaseTopic(deviceId)): string {
  const id = `${BASE_TOPIC_PREFIX}-${deviceId}`;
  if (baseTopic === defaultBaseTopic(deviceId)) return id;
  return `${id}-${createHash('sha256').update(baseTopic).digest('hex').slice(0, 6)}`;
}

/**
 * Checks that `topic` can be published to: non-empty, no `+` or `#`
 * wildcards, no NUL character, at most 65535 bytes of UTF-8.
 * Throws an error naming the topic otherwise.
 */
export function assertPublishTopic(topic: string): void {
  if (topic.length === 0) throw new Error('MQTT topic is empty: expected a topic name to publish to');
  if (topic.includes('+') || topic.includes('#')) {
    throw new Error(`MQTT topic '${topic}' contains a wildcard ('+' or '#'): wildcards are only allowed in subscriptions`);
  }
  if (topic.includes('\u0000')) throw new Error(`MQTT topic ${JSON.stringify(topic)} contains a NUL character`);
  const bytes = Buffer.byteLength(topic, 'utf8');
  if (bytes > MAX_TOPIC_BYTES) {
    throw new Error(`MQTT topic '${topic.slice(0, 40)}…' is ${bytes} bytes of UTF-8: expected at most ${MAX_TOPIC_BYTES}`);
  }
}

/**
 * Validates a base topic (config key `mqtt.base_topic`, flag `--base-topic`):
 * non-empty, no `+`/`#` wildcards, no leading or trailing `/`, not starting
 * with `$` (reserved for broker topics such as `$SYS`), no NUL, and short
 * enough that `<base>/availability` fits in 65535 bytes of UTF-8.
 * Returns the base topic unchanged; throws an error naming it otherwise.
 */
export function validateBaseTopic(base: string): string {
  const why = baseTopicProblem(base);
  if (why !== undefined) throw new Error(`base topic ${JSON.stringify(base.length > 80 ? `${base.slice(0, 80)}…` : base)} ${why}`);
  return base;
}

function baseTopicProblem(base: string): string | undefined {
  if (base.length === 0) return 'is empty: expected e.g. edge-classifier/front-door';
  if (base.includes('+') || base.includes('#')) return "contains a wildcard ('+' or '#'): expected a plain topic such as edge-classifier/front-door";
  if (base.startsWith('/') || base.endsWith('/')) return "starts or ends with '/': expected e.g. edge-classifier/front-door";
  if (base.startsWith('$')) return "starts with '$', which is reserved for broker topics such as $SYS";
  if (base.includes('\u0000')) return 'contains a NUL character';
  const bytes = Buffer.byteLength(base, 'utf8');
  const max = MAX_TOPIC_BYTES - LONGEST_SUFFIX.length;
  if (bytes > max) return `is ${bytes} bytes of UTF-8: expected at most ${max} so that '${LONGEST_SUFFIX}' fits in an MQTT topic`;
  return undefined;
}

/**
 * Topic names under one validated base topic. Construction throws when the
 * base topic is invalid (see `validateBaseTopic`).
 */
export class Topics {
  readonly base: string;
  /** `<base>/availability` */
  readonly availability: string;
  /** `<base>/prediction` */
  readonly prediction: string;
  /** `<base>/state` */
  readonly state: string;
  /** `<base>/stats` */
  readonly stats: string;
  /** `<base>/problems` */
  readonly problems: string;
  /** `<base>/snapshot` */
  readonly snapshot: string;
  /** `<base>/settings` */
  readonly settings: string;

  constructor(base: string) {
    this.base = validateBaseTopic(base);
    this.availability = `${base}/availability`;
    this.prediction = `${base}/prediction`;
    this.state = `${base}/state`;
    this.stats = `${base}/stats`;
    this.problems = `${base}/problems`;
    this.snapshot = `${base}/snapshot`;
    this.settings = `${base}/settings`;
  }

  /** `<base>/set/<key>` (`key` as in `threshold`, `state/min_frames`). */
  set(key: string): string {
    return `${this.base}/set/${key}`;
  }

  /** `<base>/request/<command>`. */
  request(command: string): string {
    return `${this.base}/request/${command}`;
  }

  /**
   * `<base>/gpio/<pin>` for a BCM pin number 0..27.
   * Throws when `pin` is not an integer in that range.
   */
  gpio(pin: number): string {
    if (!Number.isInteger(pin) || pin < 0 || pin > MAX_BCM_PIN) {
      throw new Error(`GPIO pin ${pin} for topic '${this.base}/gpio/…': expected a BCM pin number 0..${MAX_BCM_PIN}`);
    }
    return `${this.base}/gpio/${pin}`;
  }
}

/** Rounds to `decimals` places, for payloads (e.g. 0.75390625 → 0.7539 with 4). */
export function roundTo(value: number, decimals: number): number {
  const f = 10 ** decimals;
  return Math.round(value * f) / f;
}

/** What the daemon hands to `MqttPublisher.publishPrediction` for one classified frame. */
export interface Prediction {
  /** When the frame was classified; default: now. */
  readonly time?: Date;
  readonly seq: number;
  readonly source: string;
  readonly model: string;
  /** Top-k classes above the score threshold, highest first, scores as probabilities in [0,1]. */
  readonly classes: readonly ClassScore[];
  readonly timings: Timings;
  /** Frames dropped by the source so far. */
  readonly dropped: number;
}

/**
 * Builds the `<base>/prediction` payload: scores rounded to 4 decimals,
 * timings to 2 decimals (ms), `time` as ISO 8601 UTC.
 */
export function predictionPayload(p: Prediction): PredictionPayload {
  const classes = roundedClasses(p.classes);
  const t = p.timings;
  return {
    time: (p.time ?? new Date()).toISOString(),
    seq: p.seq,
    source: p.source,
    model: p.model,
    classes,
    timings: {
      preprocess_ms: roundTo(t.preprocess_ms, 2),
      inference_ms: roundTo(t.inference_ms, 2),
      postprocess_ms: roundTo(t.postprocess_ms, 2),
      total_ms: roundTo(t.total_ms, 2),
    },
    dropped: p.dropped,
  };
}

/** Serializes a payload for its topic kind: the bare string for `availability` and `gpio`, JSON otherwise. */
export function encodePayload<K extends keyof TopicPayloads>(kind: K, payload: TopicPayloads[K]): string {
  return kind === 'availability' || kind === 'gpio' ? (payload as string) : JSON.stringify(payload);
}

/** Top-k classes for a payload: scores rounded to 4 decimals. */
export function roundedClasses(classes: readonly ClassScore[]): ClassScore[] {
  return classes.map((c) => ({ index: c.index, label: c.label, score: roundTo(c.score, 4) }));
}
