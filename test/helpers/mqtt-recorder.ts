/**
 * An MQTT subscriber for tests that records every message on a topic filter.
 *
 *   const rec = await recordMqtt(t, broker.url, 'edge-classifier/test/#');
 *   const m = await rec.waitFor((m) => m.topic.endsWith('/availability') && m.payload === 'online');
 *   m.retain  // true when the broker delivered it from its retained store
 *
 * Brokers set `retain` only on messages sent from the retained store when a
 * subscription is made (MQTT-3.3.1-8/9), so "was it retained?" is checked by
 * subscribing after the publish. The recorder reconnects by itself (every
 * 100 ms) and re-subscribes, so it survives broker restarts.
 */
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import { Recording } from './recording.js';

interface RecordedMessage {
  readonly topic: string;
  readonly payload: string;
  /** The payload's bytes (for binary payloads such as snapshots). */
  readonly bytes: Buffer;
  readonly retain: boolean;
  readonly qos: number;
  /** MQTT 5 properties (with `protocolVersion: 5`). */
  readonly properties?: Record<string, unknown>;
  /** `Date.now()` when it arrived. */
  readonly at: number;
}

export interface MqttRecorder {
  readonly client: MqttClient;
  /** Every message so far, in arrival order. */
  readonly messages: RecordedMessage[];
  /** Messages on exactly `topic`. */
  on(topic: string): RecordedMessage[];
  /** Resolves with the first recorded message (past or future) matching; rejects after timeoutMs. */
  waitFor(match: (m: RecordedMessage) => boolean, timeoutMs?: number, what?: string): Promise<RecordedMessage>;
  /** Forgets the messages recorded so far. */
  clear(): void;
  /** Disconnects. Idempotent. */
  end(): Promise<void>;
}

interface TeardownTarget {
  teardown(fn: () => unknown): void;
}

/**
 * Connects to `url`, subscribes to `filter` at QoS 1 and records; registers
 * `end` in `t.teardown` when given. `options` are mqtt.js client options
 * (e.g. `{ protocolVersion: 5 }` to see MQTT 5 properties, TLS material).
 */
export async function recordMqtt(t: TeardownTarget | undefined, url: string, filter: string, options: IClientOptions = {}): Promise<MqttRecorder> {
  const client = connect(url, { reconnectPeriod: 100, connectTimeout: 2000, clean: true, resubscribe: true, ...options });
  client.on('error', () => {});
  const recording = new Recording<RecordedMessage>();
  const messages = recording.items;
  client.on('message', (topic, payload, packet) => {
    recording.push({
      topic,
      payload: payload.toString(),
      bytes: Buffer.from(payload),
      at: Date.now(),
      retain: packet.retain,
      qos: packet.qos,
      ...(packet.properties ? { properties: packet.properties as Record<string, unknown> } : {}),
    });
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`recorder could not connect to ${url}`)), 5000);
    client.once('connect', () => {
      client.subscribe(filter, { qos: 1 }, (err) => {
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      });
    });
  });
  let ended = false;
  const rec: MqttRecorder = {
    client,
    messages,
    on: (topic) => messages.filter((m) => m.topic === topic),
    waitFor: (match, timeoutMs = 5000, what = 'a matching message') => recording.waitFor(match, timeoutMs, what),
    clear() {
      messages.length = 0;
    },
    async end() {
      if (ended) return;
      ended = true;
      await client.endAsync(true);
    },
  };
  t?.teardown(() => rec.end());
  return rec;
}
