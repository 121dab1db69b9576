import type { CaptureMode } from '../camera/capture-mode.js';
import type { MotionGateOptions } from '../camera/picture-checks.js';
import type { SourceOptions } from '../camera/source-spec.js';
import { redactUrl } from '../core/redact.js';
import type { Roi } from '../core/types.js';
import type { GpioSmoothing } from '../gpio/actuator.js';
import type { GpioBackendKind } from '../gpio/backends.js';
import type { InputOptions } from '../gpio/input.js';
import type { GpioRule } from '../gpio/rules.js';
import type { ClassifierOptions } from '../inference/classifier.js';
import { defaultCacheFile } from '../inference/engine-choice.js';
import type { MqttPublisherOptions } from '../mqtt/publisher.js';
import type { StateSmootherOptions } from '../mqtt/state.js';
import { defaultBaseTopic, defaultClientId } from '../mqtt/topics.js';
import type { Config } from './schema.js';

/*
 * The one place where the configuration (snake_case keys, validated and
 * defaulted by the schema) becomes each stage's options (camelCase). Stages
 * take these options as given: the schema holds the bounds.
 */

/** Least time without a classified frame after which GPIO outputs switch off, in ms. */
const MIN_STALL_MS = 3_000;

/** The frame source options a configuration asks for (`source:` section); the model size of raw frames is added once the model is loaded. */
function sourceOptions(c: Config): SourceOptions {
  const s = c.source;
  return {
    width: s.width,
    height: s.height,
    fps: s.fps,
    rotation: s.rotation,
    hflip: s.hflip,
    vflip: s.vflip,
    loop: s.loop,
    jpegQuality: s.jpeg_quality,
    format: s.format,
    ...(s.roi ? { roi: s.roi } : {}),
    ...(s.stall_timeout_s !== null ? { stallTimeoutMs: s.stall_timeout_s * 1000 } : {}),
  };
}

/** What the capture does with the source's frames (`source.mode`, `trigger`, `motion`, `frozen_s`). */
interface CapturePlan {
  readonly mode: CaptureMode;
  /** Seconds between interval captures (`source.interval_s`), for the power-saving decision. */
  readonly intervalS: number;
  /** The trigger input, when `mode` is trigger and a pin is set. */
  readonly trigger?: { readonly pin: number; readonly input: InputOptions };
  readonly motion?: MotionGateOptions;
  /** `source.frozen_s` in ms (0: off). */
  readonly frozenAfterMs: number;
  /** `source.roi`, which the preprocessing applies when the source cannot (replayed files). */
  readonly roi?: Roi;
}

function capturePlan(c: Config): CapturePlan {
  const s = c.source;
  const mode: CaptureMode =
    s.mode === 'interval'
      ? { kind: 'interval', everyMs: s.interval_s * 1000 }
      : s.mode === 'trigger'
        ? { kind: 'trigger', burst: s.trigger.burst }
        : { kind: 'continuous' };
  const t = s.trigger;
  return {
    mode,
    intervalS: s.interval_s,
    ...(s.mode === 'trigger' && t.pin !== null ? { trigger: { pin: t.pin, input: { edge: t.edge, debounceMs: t.debounce_ms, pull: t.pull } } } : {}),
    ...(s.motion.enabled ? { motion: { threshold: s.motion.threshold, cellDelta: s.motion.cell_delta } } : {}),
    frozenAfterMs: s.frozen_s * 1000,
    ...(s.roi ? { roi: s.roi } : {}),
  };
}

/**
 * The classifier's options (`model:`, `inference:`, `preprocess:`; shared by
 * `run` and `classify`). mean/std given as one number apply to all three
 * channels.
 */
export function classifierOptions(c: Config): Omit<ClassifierOptions, 'log'> {
  const { mean, std } = c.preprocess;
  const triple = (v: number | number[] | null, fallback: number) => (v === null ? [fallback, fallback, fallback] : Array.isArray(v) ? v : [v, v, v]);
  return {
    modelPath: c.model.path,
    ...(c.model.labels !== null ? { labelsPath: c.model.labels } : {}),
    ...(c.model.cpu_fallback !== null ? { cpuModelPath: c.model.cpu_fallback } : {}),
    engine: c.inference.engine,
    delegate: c.inference.delegate,
    ...(c.inference.edgetpu_device !== null ? { edgetpuDevice: c.inference.edgetpu_device } : {}),
    threads: c.inference.threads,
    ...(c.inference.library !== null ? { library: c.inference.library } : {}),
    cacheFile: c.inference.cache ?? defaultCacheFile(),
    ...(c.preprocess.input_size !== null ? { inputSize: sizePair(c.preprocess.input_size) } : {}),
    topK: c.inference.top_k,
    threshold: c.inference.threshold,
    resize: c.preprocess.resize,
    ...(mean === null && std === null ? {} : { normalization: { mean: triple(mean, 0), std: triple(std, 1) } }),
  };
}

/** `preprocess.input_size` as [height, width]: one number is both. */
function sizePair(v: number | number[]): [number, number] {
  return Array.isArray(v) ? [v[0]!, v[1]!] : [v, v];
}

/**
 * The MQTT base topic and client id in use: the configured ones, else
 * `edge-classifier/<device id>` and `edge-classifier-<device id>` (plus a
 * hash of another base topic; see `defaultClientId`).
 */
function mqttIdentity(c: Config, deviceId: string): { baseTopic: string; clientId: string } {
  const baseTopic = c.mqtt.base_topic ?? defaultBaseTopic(deviceId);
  return { baseTopic, clientId: c.mqtt.client_id ?? defaultClientId(deviceId, baseTopic) };
}

/** The publisher's options but the broker URL (`mqtt:`), for the device `deviceId`. */
export function publisherOptions(c: Config, deviceId: string): Omit<MqttPublisherOptions, 'url' | 'log'> {
  const m = c.mqtt;
  const tls = m.tls;
  return {
    ...mqttIdentity(c, deviceId),
    ...(m.username !== null ? { username: m.username } : {}),
    ...(m.password !== null ? { password: m.password } : {}),
    keepalive: m.keepalive,
    qos: m.qos,
    tls: {
      ...(tls.ca !== null ? { ca: tls.ca } : {}),
      ...(tls.cert !== null ? { cert: tls.cert } : {}),
      ...(tls.key !== null ? { key: tls.key } : {}),
      rejectUnauthorized: tls.reject_unauthorized,
    },
    predictionMinIntervalMs: m.prediction_interval_ms,
    reconnectPeriodMs: m.reconnect_period_ms,
    connectTimeoutMs: m.connect_timeout_ms,
    // The embedded broker (aedes) speaks 3.1.1 only: no need to try 5 first.
    protocol: m.url === null ? '3.1.1' : m.protocol,
    // The daemon runs while the broker is away: predictions are dropped, state and GPIO sent on connect.
    waitForConnect: false,
  };
}

/** The GPIO rules (`gpio.rules`, or `--gpio` flags), in the actuator's shape. */
export function gpioRules(c: Config): GpioRule[] {
  return c.gpio.rules.map((r) => ({ pin: r.pin, labels: r.labels, minScore: r.min_score, activeLow: r.active_low, holdMs: r.hold_ms }));
}

/** The state smoother's options (`state:`). */
export function stateOptions(c: Config): StateSmootherOptions {
  const s = c.state;
  return {
    minScore: s.min_score,
    hysteresis: s.hysteresis,
    minFrames: s.min_frames,
    windowFrames: s.window_frames ?? s.min_frames,
    minDwellMs: s.min_dwell_ms,
    expireAfterMs: s.expire_after_s * 1000,
    labelThresholds: s.labels,
    scoreFloor: c.inference.threshold,
  };
}

/** The smoothing of GPIO rules: the state's N of M, dwell and hysteresis (`state:`). */
export function gpioSmoothing(c: Config): GpioSmoothing {
  const s = c.state;
  return {
    minFrames: s.min_frames,
    windowFrames: s.window_frames ?? s.min_frames,
    minDwellMs: s.min_dwell_ms,
    hysteresis: s.hysteresis,
    scoreFloor: c.inference.threshold,
  };
}

/**
 * Most classes the daemon's classifier reports per frame for the smoothing.
 * A softmax output's scores sum to 1, so a class outside the 100 best
 * scores below 1/101 ≈ 0.0099: no held label is missed unless its
 * threshold − hysteresis is below that.
 */
const SMOOTHING_TOP_K = 100;

/**
 * The top-k and score threshold the daemon's classifier runs with. Wider
 * than `inference.top_k` / `inference.threshold`: a label the state or a
 * GPIO output holds keeps counting down to max(its threshold,
 * `inference.threshold`) − `state.hysteresis`, which may be below
 * `inference.threshold` or outside the top-k. Threshold: the lowest such
 * score (never above `inference.threshold`, never below 0); top-k: at least
 * 100. Predictions and the state's classes are cut back to `inference.top_k`
 * classes at or above `inference.threshold` (`reportedClasses`).
 */
export function smoothingOutput(c: Config): { readonly topK: number; readonly threshold: number } {
  const floor = c.inference.threshold;
  const thresholds = [c.state.min_score, ...Object.values(c.state.labels), ...c.gpio.rules.map((r) => r.min_score)];
  const lowestHold = Math.min(...thresholds.map((x) => Math.max(x, floor) - c.state.hysteresis));
  return { topK: Math.max(c.inference.top_k, SMOOTHING_TOP_K), threshold: Math.max(0, Math.min(floor, lowestHold)) };
}

/**
 * What is reported of a frame's classes (highest first, as the classifier
 * gives them with {@link smoothingOutput}): at most `inference.top_k`
 * classes scoring at least `inference.threshold` — predictions, the state's
 * classes and the GPIO rules' first match see only these.
 */
export function reportedClasses<T extends { readonly score: number }>(
  classes: readonly T[],
  inference: { readonly top_k: number; readonly threshold: number },
): T[] {
  const out: T[] = [];
  for (const c of classes) {
    if (out.length >= inference.top_k) break;
    if (c.score >= inference.threshold) out.push(c);
  }
  return out;
}

/**
 * The configuration as `--check-config` prints it and `request/get_config`
 * returns it: passwords hidden (also inside URLs), base topic and client id
 * resolved for the device `deviceId`.
 */
export function configForDisplay(config: Config, deviceId: string): Config {
  const identity = mqttIdentity(config, deviceId);
  return {
    ...config,
    source: { ...config.source, spec: redactUrl(config.source.spec) },
    mqtt: {
      ...config.mqtt,
      url: config.mqtt.url === null ? null : redactUrl(config.mqtt.url),
      password: config.mqtt.password ? '***' : null,
      base_topic: identity.baseTopic,
      client_id: identity.clientId,
    },
  };
}

/** What the daemon builds from a configuration, every stage's options mapped. */
export interface DaemonPlan {
  readonly source: { readonly spec: string; readonly options: SourceOptions };
  readonly capture: CapturePlan;
  readonly classifier: Omit<ClassifierOptions, 'log'>;
  /** The broker URL, or null to start an embedded broker on `embeddedPort`. */
  readonly brokerUrl: string | null;
  readonly embeddedPort: number;
  readonly publisher: Omit<MqttPublisherOptions, 'url' | 'log'>;
  readonly gpio: { readonly backend: GpioBackendKind; readonly rules: GpioRule[]; readonly smoothing: GpioSmoothing };
  readonly state: StateSmootherOptions;
  readonly snapshot: {
    readonly enabled: boolean;
    readonly width: number;
    readonly quality: number;
    /** Folder for snapshot files, or null. */
    readonly dir: string | null;
    readonly maxFiles: number;
    readonly maxBytes: number;
  };
  /** Home Assistant discovery: null when off. */
  readonly homeassistant: { readonly prefix: string; readonly deviceName: string | null; readonly watch: readonly string[] } | null;
  /** `<base>/stats` period, in ms. */
  readonly statsIntervalMs: number;
  /** Commands accepted per second; null when commands are off (`mqtt.commands: false`). */
  readonly commandRate: number | null;
  /**
   * Time without a classified frame after which GPIO outputs switch off, in
   * ms: max({@link MIN_STALL_MS}, 5 frame periods, 2 intervals in interval
   * mode), so a slow source is not taken for a stalled one.
   */
  readonly stallMs: number;
  /** `source.loop`: a looping source that ends anyway (its folder removed) is a failure. */
  readonly loop: boolean;
}

/** Maps a configuration onto every stage's options, for the device `deviceId`. */
export function daemonPlan(c: Config, deviceId: string): DaemonPlan {
  return {
    source: { spec: c.source.spec, options: sourceOptions(c) },
    capture: capturePlan(c),
    // Wider than inference.top_k/threshold for the smoothing's hysteresis; the daemon reports the narrower cut.
    classifier: { ...classifierOptions(c), ...smoothingOutput(c) },
    brokerUrl: c.mqtt.url,
    embeddedPort: c.mqtt.embedded_port,
    publisher: publisherOptions(c, deviceId),
    gpio: { backend: c.gpio.backend, rules: gpioRules(c), smoothing: gpioSmoothing(c) },
    state: stateOptions(c),
    snapshot: {
      enabled: c.snapshot.enabled,
      width: c.snapshot.width,
      quality: c.snapshot.quality,
      dir: c.snapshot.dir,
      maxFiles: c.snapshot.max_files,
      maxBytes: c.snapshot.max_bytes,
    },
    // Default on when a broker URL is set: the embedded broker is the quick start, where no Home Assistant listens.
    homeassistant:
      (c.homeassistant.enabled ?? c.mqtt.url !== null)
        ? { prefix: c.homeassistant.prefix, deviceName: c.homeassistant.device_name, watch: c.homeassistant.watch }
        : null,
    statsIntervalMs: c.mqtt.stats_interval_s * 1000,
    commandRate: c.mqtt.commands ? c.mqtt.command_rate : null,
    // An interval capture's result holds until the next capture: only a missed one switches outputs off.
    stallMs: Math.max(MIN_STALL_MS, 5000 / c.source.fps, c.source.mode === 'interval' ? 2000 * c.source.interval_s : 0),
    loop: c.source.loop,
  };
}
