import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { connect, type IClientOptions, type IClientPublishOptions, type MqttClient } from 'mqtt';
import { invalidParameterError, unreadableFileError } from '../core/errors.js';
import type { Lifecycle } from '../core/lifecycle.js';
import { type Logger, LogThrottle } from '../core/log.js';
import { PROBLEM, type ProblemReporter } from '../core/problems.js';
import { redactUrl } from '../core/redact.js';
import type { IncomingMessage, ReplyTo } from './commands.js';
import { type DescribedError, describeConnectionError, isProtocolRefusal, refusalCode } from './connection-errors.js';
import { type InstanceInfo, isLiveOtherInstance, probeBaseTopic } from './instance.js';
import {
  type Availability,
  assertPublishTopic,
  encodePayload,
  type Prediction,
  type ProblemsPayload,
  predictionPayload,
  RETAIN,
  type ResponsePayload,
  type SettingsPayload,
  type StatePayload,
  type StatsPayload,
  Topics,
} from './topics.js';

/** MQTT quality of service levels. */
type QoS = 0 | 1 | 2;

/** TLS material for `mqtts://` / `wss://` brokers; paths of PEM files, read by `start()`. */
interface MqttTlsOptions {
  /** CA certificate(s) to trust instead of the system store. */
  readonly ca?: string;
  /** Client certificate for mutual TLS. */
  readonly cert?: string;
  /** Private key of the client certificate. */
  readonly key?: string;
  /** Verify the broker's certificate (default true). Turn off only for testing. */
  readonly rejectUnauthorized?: boolean;
}

/**
 * Options of `MqttPublisher`; config keys `mqtt.*` map onto them (in
 * `config/options.ts`, where the schema's bounds hold). Durations in ms
 * except `keepalive` (s).
 */
export interface MqttPublisherOptions {
  /** Broker URL: `mqtt://host:1883`, `mqtts://host:8883`, `ws://…`, `wss://…`. */
  readonly url: string;
  /** Client id, e.g. `edge-classifier-<device id>` (see `defaultClientId`). Must be unique per broker. */
  readonly clientId: string;
  readonly username?: string;
  readonly password?: string;
  /** Keepalive in seconds (PINGREQ every this long, also while publishing; the link counts as dead after 1.5×). */
  readonly keepalive: number;
  /** QoS of predictions; retained topics use it too but at least 1. Availability and the last will always use QoS 1. */
  readonly qos: QoS;
  readonly tls?: MqttTlsOptions;
  /** Base topic, validated (see `validateBaseTopic`). */
  readonly baseTopic: string;
  /** Drop predictions closer than this to the previous published one, in ms; 0 = every frame. */
  readonly predictionMinIntervalMs: number;
  /**
   * Wait between reconnect attempts in ms (mqtt.js `reconnectPeriod`), also
   * after the broker refused the connection (CONNACK error).
   */
  readonly reconnectPeriodMs: number;
  /** Time allowed for a connection attempt (CONNACK) in ms, and for `start()` when waiting. */
  readonly connectTimeoutMs: number;
  /** MQTT version: `5`, `3.1.1`, or `auto` (5, then 3.1.1 when the broker refuses 5). Default `auto`. */
  readonly protocol?: 'auto' | '5' | '3.1.1';
  /**
   * `true` (default): `start()` resolves on the first connection and rejects
   * after `connectTimeoutMs` (and stops trying). `false`: `start()` resolves
   * at once and the publisher keeps connecting in the background.
   */
  readonly waitForConnect?: boolean;
  /**
   * Most messages handed to mqtt.js and not yet confirmed (written for QoS 0,
   * acknowledged for QoS 1/2). Beyond it predictions are dropped (counted in
   * `droppedBackpressure`) and a retained topic's latest value waits until
   * acknowledgements make room (or the next connect).
   * This bounds mqtt.js's own stores when a dead connection is not yet
   * detected. Default 100.
   */
  readonly maxInFlight?: number;
  /** Time `stop()` waits for `offline` to be acknowledged and the connection to close, in ms. Default 2000. */
  readonly stopTimeoutMs?: number;
  /**
   * Publish `online` on connect, `offline` on stop and as the last will
   * (default true). False for one-off connections such as `--remove-discovery`.
   */
  readonly announce?: boolean;
  /** Exact topics to subscribe to (no wildcards); their messages go to `onMessage`. Default none. */
  readonly subscriptions?: readonly string[];
  /** Receives every message on `subscriptions` (MQTT 5 response topic, correlation data and user properties included). */
  readonly onMessage?: (msg: IncomingMessage) => void;
  /** Where connection problems are raised (`broker_unreachable`, `broker_refused`, `client_id_conflict`). */
  readonly problems?: ProblemReporter;
  /**
   * This daemon's identity. When given, `start()` first looks at the
   * retained `<base>/availability` and `<base>/stats` with a probe
   * connection, and refuses to start ({@link InstanceConflictError}) when
   * another daemon on this machine is publishing on the base topic now.
   */
  readonly instance?: InstanceInfo;
  /** Longest wait between reconnects while backing off from a client id conflict, in ms. Default 300000 (5 min). */
  readonly maxBackoffMs?: number;
  readonly log: Logger;
}

/** Counters of an `MqttPublisher`. */
export interface MqttPublisherStats {
  /** Connected to the broker now. */
  readonly connected: boolean;
  /** MQTT version of the current (or last) connection. */
  readonly protocol: '3.1.1' | '5';
  /** Messages confirmed (written for QoS 0, acknowledged for QoS 1/2), all topics. */
  readonly published: number;
  /** Predictions dropped because the broker was not connected (never queued: they are stale). */
  readonly droppedOffline: number;
  /** Predictions dropped by `predictionMinIntervalMs`. */
  readonly droppedRateLimited: number;
  /** Predictions dropped because `maxInFlight` messages were unconfirmed. */
  readonly droppedBackpressure: number;
  /** Unconfirmed messages thrown away when a connection was lost (never re-sent: they would arrive stale). */
  readonly discardedOnDisconnect: number;
  /** Successful connections after the first one. */
  readonly reconnects: number;
}

/** Another daemon on this machine publishes on the base topic: starting would make them take each other's session. */
export class InstanceConflictError extends Error {
  override readonly name = 'InstanceConflictError';
  /** A configuration that cannot work next to the other daemon: EX_CONFIG, which the unit does not restart on. */
  readonly exitCode = 78;
}

const URL_PROTOCOLS = new Set(['mqtt:', 'mqtts:', 'tcp:', 'tls:', 'ssl:', 'ws:', 'wss:']);
const TLS_PROTOCOLS = new Set(['mqtts:', 'tls:', 'ssl:', 'wss:']);

function checkUrl(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`MQTT broker URL '${url}' is not a URL: expected e.g. mqtt://broker.local:1883 or mqtts://broker.local:8883`);
  }
  if (!URL_PROTOCOLS.has(u.protocol)) {
    throw new Error(`MQTT broker URL '${redactUrl(url)}' has protocol '${u.protocol}': expected mqtt:, mqtts:, ws: or wss: (also tcp:, tls:, ssl:)`);
  }
  return u;
}

/** Connections that end within this long after being made count as short (ms); at least 2 × reconnectPeriodMs. */
const SHORT_CONNECTION_MS = 10_000;
/** Short connections in a row that make a client id conflict. */
const SHORT_CONNECTIONS_TO_WARN = 3;
/** …when all of them fall within this window (ms); at least 6 × reconnectPeriodMs. */
const SHORT_CONNECTIONS_WINDOW_MS = 60_000;
/** Most command responses kept while not connected (sent after `online`); older ones are dropped. */
const MAX_PENDING_RESPONSES = 20;
/** Least MQTT 5 message expiry of predictions, in s (see `publishPrediction`). */
const MIN_PREDICTION_EXPIRY_S = 2;

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw invalidParameterError(`MQTT option ${name}`, 'a positive number', value);
  return value;
}

async function readPem(key: string, path: string | undefined): Promise<Buffer | undefined> {
  if (path === undefined) return undefined;
  try {
    return await readFile(path);
  } catch (err) {
    throw new Error(`mqtt.tls.${key}: ${unreadableFileError('the PEM file', path, err).message}`);
  }
}

/** A retained message kept to be (re-)sent on every connect. */
interface RetainedMessage {
  readonly payload: string | Buffer;
  /** MQTT 5 properties (dropped on a 3.1.1 connection). */
  readonly properties?: IClientPublishOptions['properties'];
}

/**
 * The daemon's MQTT side, through mqtt.js v5: publishes predictions, the
 * retained topics (state, GPIO levels, stats, problems, settings, snapshot,
 * Home Assistant discovery) and command responses, receives commands on
 * exact topics, and owns availability.
 *
 * Availability and what a reconnect sends:
 * - last will `<base>/availability` = `offline`, retained, QoS 1;
 * - on every connect `online` first, then the latest value of every
 *   retained topic (discovery first) — a broker restarted without
 *   persistence has lost them, and values made while offline arrive this
 *   way — then the command responses that waited; nothing goes out
 *   before `online`, not even the problem list changed by the connection
 *   itself (`broker_unreachable` cleared), which follows with the others;
 * - nothing stale is ever sent after a reconnect: when a connection ends,
 *   every message mqtt.js still holds unacknowledged is thrown away
 *   (counted in `discardedOnDisconnect`) instead of being re-sent by
 *   mqtt.js after the next CONNACK, and keepalive pings go out every
 *   `keepalive` seconds even while predictions flow (`reschedulePings`
 *   off), so a broker that stops answering without closing the connection
 *   (`kill -STOP`) is noticed after 1.5 × keepalive, not never.
 *
 * Offline behaviour is bounded: predictions are dropped and counted (never
 * queued), each retained topic keeps only its latest payload, nothing is
 * handed to mqtt.js while disconnected, `queueQoSZero` is off, and at most
 * `maxInFlight` messages are unconfirmed at a time (a retained value set at
 * that bound is sent as soon as acknowledgements make room).
 *
 * Protocol: MQTT 5 unless told otherwise, falling back to 3.1.1 when the
 * broker refuses 5 (`protocol: auto`); over MQTT 5 predictions carry a
 * message expiry, snapshots a content type and user properties, responses
 * the request's correlation data.
 *
 * Failures are logged once per reason per outage at warn with a hint (a
 * refusal, an untrusted, expired or missing certificate, a TLS URL to a
 * plain port — see `describeConnectionError`), the repeats at debug, and
 * raised as problems (`broker_refused`, `broker_unreachable`) until the
 * next connection. When three connections in a row each end soon after
 * being made (another client with the same client id: brokers close the
 * older of two), the publisher backs off — the wait between reconnects
 * doubles up to `maxBackoffMs` — and raises `client_id_conflict` until a
 * connection lasts.
 *
 * Lifecycle (the one `Lifecycle`): the constructor validates the URL and
 * base topic and does no I/O; `start(signal)` reads the TLS files, probes
 * for another daemon when `instance` is given, and connects (an abort of
 * `signal` while it waits gives up connecting); `stop()` publishes
 * `offline` (retained) when connected, disconnects cleanly and is bounded
 * by `stopTimeoutMs`.
 */
export class MqttPublisher implements Lifecycle {
  readonly name = 'mqtt publisher';
  readonly topics: Topics;
  private readonly options: MqttPublisherOptions;
  private readonly log: Logger;
  private readonly url: string;
  private readonly tlsUrl: boolean;
  private readonly qos: QoS;
  private readonly retainedQos: QoS;
  private minIntervalMs: number;
  private readonly maxInFlight: number;
  private readonly connectTimeoutMs: number;
  private readonly stopTimeoutMs: number;
  private readonly announce: boolean;
  private client: MqttClient | undefined;
  private protocolVersion: 4 | 5;
  /** Latest payload of every retained topic except availability, in first-set order (discovery first). */
  private readonly retained = new Map<string, RetainedMessage>();
  private readonly pendingResponses: { reply: ReplyTo; payload: string }[] = [];
  private inFlight = 0;
  /** Retained topics whose latest value was not sent because `maxInFlight` messages were unconfirmed; sent as acks make room. */
  private readonly waiting = new Set<string>();
  /**
   * `online` and the retained topics have been handed to mqtt.js on this
   * connection. Until then nothing else is sent (it is kept or dropped as
   * when offline): mqtt.js reports `connected` before its `connect` event,
   * and problems cleared at connect must not go out before `online`.
   */
  private announced = false;
  private lastPredictionAt = Number.NEGATIVE_INFINITY;
  private everConnected = false;
  private subscribed = false;
  /** Whether this connection attempt's TLS handshake completed (a reset before it means a plain port). */
  private handshakeDone = false;
  /** Connection errors and refusal reasons logged at warn since the last connection. */
  private readonly outageLog = new LogThrottle();
  /** `performance.now()` when the current connection was made; undefined while not connected. */
  private connectedAt: number | undefined;
  /** Connect times (`performance.now()`) of the latest short connections in a row. */
  private shortConnections: number[] = [];
  private backoffMs = 0;
  private readonly clientIdWarning = new LogThrottle();
  private stopping: Promise<void> | undefined;
  private counters = { published: 0, droppedOffline: 0, droppedRateLimited: 0, droppedBackpressure: 0, discardedOnDisconnect: 0, reconnects: 0 };

  /** Throws when the URL, the client id, the base topic, a subscription, `maxInFlight` or `stopTimeoutMs` is invalid. */
  constructor(options: MqttPublisherOptions) {
    const u = checkUrl(options.url);
    if (options.clientId.length === 0) throw invalidParameterError('MQTT client id', 'e.g. edge-classifier-<device id>', '');
    this.topics = new Topics(options.baseTopic);
    for (const topic of options.subscriptions ?? []) assertPublishTopic(topic);
    this.url = redactUrl(options.url);
    this.tlsUrl = TLS_PROTOCOLS.has(u.protocol);
    this.qos = options.qos;
    this.retainedQos = options.qos === 0 ? 1 : options.qos;
    this.minIntervalMs = options.predictionMinIntervalMs;
    this.maxInFlight = positive('maxInFlight', options.maxInFlight ?? 100);
    this.connectTimeoutMs = options.connectTimeoutMs;
    this.stopTimeoutMs = positive('stopTimeoutMs', options.stopTimeoutMs ?? 2000);
    this.announce = options.announce ?? true;
    this.protocolVersion = options.protocol === '3.1.1' ? 4 : 5;
    this.options = options;
    this.log = options.log;
  }

  /** Connected to the broker now. */
  get connected(): boolean {
    return this.client?.connected === true;
  }

  /**
   * Reads the TLS files, probes for another daemon (with `instance`) and
   * connects. With `waitForConnect` (default) it resolves once the first
   * connection is up, or rejects after `connectTimeoutMs` with an error
   * naming the URL, the last connection error and a hint, and stops
   * connecting. Without it, it resolves at once and keeps retrying,
   * refusals included, until `stop()`.
   * @throws when a TLS file cannot be read (naming the key and file);
   *   {@link InstanceConflictError} when another daemon publishes on the base topic.
   */
  async start(signal?: AbortSignal): Promise<void> {
    if (this.client !== undefined || this.stopping !== undefined) return;
    const o = this.options;
    const [ca, cert, key] = await Promise.all([readPem('ca', o.tls?.ca), readPem('cert', o.tls?.cert), readPem('key', o.tls?.key)]);
    if (this.stopping !== undefined) return;
    const opts: IClientOptions = {
      clientId: o.clientId,
      keepalive: o.keepalive,
      reconnectPeriod: o.reconnectPeriodMs,
      connectTimeout: this.connectTimeoutMs,
      clean: true,
      protocolVersion: this.protocolVersion,
      queueQoSZero: false,
      // Ping every keepalive even while publishing: otherwise a silent broker is never noticed while frames flow.
      reschedulePings: false,
      // A broker restarted without persistence has forgotten the command subscriptions: mqtt.js subscribes again on reconnect.
      resubscribe: true,
      // mqtt.js v5 stops reconnecting after a CONNACK error unless told otherwise.
      reconnectOnConnackError: true,
    };
    if (this.announce) opts.will = { topic: this.topics.availability, payload: Buffer.from('offline'), qos: 1, retain: true };
    if (o.username !== undefined) opts.username = o.username;
    if (o.password !== undefined) opts.password = o.password;
    if (ca !== undefined) opts.ca = ca;
    if (cert !== undefined) opts.cert = cert;
    if (key !== undefined) opts.key = key;
    if (o.tls?.rejectUnauthorized !== undefined) opts.rejectUnauthorized = o.tls.rejectUnauthorized;

    if (o.instance !== undefined) {
      const found = await probeBaseTopic(o.url, { ...opts, protocolVersion: 4 }, this.topics.base, Math.min(1500, this.connectTimeoutMs));
      if (this.stopping !== undefined) return;
      if (found.availability === 'online' && found.instance !== undefined && isLiveOtherInstance(found.instance, o.instance)) {
        const other = found.instance;
        throw new InstanceConflictError(
          `another edge-classifier (pid ${other.pid} on ${other.hostname}, started ${other.started}) is publishing on base topic '${this.topics.base}' ` +
            `at ${this.url}: stop it, or give this one another base topic (--base-topic or mqtt.base_topic)`,
        );
      }
    }

    let lastError: DescribedError | undefined;
    const client = connect(o.url, opts);
    this.client = client;
    client.on('connect', () => this.onConnect());
    client.on('message', (topic, payload, packet) => this.onMessage(topic, payload, packet));
    client.on('error', (err) => {
      lastError = this.onError(err);
    });
    client.on('offline', () => {
      this.announced = false;
      this.discardUnconfirmed();
      if (this.everConnected && this.stopping === undefined) this.log.warn({ url: this.url }, 'MQTT broker disconnected: reconnecting');
    });
    client.on('close', () => this.onClose());
    // mqtt.js makes a new stream per connection attempt and writes CONNECT to it at once: note when its TLS handshake completes.
    const watched = new WeakSet<object>();
    client.on('packetsend', () => {
      const stream = client.stream;
      if (!this.tlsUrl || stream === undefined || watched.has(stream)) return;
      watched.add(stream);
      stream.once('secureConnect', () => {
        if (client.stream === stream) this.handshakeDone = true;
      });
    });

    if (o.waitForConnect === false) {
      this.log.info({ url: this.url, client_id: o.clientId }, 'connecting to MQTT broker');
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const giveUp = (): void => {
        client.removeListener('connect', onFirst);
        client.removeListener('end', onEnd);
        signal?.removeEventListener('abort', onAbort);
        client.end(true);
        this.client = undefined;
      };
      const onAbort = (): void => {
        clearTimeout(timer);
        giveUp();
        reject(signal?.reason);
      };
      const timer = setTimeout(() => {
        giveUp();
        const why = lastError !== undefined ? `: ${lastError.reason}` : '';
        const hint = lastError?.hint ? ` (${lastError.hint})` : '';
        reject(new Error(`cannot connect to MQTT broker ${this.url} within ${this.connectTimeoutMs} ms${why}${hint}`));
      }, this.connectTimeoutMs);
      const onFirst = (): void => {
        clearTimeout(timer);
        client.removeListener('end', onEnd);
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onEnd = (): void => {
        clearTimeout(timer);
        client.removeListener('connect', onFirst);
        signal?.removeEventListener('abort', onAbort);
        reject(new Error(`MQTT publisher stopped before connecting to ${this.url}`));
      };
      client.once('connect', onFirst);
      client.once('end', onEnd);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * One connection error: described, logged once per reason per outage at
   * warn (the repeats at debug), raised as a problem; a refusal of MQTT 5
   * by a 3.1.1 broker switches to 3.1.1 (`protocol: auto`). mqtt.js retries.
   */
  private onError(err: Error): DescribedError {
    const o = this.options;
    const d = describeConnectionError(
      err,
      {
        url: this.url,
        tls: this.tlsUrl,
        hasUsername: o.username !== undefined,
        hasClientCert: o.tls?.cert !== undefined,
        protocolVersion: this.protocolVersion,
        ...(o.tls?.ca !== undefined ? { caFile: o.tls.ca } : {}),
      },
      this.handshakeDone,
    );
    if (d.kind === 'protocol' && this.protocolVersion === 5 && (o.protocol ?? 'auto') === 'auto' && isProtocolRefusal(refusalCode(err))) {
      this.protocolVersion = 4;
      if (this.client) this.client.options.protocolVersion = 4;
      this.log.info({ url: this.url }, 'the MQTT broker does not speak MQTT 5: using 3.1.1');
      return d;
    }
    const fields = {
      url: this.url,
      client_id: o.clientId,
      username: o.username,
      code: (err as { code?: unknown }).code,
      err: err.message,
      hint: d.hint || undefined,
    };
    const text = `${d.message}${d.hint ? `: ${d.hint}` : ''}; retrying every ${Math.max(o.reconnectPeriodMs, this.backoffMs)} ms`;
    if (this.outageLog.allow(d.key)) this.log.warn(fields, text);
    else this.log.debug(fields, text);
    if (d.kind === 'refused') this.options.problems?.raise(PROBLEM.brokerRefused, d.message, d.hint, 'error');
    else this.options.problems?.raise(PROBLEM.brokerUnreachable, d.message, d.hint, 'error');
    return d;
  }

  /** Throws away what mqtt.js holds unacknowledged, so that nothing stale is re-sent after the next CONNACK. */
  private discardUnconfirmed(): void {
    const client = this.client;
    if (!client) return;
    for (const id of Object.keys(client.outgoing)) {
      this.counters.discardedOnDisconnect++;
      client.removeOutgoingMessage(Number(id));
    }
  }

  /** The connection closed: drop what is unconfirmed; detect connections closed soon after being made, several in a row. */
  private onClose(): void {
    this.announced = false;
    this.discardUnconfirmed();
    this.handshakeDone = false;
    const since = this.connectedAt;
    this.connectedAt = undefined;
    if (since === undefined || this.stopping !== undefined) return;
    const now = performance.now();
    const period = this.options.reconnectPeriodMs;
    if (now - since >= Math.max(SHORT_CONNECTION_MS, 2 * period)) {
      this.shortConnections = [];
      return;
    }
    const windowMs = Math.max(SHORT_CONNECTIONS_WINDOW_MS, 6 * period);
    this.shortConnections = [...this.shortConnections, since].filter((at) => now - at <= windowMs);
    if (this.shortConnections.length < SHORT_CONNECTIONS_TO_WARN) return;
    // Back off: the wait between reconnects doubles at each further take-over, up to maxBackoffMs.
    const max = this.options.maxBackoffMs ?? 300_000;
    this.backoffMs = Math.min(max, Math.max(2 * period, this.backoffMs * 2));
    if (this.client) this.client.options.reconnectPeriod = this.backoffMs;
    const clientId = this.options.clientId;
    const message = `the MQTT broker closed the connection soon after connecting ${this.shortConnections.length} times in a row: another client uses the client id '${clientId}'`;
    const hint = 'set mqtt.client_id (or mqtt.base_topic) to one no other client on this broker uses; reconnecting less and less often until then';
    const fields = { url: this.url, client_id: clientId, short_connections: this.shortConnections.length, window_ms: windowMs, backoff_ms: this.backoffMs };
    const text = `${message} (the broker closes the older connection of two with one id) — ${hint}: next attempt in ${this.backoffMs} ms`;
    // The first at warn; each longer wait after it at info.
    if (this.clientIdWarning.allow()) this.log.warn(fields, text);
    else this.log.info(fields, text);
    this.options.problems?.raise(PROBLEM.clientIdConflict, message, hint, 'error');
  }

  private onConnect(): void {
    const client = this.client;
    if (client === undefined || this.stopping !== undefined) return;
    this.connectedAt = performance.now();
    if (this.everConnected) this.counters.reconnects++;
    this.log.info(
      { url: this.url, base_topic: this.topics.base, protocol: this.protocolVersion === 5 ? '5' : '3.1.1', reconnects: this.counters.reconnects },
      'connected to MQTT broker',
    );
    this.everConnected = true;
    this.outageLog.reset();
    // Not announced yet: the problem list changed by these clears is only stored, and goes out after `online` below.
    this.announced = false;
    const problems = this.options.problems;
    problems?.clear(PROBLEM.brokerUnreachable);
    problems?.clear(PROBLEM.brokerRefused);
    if (this.backoffMs > 0) {
      // A connection that lasts ends the backoff (checked when it closes); until then keep the long wait.
      setTimeout(() => {
        if (this.connectedAt !== undefined && performance.now() - this.connectedAt >= SHORT_CONNECTION_MS && this.client) {
          this.backoffMs = 0;
          this.shortConnections = [];
          this.client.options.reconnectPeriod = this.options.reconnectPeriodMs;
          problems?.clear(PROBLEM.clientIdConflict);
          this.clientIdWarning.reset();
          this.log.info({ url: this.url }, 'MQTT connection stable again: client id conflict over');
        }
      }, SHORT_CONNECTION_MS + 50).unref();
    }
    if (this.announce) this.send(this.topics.availability, 'online' satisfies Availability, 1, true);
    this.waiting.clear();
    for (const [topic, m] of this.retained) this.send(topic, m.payload, this.retainedQos, true, m.properties);
    for (const r of this.pendingResponses.splice(0)) this.sendResponse(r.reply, r.payload);
    this.announced = true;
    const topics = this.options.subscriptions ?? [];
    if (!this.subscribed && topics.length > 0) {
      this.subscribed = true;
      // MQTT 5: "retain as published", so a command someone publishes retained is recognised (and refused) at once,
      // not only when the broker replays it later. Over 3.1.1 only the replay carries the flag.
      client.subscribe([...topics], { qos: 1, rap: true }, (err) => {
        if (err) this.log.error({ err: err.message }, `MQTT subscription to the command topics failed: ${err.message}`);
        else this.log.debug({ topics: topics.length }, 'subscribed to command topics');
      });
    }
  }

  private onMessage(topic: string, payload: Buffer, packet: { retain: boolean; properties?: Record<string, unknown> }): void {
    if (this.stopping !== undefined) return;
    const props = packet.properties;
    const msg: IncomingMessage = {
      topic,
      payload,
      retain: packet.retain,
      ...(typeof props?.responseTopic === 'string' ? { responseTopic: props.responseTopic } : {}),
      ...(Buffer.isBuffer(props?.correlationData) ? { correlationData: props.correlationData } : {}),
      ...(props?.userProperties !== undefined ? { userProperties: props.userProperties as Record<string, string | string[]> } : {}),
    };
    try {
      this.options.onMessage?.(msg);
    } catch (err) {
      this.log.error({ topic, err }, `handling a message on ${topic} failed: ${(err as Error).message}`);
    }
  }

  /** Hands one message to mqtt.js, counting it until confirmed. MQTT 5 properties are dropped on a 3.1.1 connection. */
  private send(
    topic: string,
    payload: string | Buffer,
    qos: QoS,
    retain: boolean,
    properties?: IClientPublishOptions['properties'],
    done?: (ok: boolean) => void,
  ): void {
    const client = this.client!;
    this.inFlight++;
    const opts: IClientPublishOptions = { qos, retain };
    if (properties !== undefined && this.protocolVersion === 5) opts.properties = properties;
    client.publish(topic, payload, opts, (err) => {
      this.inFlight--;
      if (err === undefined || err === null) this.counters.published++;
      else this.log.debug({ topic, err: err.message }, 'MQTT publish not confirmed');
      done?.(!err);
      this.sendWaiting();
    });
  }

  /** Connected, `online` sent, not stopping: messages may be handed to mqtt.js. */
  private canSend(): boolean {
    return this.announced && this.client?.connected === true && this.stopping === undefined;
  }

  /** Sends the latest value of retained topics that waited for room below `maxInFlight`, oldest wait first. */
  private sendWaiting(): void {
    for (const topic of this.waiting) {
      if (!this.canSend() || this.inFlight >= this.maxInFlight) return;
      this.waiting.delete(topic);
      const m = this.retained.get(topic);
      if (m !== undefined) this.send(topic, m.payload, this.retainedQos, true, m.properties);
    }
  }

  /**
   * Publishes one prediction to `<base>/prediction` (JSON, not retained,
   * QoS `qos`; scores rounded to 4 decimals, see `predictionPayload`; over
   * MQTT 5 it expires after max(2 s, 2 × the rate limit) so that no broker
   * hands it out stale). Returns `true` when handed to mqtt.js; `false`
   * when dropped because not connected, rate-limited or too many messages
   * unconfirmed — each counted in `stats()`.
   */
  publishPrediction(p: Prediction): boolean {
    if (!this.canSend()) {
      this.counters.droppedOffline++;
      return false;
    }
    const now = performance.now();
    if (this.minIntervalMs > 0 && now - this.lastPredictionAt < this.minIntervalMs) {
      this.counters.droppedRateLimited++;
      return false;
    }
    if (this.inFlight >= this.maxInFlight) {
      this.counters.droppedBackpressure++;
      return false;
    }
    this.lastPredictionAt = now;
    const expiry = Math.max(MIN_PREDICTION_EXPIRY_S, Math.ceil((2 * this.minIntervalMs) / 1000));
    this.send(this.topics.prediction, encodePayload('prediction', predictionPayload(p)), this.qos, RETAIN.prediction, { messageExpiryInterval: expiry });
    return true;
  }

  /** Publishes `<base>/state` (retained). Publishes every state it is given: the on-change rule is `StateSmoother`'s. */
  publishState(s: StatePayload): void {
    this.publishRetained(this.topics.state, encodePayload('state', s));
  }

  /**
   * Publishes `<base>/gpio/<pin>` = `1`/`0` (logical level, 1 = rule
   * active; retained). Throws for a pin outside BCM 0..27.
   */
  publishGpio(pin: number, level: 0 | 1): void {
    this.publishRetained(this.topics.gpio(pin), encodePayload('gpio', level === 1 ? '1' : '0'));
  }

  /** Publishes `<base>/stats` (retained). */
  publishStats(s: StatsPayload): void {
    this.publishRetained(this.topics.stats, encodePayload('stats', s));
  }

  /** Publishes `<base>/problems` (retained). */
  publishProblems(p: ProblemsPayload): void {
    this.publishRetained(this.topics.problems, encodePayload('problems', p));
  }

  /** Publishes `<base>/settings` (retained). */
  publishSettings(s: SettingsPayload): void {
    this.publishRetained(this.topics.settings, encodePayload('settings', s));
  }

  /**
   * Publishes `<base>/snapshot`: JPEG bytes, retained; over MQTT 5 with
   * content type `image/jpeg` and user properties `time`, `seq`, `label`.
   */
  publishSnapshot(jpeg: Buffer, meta: { readonly time: Date; readonly seq: number; readonly label: string | null }): void {
    this.publishRetained(this.topics.snapshot, jpeg, {
      contentType: 'image/jpeg',
      userProperties: { time: meta.time.toISOString(), seq: String(meta.seq), label: meta.label ?? '' },
    });
  }

  /**
   * Publishes a retained message outside the base topic (Home Assistant
   * discovery), kept and re-sent on every connect like the others; an
   * empty payload removes it from the broker and from what is re-sent.
   * Returns a promise that resolves true once the broker acknowledged it
   * (false when not connected or not confirmed).
   */
  publishExternalRetained(topic: string, payload: string): Promise<boolean> {
    assertPublishTopic(topic);
    if (payload === '') this.retained.delete(topic);
    else this.retained.set(topic, { payload });
    if (!this.canSend()) return Promise.resolve(false);
    return new Promise((resolve) => this.send(topic, payload, 1, true, undefined, resolve));
  }

  private publishRetained(topic: string, payload: string | Buffer, properties?: IClientPublishOptions['properties']): void {
    assertPublishTopic(topic);
    const m: RetainedMessage = properties === undefined ? { payload } : { payload, properties };
    this.retained.set(topic, m);
    if (!this.canSend()) return; // sent on the next connect, after `online`
    if (this.inFlight >= this.maxInFlight) {
      this.waiting.add(topic);
      return;
    }
    this.waiting.delete(topic);
    this.send(topic, payload, this.retainedQos, true, m.properties);
  }

  /**
   * Publishes a command's response (not retained, QoS 1) to `reply.topic`,
   * with the request's correlation data over MQTT 5. Not connected: kept
   * (at most 20, the oldest dropped) and sent after the next `online`.
   */
  respond(reply: ReplyTo, payload: ResponsePayload): void {
    const text = encodePayload('response', payload);
    if (!this.canSend()) {
      this.pendingResponses.push({ reply, payload: text });
      if (this.pendingResponses.length > MAX_PENDING_RESPONSES) this.pendingResponses.shift();
      return;
    }
    this.sendResponse(reply, text);
  }

  private sendResponse(reply: ReplyTo, text: string): void {
    this.send(reply.topic, text, 1, RETAIN.response, reply.correlationData !== undefined ? { correlationData: reply.correlationData } : undefined);
  }

  /**
   * Sends every retained topic again (discovery first) when connected:
   * Home Assistant asks for it by announcing `homeassistant/status` = `online`.
   */
  republish(): void {
    if (!this.canSend()) return;
    for (const [topic, m] of this.retained) this.send(topic, m.payload, this.retainedQos, true, m.properties);
  }

  /** A new prediction rate limit in ms (0: every frame), from the next prediction on (a live setting). */
  setPredictionInterval(ms: number): void {
    if (!(Number.isInteger(ms) && ms >= 0)) throw invalidParameterError('prediction interval', 'a whole number of ms ≥ 0', ms);
    this.minIntervalMs = ms;
  }

  /** Counters since construction. */
  stats(): MqttPublisherStats {
    return { connected: this.connected, protocol: this.protocolVersion === 5 ? '5' : '3.1.1', ...this.counters };
  }

  /**
   * Publishes `offline` (retained, QoS 1) when connected and waits for its
   * acknowledgement, then disconnects cleanly (DISCONNECT, so the broker
   * does not send the last will — `offline` is already retained). Bounded:
   * after `stopTimeoutMs` the connection is closed by force. Idempotent;
   * later publishes are dropped.
   */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const client = this.client;
    if (client === undefined) return;
    const deadline = Date.now() + this.stopTimeoutMs;
    const within = <T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> =>
      new Promise((resolve) => {
        const timer = setTimeout(() => resolve('timeout'), Math.max(0, ms));
        void p.then((v) => {
          clearTimeout(timer);
          resolve(v);
        });
      });
    let clean = !this.announce;
    if (client.connected && this.announce) {
      const acked = new Promise<boolean>((resolve) => this.send(this.topics.availability, 'offline', 1, true, undefined, resolve));
      clean = (await within(acked, deadline - Date.now())) === true;
      if (!clean) this.log.warn({ url: this.url }, "MQTT 'offline' not acknowledged in time: closing anyway");
    }
    // end(false) waits for unacknowledged messages; only use it when nothing is pending.
    const force = !clean || this.inFlight > 0;
    const ended = new Promise<void>((resolve) => client.end(force, {}, () => resolve()));
    if ((await within(ended, deadline - Date.now())) === 'timeout') {
      this.log.warn({ url: this.url }, 'MQTT disconnect timed out: closing the socket');
      client.stream?.destroy();
    }
    client.removeAllListeners();
    // Keep a no-op error listener: a late socket error must not crash the process.
    client.on('error', () => {});
    this.log.info({ url: this.url }, 'MQTT publisher stopped');
  }
}
