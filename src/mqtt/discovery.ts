import { createHash } from 'node:crypto';

/**
 * Home Assistant MQTT discovery for one edge-classifier: one retained
 * *device-based* discovery message (`<prefix>/device/<object id>/config`,
 * a `dev` block, an `o` origin block and all entities under `cmps`), the
 * form Home Assistant has documented since 2024.11 ("Device discovery
 * payload" in the MQTT integration's documentation). Keys follow that
 * documentation: the mandatory `dev`, `o`, `cmps` and `p` are written in
 * their documented abbreviations, every other key in full.
 *
 * Entities (component id → platform):
 * - `top_label` sensor: the state's label (`none` when nothing passes the
 *   threshold, unknown when frames stopped), with score, since and the
 *   top-k of the frame that set it as attributes;
 * - `gpio_<pin>` binary sensor per GPIO rule (`<base>/gpio/<pin>`);
 * - `watch_<label>` binary sensor per watched label (on while it is the
 *   state; matched case-insensitively, also as one of the state label's synonyms);
 * - `inference_ms`, `classified_fps`, `cpu_temperature`, `problems`
 *   diagnostic sensors from `<base>/stats` and `<base>/problems`;
 * - `snapshot` image (`<base>/snapshot`, JPEG bytes);
 * - with commands enabled: `threshold` number, `paused` switch (state from
 *   `<base>/settings`), `reload` button.
 * Availability for all of them: `<base>/availability` (`online`/`offline`).
 */

/** Topics of one daemon that discovery points at (see `Topics`). */
export interface DiscoveryTopics {
  readonly base: string;
  readonly availability: string;
  readonly state: string;
  readonly stats: string;
  readonly problems: string;
  readonly snapshot: string;
  readonly settings: string;
  gpio(pin: number): string;
  set(key: string): string;
  request(command: string): string;
}

/** What `buildDiscovery` needs to know about the daemon. */
export interface DiscoveryOptions {
  /** Discovery prefix, default `homeassistant` (validated with `validateDiscoveryPrefix`). */
  readonly prefix: string;
  /** Device id (12 hex, see `deviceId`). */
  readonly deviceId: string;
  /** The default base topic for this device id; another base topic makes ids distinct per instance. */
  readonly defaultBase: string;
  readonly topics: DiscoveryTopics;
  /** Device name shown in Home Assistant, e.g. `edge-classifier front-door`. */
  readonly deviceName: string;
  /** The TFLite model name, e.g. `mobilenet_v2_1.0_224_quant` (device model). */
  readonly model: string;
  /** edge-classifier's version (device and origin sw version). */
  readonly swVersion: string;
  /** The board, e.g. `Raspberry Pi 4 Model B Rev 1.4` from the device tree, when known (device hw version). */
  readonly hardware?: string;
  /** GPIO rules: BCM pin and labels. */
  readonly gpio: readonly { readonly pin: number; readonly labels: readonly string[] }[];
  /** Labels that get a binary sensor each (`homeassistant.watch`). */
  readonly watch: readonly string[];
  /** Whether commands are enabled (`mqtt.commands`): the number, switch and button need them. */
  readonly commands: boolean;
}

/** One message to publish (retained). */
export interface DiscoveryMessage {
  readonly topic: string;
  /** JSON text; `''` removes the device from Home Assistant. */
  readonly payload: string;
}

/** Characters allowed in a discovery object id and component id (HA documentation: `[a-zA-Z0-9_-]`). */
const ID_CHARS = /[^a-zA-Z0-9_-]+/g;

/**
 * Validates a discovery prefix (`homeassistant.prefix`): non-empty, no
 * `+`/`#` wildcards, no leading or trailing `/`, no NUL, not starting with
 * `$`. Returns it; throws an error naming it otherwise.
 */
export function validateDiscoveryPrefix(prefix: string): string {
  const fail = (why: string): never => {
    throw new Error(`Home Assistant discovery prefix ${JSON.stringify(prefix)} ${why}`);
  };
  if (prefix.length === 0) fail('is empty: expected e.g. homeassistant');
  if (prefix.includes('+') || prefix.includes('#')) fail("contains a wildcard ('+' or '#'): expected a plain topic such as homeassistant");
  if (prefix.startsWith('/') || prefix.endsWith('/')) fail("starts or ends with '/': expected e.g. homeassistant");
  if (prefix.startsWith('$')) fail("starts with '$', which is reserved for broker topics");
  if (prefix.includes('\u0000')) fail('contains a NUL character');
  return prefix;
}

/**
 * The discovery object id: `edge_classifier_<device id>`, plus
 * `_<first 6 hex of sha256(base topic)>` when the base topic is not the
 * default, so that two daemons on one machine (two cameras) are two devices.
 */
export function discoveryObjectId(deviceId: string, base: string, defaultBase: string): string {
  const id = `edge_classifier_${deviceId}`.replace(ID_CHARS, '_');
  return base === defaultBase ? id : `${id}_${createHash('sha256').update(base).digest('hex').slice(0, 6)}`;
}

/** `<prefix>/device/<object id>/config`. */
function discoveryTopic(o: Pick<DiscoveryOptions, 'prefix' | 'deviceId' | 'defaultBase' | 'topics'>): string {
  return `${validateDiscoveryPrefix(o.prefix)}/device/${discoveryObjectId(o.deviceId, o.topics.base, o.defaultBase)}/config`;
}

/** A label as a component id part: `hotdog, hot dog, red hot` → `hotdog_hot_dog_red_hot`. */
function labelId(label: string): string {
  const s = label
    .toLowerCase()
    .replace(ID_CHARS, '_')
    .replace(/^_+|_+$/g, '');
  return s === '' ? createHash('sha256').update(label).digest('hex').slice(0, 8) : s.slice(0, 48);
}

/** A label inside a Jinja template: a double-quoted string literal (JSON escaping is valid there). */
const jinjaString = (s: string): string => JSON.stringify(s);

type Component = Record<string, unknown> & { p: string; unique_id: string };

/**
 * Builds the retained device discovery message. Throws when the prefix is
 * invalid. The payload is deterministic for the same options, so a
 * re-publish (on `homeassistant/status` = `online`) changes nothing in
 * Home Assistant.
 */
export function buildDiscovery(o: DiscoveryOptions): DiscoveryMessage {
  const t = o.topics;
  const objectId = discoveryObjectId(o.deviceId, t.base, o.defaultBase);
  const uid = (component: string): string => `${objectId}_${component}`;
  const cmps: Record<string, Component> = {};

  cmps.top_label = {
    p: 'sensor',
    name: 'Top label',
    unique_id: uid('top_label'),
    icon: 'mdi:image-search',
    state_topic: t.state,
    // 'None' is Home Assistant's "unknown" for MQTT sensors.
    value_template: "{% if value_json.status == 'detected' %}{{ value_json.label }}{% elif value_json.status == 'none' %}none{% else %}None{% endif %}",
    json_attributes_topic: t.state,
    json_attributes_template:
      "{{ {'score': value_json.score, 'index': value_json['index'], 'since': value_json.since, 'top_k': value_json.classes} | tojson }}",
  };
  for (const rule of o.gpio) {
    cmps[`gpio_${rule.pin}`] = {
      p: 'binary_sensor',
      name: `GPIO ${rule.pin} (${rule.labels.join(', ')})`.slice(0, 120),
      unique_id: uid(`gpio_${rule.pin}`),
      state_topic: t.gpio(rule.pin),
      payload_on: '1',
      payload_off: '0',
    };
  }
  for (const label of o.watch) {
    const id = `watch_${labelId(label)}`;
    cmps[id] = {
      p: 'binary_sensor',
      name: label.slice(0, 120),
      unique_id: uid(id),
      device_class: 'occupancy',
      state_topic: t.state,
      // Matched as GPIO labels are: the whole label or one of its ', '-separated synonyms, case-insensitive.
      value_template:
        "{% set l = (value_json.label or '') | lower %}{% if value_json.status == 'unknown' %}None" +
        `{% elif l == ${jinjaString(label.toLowerCase())} or ${jinjaString(label.toLowerCase())} in l.split(', ') %}ON{% else %}OFF{% endif %}`,
    };
  }
  cmps.inference_ms = {
    p: 'sensor',
    name: 'Inference time p50',
    unique_id: uid('inference_ms'),
    entity_category: 'diagnostic',
    icon: 'mdi:timer-outline',
    state_topic: t.stats,
    value_template: '{{ value_json.inference_ms.p50 }}',
    unit_of_measurement: 'ms',
    state_class: 'measurement',
    suggested_display_precision: 1,
  };
  cmps.classified_fps = {
    p: 'sensor',
    name: 'Classified frame rate',
    unique_id: uid('classified_fps'),
    entity_category: 'diagnostic',
    icon: 'mdi:speedometer',
    state_topic: t.stats,
    value_template: '{{ value_json.fps.classified }}',
    unit_of_measurement: 'fps',
    state_class: 'measurement',
    suggested_display_precision: 1,
  };
  cmps.cpu_temperature = {
    p: 'sensor',
    name: 'CPU temperature',
    unique_id: uid('cpu_temperature'),
    entity_category: 'diagnostic',
    device_class: 'temperature',
    state_topic: t.stats,
    value_template: '{{ value_json.system.cpu_temperature_c }}',
    unit_of_measurement: '°C',
    state_class: 'measurement',
  };
  cmps.problems = {
    p: 'sensor',
    name: 'Problems',
    unique_id: uid('problems'),
    entity_category: 'diagnostic',
    icon: 'mdi:alert-circle-outline',
    state_topic: t.problems,
    value_template: '{{ value_json.problems | length }}',
    json_attributes_topic: t.problems,
    json_attributes_template: "{{ {'problems': value_json.problems} | tojson }}",
    state_class: 'measurement',
  };
  cmps.snapshot = {
    p: 'image',
    name: 'Snapshot',
    unique_id: uid('snapshot'),
    image_topic: t.snapshot,
    content_type: 'image/jpeg',
  };
  if (o.commands) {
    cmps.threshold = {
      p: 'number',
      name: 'Score threshold',
      unique_id: uid('threshold'),
      entity_category: 'config',
      icon: 'mdi:tune-vertical',
      command_topic: t.set('threshold'),
      state_topic: t.settings,
      value_template: '{{ value_json.threshold }}',
      min: 0,
      max: 1,
      step: 0.01,
      mode: 'box',
    };
    cmps.paused = {
      p: 'switch',
      name: 'Paused',
      unique_id: uid('paused'),
      entity_category: 'config',
      icon: 'mdi:pause-circle-outline',
      command_topic: t.set('paused'),
      payload_on: 'true',
      payload_off: 'false',
      state_topic: t.settings,
      value_template: "{{ 'true' if value_json.paused else 'false' }}",
      state_on: 'true',
      state_off: 'false',
    };
    cmps.reload = {
      p: 'button',
      name: 'Reload configuration',
      unique_id: uid('reload'),
      entity_category: 'config',
      device_class: 'restart',
      command_topic: t.request('reload'),
      payload_press: '{}',
    };
  }

  const dev: Record<string, unknown> = {
    ids: [objectId],
    name: o.deviceName,
    mf: 'edge-classifier',
    mdl: o.model,
    sw: o.swVersion,
  };
  if (o.hardware !== undefined) dev.hw = o.hardware;
  const payload = {
    dev,
    o: { name: 'edge-classifier', sw: o.swVersion },
    availability_topic: t.availability,
    qos: 1,
    cmps,
  };
  return { topic: discoveryTopic(o), payload: JSON.stringify(payload) };
}

/** The message that removes the device (and all its entities) from Home Assistant: an empty retained payload. */
export function removalMessage(o: Pick<DiscoveryOptions, 'prefix' | 'deviceId' | 'defaultBase' | 'topics'>): DiscoveryMessage {
  return { topic: discoveryTopic(o), payload: '' };
}
