import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import { invalidParameterError, unreadableFileError } from '../core/errors.js';
import type { Lifecycle } from '../core/lifecycle.js';
import { type Logger, LogThrottle } from '../core/log.js';
import { redactUrl } from '../core/redact.js';
import { type Availability, assertPublishTopic, encodePayload, type Prediction, predictionPayload, RETAIN, type StatePayload, Topics } from './topics.js';

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
  /** Keepalive in seconds (MQTT PINGREQ interval; the broker drops us after 1.5×). */
  readonly keepalive: number;
  /** QoS of prediction, state and gpio messages. Availability and the last will always use QoS 1. */
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
  /**
   * `true` (default): `start()` resolves on the first connection and rejects
   * after `connectTimeoutMs` (and stops trying). `false`: `start()` resolves
   * at once and the publisher keeps connecting in the background.
   */
  readonly waitForConnect?: boolean;
  /**
   * Most messages handed to mqtt.js and not yet confirmed (written for QoS 0,
   * acknowledged for QoS 1/2). Beyond it predictions are dropped (counted in
   * `droppedBackpressure`) and retained messages wait for the next connect.
   * This bounds mqtt.js's own stores when a dead connection is not yet
   * detected. Default 100.
   */
  readonly maxInFlight?: number;
  /** Time `stop()` waits for `offline` to be acknowledged and the connection to close, in ms. Default 2000. */
  readonly stopTimeoutMs?: number;
  readonly log: Logger;
}

/** Counters of an `MqttPublisher`. */
export interface MqttPublisherStats {
  /** Connected to the broker now. */
  readonly connected: boolean;
  /** Messages confirmed (written for QoS 0, acknowledged for QoS 1/2), all topics. */
  readonly published: number;
  /** Predictions dropped because the broker was not connected (never queued: they are stale). */
  readonly droppedOffline: number;
  /** Predictions dropped by `predictionMinIntervalMs`. */
  readonly droppedRateLimited: number;
  /** Predictions dropped because `maxInFlight` messages were unconfirmed. */
  readonly droppedBackpressure: number;
  /** Successful connections after the first one. */
  readonly reconnects: number;
}

const URL_PROTOCOLS = new Set(['mqtt:', 'mqtts:', 'tcp:', 'tls:', 'ssl:', 'ws:', 'wss:']);

function checkUrl(url: string): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`MQTT broker URL '${url}' is not a URL: expected e.g. mqtt://broker.local:1883 or mqtts://broker.local:8883`);
  }
  if (!URL_PROTOCOLS.has(u.protocol)) {
    throw new Error(`MQTT broker URL '${redactUrl(url)}' has protocol '${u.protocol}': expected mqtt:, mqtts:, ws: or wss: (also tcp:, tls:, ssl:)`);
  }
}

/**
 * Hint for a CONNACK refusal by MQTT 3.1.1 return code (the publisher always
 * connects with protocol version 4, so only codes 1..5 occur), or undefined.
 * `hasUsername`: whether a user name was sent.
 */
function refusalHint(code: number, hasUsername: boolean): string | undefined {
  switch (code) {
    case 1:
      return 'the broker does not accept MQTT 3.1.1';
    case 2:
      return 'the broker rejects the client id: check mqtt.client_id';
    case 3:
      return 'the broker is unavailable for now';
    case 4:
    case 5:
      return hasUsername
        ? "check mqtt.username / EDGE_CLASSIFIER_MQTT_PASSWORD (or mqtt.password) against the broker's users"
        : 'no mqtt.username is set and the broker may require one: set mqtt.username and EDGE_CLASSIFIER_MQTT_PASSWORD (or mqtt.password)';
    default:
      return undefined;
  }
}

/** The CONNACK return code of a refusal error from mqtt.js (`Connection refused: <reason>`), else undefined. */
function refusalCode(err: Error): number | undefined {
  const code = (err as Error & { code?: unknown }).code;
  return typeof code === 'number' && err.message.startsWith('Connection refused:') ? code : undefined;
}

/** Connections that end within this long after being made count as short (ms); at least 2 × reconnectPeriodMs. */
const SHORT_CONNECTION_MS = 10_000;
/** Short connections in a row that trigger the duplicate client id warning. */
const SHORT_CONNECTIONS_TO_WARN = 3;
/** …when all of them fall within this window (ms); at least 6 × reconnectPeriodMs. */
const SHORT_CONNECTIONS_WINDOW_MS = 60_000;

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

/**
 * Publishes predictions, state, GPIO levels and availability to an MQTT
 * broker through mqtt.js v5, and owns availability:
 *
 * - last will `<base>/availability` = `offline`, retained, QoS 1;
 * - on every connect (the first and every reconnect) `online` (retained,
 *   QoS 1), then the latest retained state and every GPIO level again — a
 *   broker restarted without persistence has lost them, and messages made
 *   while offline are delivered this way;
 * - reconnecting is left to mqtt.js (`reconnectPeriod`), also after the
 *   broker refused the CONNECT (`reconnectOnConnackError`: a user fixing the
 *   broker's password file sees the daemon connect without a restart); an
 *   `'error'` listener is always attached.
 *
 * Logging while not connected: the first connection error of an outage at
 * warn, the rest at debug; a refusal (CONNACK error, e.g. "Not authorized")
 * at warn once per distinct reason per outage, with a hint (e.g. check
 * `mqtt.username` / `EDGE_CLASSIFIER_MQTT_PASSWORD`). When three connections
 * in a row each end within max(10 s, 2 × reconnectPeriodMs) of being made,
 * all within max(60 s, 6 × reconnectPeriodMs), a warning is logged once per
 * publisher: another client may be using the same client id (a broker closes
 * the older of two connections with one id, so they knock each other off).
 *
 * Offline behaviour is bounded: predictions are dropped and counted (never
 * queued), state and GPIO keep only the latest payload per topic (one per
 * topic, sent on connect), nothing is handed to mqtt.js while disconnected
 * (its QoS>0 store would otherwise grow without bound), `queueQoSZero` is
 * off, and at most `maxInFlight` messages are unconfirmed at a time.
 *
 * Lifecycle (the one `Lifecycle`): the constructor validates the URL and
 * base topic and does no I/O; `start(signal)` reads the TLS files and
 * connects (an abort of `signal` while it waits for the first connection
 * gives up connecting); `stop()` publishes `offline` (retained) when
 * connected, disconnects cleanly and is bounded by `stopTimeoutMs`.
 */
export class MqttPublisher implements Lifecycle {
  readonly name = 'mqtt publisher';
  readonly topics: Topics;
  private readonly options: MqttPublisherOptions;
  private readonly log: Logger;
  private readonly qos: QoS;
  private readonly minIntervalMs: number;
  private readonly maxInFlight: number;
  private readonly connectTimeoutMs: number;
  private readonly stopTimeoutMs: number;
  private client: MqttClient | undefined;
  /** Latest payload of every retained topic except availability (state, gpio/<pin>). */
  private readonly retained = new Map<string, string>();
  private inFlight = 0;
  private lastPredictionAt = -Infinity;
  private everConnected = false;
  /** Connection errors (key '') and refusal reasons logged at warn since the last connection. */
  private readonly outageLog = new LogThrottle();
  /** `performance.now()` when the current connection was made; undefined while not connected. */
  private connectedAt: number | undefined;
  /** Connect times (`performance.now()`) of the latest short connections in a row. */
  private shortConnections: number[] = [];
  private readonly clientIdWarning = new LogThrottle();
  private stopping: Promise<void> | undefined;
  private counters = { published: 0, droppedOffline: 0, droppedRateLimited: 0, droppedBackpressure: 0, reconnects: 0 };

  /** Throws when the URL, the client id, the base topic, `maxInFlight` or `stopTimeoutMs` is invalid. */
  constructor(options: MqttPublisherOptions) {
    checkUrl(options.url);
    if (options.clientId.length === 0) throw invalidParameterError('MQTT client id', 'e.g. edge-classifier-<device id>', '');
    this.topics = new Topics(options.baseTopic);
    this.qos = options.qos;
    this.minIntervalMs = options.predictionMinIntervalMs;
    this.maxInFlight = positive('maxInFlight', options.maxInFlight ?? 100);
    this.connectTimeoutMs = options.connectTimeoutMs;
    this.stopTimeoutMs = positive('stopTimeoutMs', options.stopTimeoutMs ?? 2000);
    this.options = options;
    this.log = options.log;
  }

  /** Connected to the broker now. */
  get connected(): boolean {
    return this.client?.connected === true;
  }

  /**
   * Reads the TLS files and connects. With `waitForConnect` (default) it
   * resolves once the first connection is up, or rejects after
   * `connectTimeoutMs` with an error naming the URL and the last connection
   * error, plus a hint when that was a refusal (e.g. "Connection refused: Not
   * authorized (check mqtt.username / …)"), and stops connecting; a refused
   * attempt is retried every `reconnectPeriodMs` until then. Without it, it
   * resolves at once and keeps retrying, refusals included, until `stop()`.
   * Throws when a TLS file cannot be read (naming the key and file).
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
      protocolVersion: 4,
      queueQoSZero: false,
      // mqtt.js v5 stops reconnecting after a CONNACK error unless told otherwise.
      reconnectOnConnackError: true,
      will: { topic: this.topics.availability, payload: Buffer.from('offline'), qos: 1, retain: true },
    };
    if (o.username !== undefined) opts.username = o.username;
    if (o.password !== undefined) opts.password = o.password;
    if (ca !== undefined) opts.ca = ca;
    if (cert !== undefined) opts.cert = cert;
    if (key !== undefined) opts.key = key;
    if (o.tls?.rejectUnauthorized !== undefined) opts.rejectUnauthorized = o.tls.rejectUnauthorized;

    const url = redactUrl(o.url);
    let lastError: Error | undefined;
    const client = connect(o.url, opts);
    this.client = client;
    client.on('connect', () => this.onConnect());
    client.on('error', (err) => {
      lastError = err;
      const refused = refusalCode(err);
      if (refused !== undefined) {
        this.onRefused(err, refused);
        return;
      }
      // One warning per outage; the rest (one per reconnect attempt) at debug.
      if (this.outageLog.allow()) this.log.warn({ url, err: err.message }, 'MQTT connection error');
      else this.log.debug({ url, err: err.message }, 'MQTT connection error');
    });
    client.on('offline', () => {
      if (this.everConnected && this.stopping === undefined) this.log.warn({ url }, 'MQTT broker disconnected: reconnecting');
    });
    client.on('close', () => this.onClose());

    if (o.waitForConnect === false) {
      this.log.info({ url, client_id: o.clientId }, 'connecting to MQTT broker');
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
        const why = lastError !== undefined ? `: ${lastError.message}` : '';
        const code = lastError !== undefined ? refusalCode(lastError) : undefined;
        const hintText = code !== undefined ? refusalHint(code, o.username !== undefined) : undefined;
        const hint = hintText !== undefined ? ` (${hintText})` : '';
        reject(new Error(`cannot connect to MQTT broker ${url} within ${this.connectTimeoutMs} ms${why}${hint}`));
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
        reject(new Error(`MQTT publisher stopped before connecting to ${url}`));
      };
      client.once('connect', onFirst);
      client.once('end', onEnd);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** A CONNACK error: warn once per distinct reason per outage (with a hint), else debug. mqtt.js retries. */
  private onRefused(err: Error, code: number): void {
    const fields = { url: redactUrl(this.options.url), client_id: this.options.clientId, username: this.options.username, code, err: err.message };
    if (!this.outageLog.allow(`refused: ${err.message}`)) {
      this.log.debug(fields, 'MQTT broker refused the connection');
      return;
    }
    const hint = refusalHint(code, this.options.username !== undefined);
    const retry = `retrying every ${this.options.reconnectPeriodMs} ms`;
    this.log.warn({ ...fields, hint }, `MQTT broker refused the connection (${err.message})${hint !== undefined ? `: ${hint}` : ''}; ${retry}`);
  }

  /** The connection closed: detect connections closed by the broker soon after connecting, several in a row. */
  private onClose(): void {
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
    if (this.shortConnections.length < SHORT_CONNECTIONS_TO_WARN || !this.clientIdWarning.allow()) return;
    const clientId = this.options.clientId;
    this.log.warn(
      { url: redactUrl(this.options.url), client_id: clientId, short_connections: this.shortConnections.length, window_ms: windowMs },
      `MQTT broker closed the connection soon after connecting ${this.shortConnections.length} times in a row: ` +
        `another client may be using the same client id '${clientId}' (the broker then closes the older connection) — ` +
        'set mqtt.client_id to an id unique on this broker',
    );
  }

  private onConnect(): void {
    const client = this.client;
    if (client === undefined || this.stopping !== undefined) return;
    this.connectedAt = performance.now();
    if (this.everConnected) this.counters.reconnects++;
    this.log.info({ url: redactUrl(this.options.url), base_topic: this.topics.base, reconnects: this.counters.reconnects }, 'connected to MQTT broker');
    this.everConnected = true;
    this.outageLog.reset();
    this.send(this.topics.availability, 'online' satisfies Availability, 1, true);
    for (const [topic, payload] of this.retained) this.send(topic, payload, this.qos, true);
  }

  /** Hands one message to mqtt.js, counting it until confirmed. */
  private send(topic: string, payload: string, qos: QoS, retain: boolean, done?: (ok: boolean) => void): void {
    const client = this.client!;
    this.inFlight++;
    client.publish(topic, payload, { qos, retain }, (err) => {
      this.inFlight--;
      if (err === undefined || err === null) this.counters.published++;
      else this.log.debug({ topic, err: err.message }, 'MQTT publish not confirmed');
      done?.(!err);
    });
  }

  private canSend(): boolean {
    return this.client?.connected === true && this.stopping === undefined;
  }

  /**
   * Publishes one prediction to `<base>/prediction` (JSON, not retained,
   * QoS `qos`; scores rounded to 4 decimals, see `predictionPayload`).
   * Returns `true` when handed to mqtt.js; `false` when dropped because not
   * connected, rate-limited (`predictionMinIntervalMs`) or too many messages
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
    this.send(this.topics.prediction, encodePayload('prediction', predictionPayload(p)), this.qos, RETAIN.prediction);
    return true;
  }

  /**
   * Publishes `<base>/state` (JSON, retained, QoS `qos`). Publishes every
   * state it is given: the on-change rule is `StateTracker`'s. While offline
   * only the latest state is kept and it is sent on the next connect.
   */
  publishState(s: StatePayload): void {
    this.publishRetained(this.topics.state, encodePayload('state', s));
  }

  /**
   * Publishes `<base>/gpio/<pin>` = `1`/`0` (logical level, 1 = rule
   * active; retained, QoS `qos`). While offline only the latest level per
   * pin is kept and sent on the next connect. Throws for a pin outside BCM 0..27.
   */
  publishGpio(pin: number, level: 0 | 1): void {
    this.publishRetained(this.topics.gpio(pin), encodePayload('gpio', level === 1 ? '1' : '0'));
  }

  private publishRetained(topic: string, payload: string): void {
    assertPublishTopic(topic);
    this.retained.set(topic, payload);
    if (this.canSend() && this.inFlight < this.maxInFlight) this.send(topic, payload, this.qos, true);
  }

  /** Counters since construction. */
  stats(): MqttPublisherStats {
    return { connected: this.connected, ...this.counters };
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
    let clean = false;
    if (client.connected) {
      const acked = new Promise<boolean>((resolve) => this.send(this.topics.availability, 'offline', 1, true, resolve));
      clean = (await within(acked, deadline - Date.now())) === true;
      if (!clean) this.log.warn({ url: redactUrl(this.options.url) }, "MQTT 'offline' not acknowledged in time: closing anyway");
    }
    // end(false) waits for unacknowledged messages; only use it when nothing is pending.
    const force = !clean || this.inFlight > 0;
    const ended = new Promise<void>((resolve) => client.end(force, {}, () => resolve()));
    if ((await within(ended, deadline - Date.now())) === 'timeout') {
      this.log.warn({ url: redactUrl(this.options.url) }, 'MQTT disconnect timed out: closing the socket');
      client.stream?.destroy();
    }
    client.removeAllListeners();
    // Keep a no-op error listener: a late socket error must not crash the process.
    client.on('error', () => {});
    this.log.info({ url: redactUrl(this.options.url) }, 'MQTT publisher stopped');
  }
}
