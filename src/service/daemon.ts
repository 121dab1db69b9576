import { EventEmitter } from 'node:events';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Frame, FrameSource } from '../camera/frame-source.js';
import { LatestFrameSlot } from '../camera/latest-frame.js';
import { createFrameSource } from '../camera/source-spec.js';
import { classifierOptions, sourceOptions } from '../config/options.js';
import type { Config } from '../config/schema.js';
import { GpioActuator } from '../gpio/actuator.js';
import { createGpioBackend } from '../gpio/backends.js';
import { checkGpioRules, gpioRule, unknownLabels } from '../gpio/rules.js';
import { Classifier } from '../inference/classifier.js';
import type { ClassScore } from '../inference/types.js';
import { EmbeddedBroker } from '../mqtt/embedded-broker.js';
import { MqttPublisher } from '../mqtt/publisher.js';
import { StateTracker } from '../mqtt/state.js';
import { defaultBaseTopic, defaultClientId } from '../mqtt/topics.js';
import { FrameDecodeError } from '../preprocess/preprocess.js';
import { deviceId } from './device-id.js';
import { redactUrl, type Logger } from './log.js';
import type { SdNotifier } from './sd-notify.js';

/** How often `STATUS=` and the stats log line are refreshed, in ms. */
export const STATUS_INTERVAL_MS = 10_000;
/** Consecutive classification failures (other than bad frames) after which the daemon gives up: `'failed'` is emitted. */
export const MAX_CONSECUTIVE_FAILURES = 20;
/** Least time between two logged classification failures, in ms (the rest are counted). */
const FAILURE_LOG_INTERVAL_MS = 10_000;
/** Least time without a classified frame after which GPIO outputs are switched off, in ms (see `Daemon`). */
export const MIN_STALL_MS = 3_000;
/** How long `stop()` waits for the frame in flight before dropping it, in ms. */
export const STOP_IN_FLIGHT_MS = 2_000;

/** Counters of a running daemon, for `STATUS=`, logs and tests. */
export interface DaemonStats {
  /** Frames delivered by the source. */
  readonly framesIn: number;
  /** Frames classified. */
  readonly classified: number;
  /** Frames replaced by a newer one while the classifier was busy (latest frame wins). */
  readonly dropped: number;
  /** Frames that could not be decoded, by kind (`unsupported-format`, `not-an-image`, `corrupt`). */
  readonly badFrames: Readonly<Record<string, number>>;
  /** Frames whose inference failed for another reason. */
  readonly failed: number;
  /** Frames per second delivered by the source (measured). */
  readonly sourceFps: number;
  /** Frames per second classified over the last status interval. */
  readonly classifiedFps: number;
}

export interface DaemonOptions {
  readonly config: Config;
  readonly log: Logger;
  /** systemd notifier; absent outside a service (tests, `npm start` without systemd). */
  readonly notifier?: SdNotifier;
  /** Log every prediction at info level (the quick start does). Default: debug level. */
  readonly logPredictions?: boolean;
}

/**
 * The application: wires source → latest-frame slot → classifier (worker
 * thread) → state tracker, MQTT publisher and GPIO actuator, and owns their
 * lifecycle. It never calls `process.exit`; the process shell (`cli.ts`)
 * owns signals and exit codes.
 *
 * Start order: classifier (model loaded and checked), MQTT (embedded broker
 * when no URL), GPIO (outputs at their safe level), source. READY=1 is sent
 * after the first frame is classified. Stop order is the reverse, each part
 * in its own try/catch so one failure does not leave the rest running.
 *
 * Events: `'ready'` after the first classification, `'prediction'`
 * `(frame, classes)` per classified frame, `'end'` `(reason)` when a finite
 * source (replay without loop, a video file) has ended and the last frame
 * is done, `'failed'` `(error)` after {@link MAX_CONSECUTIVE_FAILURES}
 * classifications in a row failed for a reason other than a bad frame.
 */
export class Daemon extends EventEmitter {
  private readonly config: Config;
  private readonly log: Logger;
  private readonly notifier: SdNotifier | undefined;
  private readonly logPredictions: boolean;

  private classifier: Classifier | undefined;
  private broker: EmbeddedBroker | undefined;
  private publisher: MqttPublisher | undefined;
  private gpio: GpioActuator | undefined;
  private source: FrameSource | undefined;
  private readonly slot = new LatestFrameSlot<Frame>();
  private readonly state = new StateTracker();
  private loop: Promise<void> | undefined;
  private statusTimer: NodeJS.Timeout | undefined;
  private stallTimer: NodeJS.Timeout | undefined;
  private stalled = false;
  private stopping = false;
  private stopped: Promise<void> | undefined;
  private sourceEnded: string | undefined;
  private modelName = '';

  private classified = 0;
  private failed = 0;
  private consecutiveFailures = 0;
  private lastFailureLoggedAt = -Infinity;
  private readonly badFrames: Record<string, number> = {};
  private lastClassifiedAt = 0;
  private classifiedAtLastStatus = 0;
  private lastStatusAt = 0;
  private classifiedFps = 0;
  private isReady = false;

  constructor(options: DaemonOptions) {
    super();
    this.config = options.config;
    this.log = options.log;
    this.notifier = options.notifier;
    this.logPredictions = options.logPredictions ?? false;
  }

  /** The MQTT base topic in use (known after `start()`). */
  baseTopic = '';
  /** The broker URL in use: the configured one or the embedded broker's (known after `start()`). */
  brokerUrl = '';

  /**
   * Starts every part in order and the processing loop; resolves when frames
   * are flowing into the classifier (not when the first one is classified —
   * listen for `'ready'`).
   * @throws the first part's start-up error, after stopping what had started.
   */
  async start(): Promise<void> {
    const c = this.config;
    try {
      this.classifier = await Classifier.open(classifierOptions(c, this.log));
      this.abortIfStopping();
      // The file name, not the metadata name: it tells model variants (quant, edgetpu, ...) apart across a fleet.
      this.modelName = path.basename(this.classifier.modelPath, '.tflite');

      const id = deviceId();
      this.baseTopic = c.mqtt.base_topic ?? defaultBaseTopic(id);
      let url = c.mqtt.url;
      if (url === null) {
        this.broker = new EmbeddedBroker({ port: c.mqtt.embedded_port, log: this.log });
        await this.broker.start();
        this.abortIfStopping();
        url = this.broker.url;
      }
      this.brokerUrl = url;
      this.publisher = new MqttPublisher({
        url,
        clientId: c.mqtt.client_id ?? defaultClientId(id, this.baseTopic),
        username: c.mqtt.username ?? undefined,
        password: c.mqtt.password ?? undefined,
        keepalive: c.mqtt.keepalive,
        qos: c.mqtt.qos,
        tls: {
          ca: c.mqtt.tls.ca ?? undefined,
          cert: c.mqtt.tls.cert ?? undefined,
          key: c.mqtt.tls.key ?? undefined,
          rejectUnauthorized: c.mqtt.tls.reject_unauthorized,
        },
        baseTopic: this.baseTopic,
        predictionMinIntervalMs: c.mqtt.prediction_interval_ms,
        reconnectPeriodMs: c.mqtt.reconnect_period_ms,
        connectTimeoutMs: c.mqtt.connect_timeout_ms,
        waitForConnect: false,
        log: this.log,
      });
      await this.publisher.start();
      this.abortIfStopping();

      const rules = checkGpioRules(
        c.gpio.rules.map((r, i) =>
          gpioRule({ pin: r.pin, labels: r.labels, minScore: r.min_score, activeLow: r.active_low, holdMs: r.hold_ms }, `gpio.rules[${i}]`),
        ),
      );
      const modelLabels = this.classifier.labels;
      for (const rule of rules) {
        const unknown = modelLabels.length > 0 ? unknownLabels(rule, modelLabels) : [];
        if (unknown.length > 0) {
          this.log.warn({ pin: rule.pin, labels: unknown }, `GPIO ${rule.pin}: the model has no class named ${unknown.map((l) => JSON.stringify(l)).join(', ')}: that label will never switch the output`);
        }
      }
      const backend = await createGpioBackend(c.gpio.backend, { log: this.log });
      this.gpio = new GpioActuator({
        rules,
        backend,
        log: this.log,
        onChange: (pin, level) => this.publisher?.publishGpio(pin, level),
      });
      await this.gpio.start();
      this.abortIfStopping();

      this.source = createFrameSource(
        c.source.spec,
        sourceOptions(c),
        this.log,
      );
      this.loop = this.processFrames();
      await this.source.start(
        (frame) => this.slot.offer(frame),
        (reason) => {
          this.sourceEnded = reason;
          this.log.info({ source: this.source?.description, reason }, 'source ended');
          this.slot.close();
        },
      );
      this.log.info({ source: this.source.description, broker: redactUrl(this.brokerUrl), base_topic: this.baseTopic }, 'running');
    } catch (err) {
      // stop() may already have run while start-up was under way: run it again for the parts made since.
      this.stopped = undefined;
      await this.stop();
      throw err;
    }

    this.lastStatusAt = performance.now();
    this.statusTimer = setInterval(() => this.reportStatus(), STATUS_INTERVAL_MS);
    this.statusTimer.unref();
    // A source that stalls (camera unplugged, stream frozen) must not leave a relay on: after
    // max(MIN_STALL_MS, 5 frame periods) without a classified frame the outputs see an empty frame,
    // so they switch off once their hold_ms has passed.
    const stallMs = Math.max(MIN_STALL_MS, 5000 / c.source.fps);
    this.stallTimer = setInterval(() => {
      if (this.lastClassifiedAt === 0 || this.stalled) return;
      const idle = performance.now() - this.lastClassifiedAt;
      if (idle < stallMs) return;
      this.stalled = true;
      this.log.warn({ source: this.source?.description }, `no frame classified for ${(idle / 1000).toFixed(1)} s: GPIO outputs off until frames come back`);
      this.gpio?.update([]);
    }, Math.min(1000, stallMs / 2));
    this.stallTimer.unref();
    const watchdogMs = this.notifier?.watchdogIntervalMs();
    if (this.notifier && watchdogMs !== undefined) {
      // Healthy while a frame was classified within the last full watchdog period.
      this.notifier.startWatchdog(() => performance.now() - this.lastClassifiedAt < 2 * watchdogMs);
    }
  }

  /** Ends a start-up that `stop()` interrupted (SIGTERM while the model loads). */
  private abortIfStopping(): void {
    if (this.stopping) throw new Error('stopped during start-up');
  }

  /** The processing loop: take the latest frame, classify, publish; one frame at a time. */
  private async processFrames(): Promise<void> {
    for (;;) {
      const frame = await this.slot.next();
      if (frame === null) break;
      await this.handleFrame(frame);
    }
    if (this.sourceEnded !== undefined && !this.stopping) this.emit('end', this.sourceEnded);
  }

  private async handleFrame(frame: Frame): Promise<void> {
    const classifier = this.classifier;
    if (!classifier) return;
    let classes: ClassScore[];
    try {
      const result = await classifier.classify(frame.data, frame.file);
      classes = result.classes;
      const totalMs = performance.now() - frame.arrivedAt;
      this.classified += 1;
      this.consecutiveFailures = 0;
      if (this.stalled) {
        this.stalled = false;
        this.log.info('frames are being classified again');
      }
      this.lastClassifiedAt = performance.now();
      const dropped = this.slot.stats().dropped;
      const timings = { ...result.timings, total_ms: totalMs };
      this.publisher?.publishPrediction({
        seq: frame.seq,
        source: this.source?.description ?? '',
        model: this.modelName,
        classes,
        timings,
        dropped,
      });
      const state = this.state.update(classes);
      if (state) {
        this.publisher?.publishState(state);
        this.log.info({ label: state.label, score: state.score }, 'state changed');
      }
      this.gpio?.update(classes);
      const summary = classes.map((c) => `${c.label} ${c.score.toFixed(3)}`).join(', ') || '(nothing above threshold)';
      const fields = { seq: frame.seq, file: frame.file ? path.basename(frame.file) : undefined, ms: Math.round(timings.total_ms) };
      if (this.logPredictions) this.log.info(fields, summary);
      else this.log.debug(fields, summary);
      this.emit('prediction', frame, classes);
      if (!this.isReady) {
        this.isReady = true;
        this.notifier?.ready(this.statusText());
        this.log.info({ ms: Math.round(totalMs) }, 'first frame classified: ready');
        this.emit('ready');
      }
    } catch (err) {
      if (err instanceof FrameDecodeError) {
        const seen = this.badFrames[err.kind] ?? 0;
        this.badFrames[err.kind] = seen + 1;
        // Once per kind, so a broken camera does not flood the journal; the counts go into STATUS= and stats.
        if (seen === 0) this.log.warn({ seq: frame.seq, kind: err.kind }, `frame dropped: ${err.message} (further ${err.kind} frames are counted, not logged)`);
      } else {
        this.failed += 1;
        this.consecutiveFailures += 1;
        const now = performance.now();
        if (now - this.lastFailureLoggedAt >= FAILURE_LOG_INTERVAL_MS) {
          this.lastFailureLoggedAt = now;
          this.log.error({ seq: frame.seq, err, failed: this.failed }, `classification failed: ${(err as Error).message}`);
        }
        // A dead interpreter worker fails every frame: give up so systemd restarts the service.
        if (this.consecutiveFailures === MAX_CONSECUTIVE_FAILURES) this.emit('failed', err);
      }
    }
  }

  private statusText(): string {
    const s = this.stats();
    const bad = Object.values(s.badFrames).reduce((a, b) => a + b, 0);
    const mqtt = this.publisher?.connected ? 'mqtt connected' : 'mqtt offline';
    return `${s.sourceFps.toFixed(1)} fps in, ${s.classifiedFps.toFixed(1)} fps classified, ${s.dropped} dropped, ${bad} bad, ${mqtt}`;
  }

  private reportStatus(): void {
    const now = performance.now();
    const elapsed = (now - this.lastStatusAt) / 1000;
    if (elapsed > 0) this.classifiedFps = (this.classified - this.classifiedAtLastStatus) / elapsed;
    this.classifiedAtLastStatus = this.classified;
    this.lastStatusAt = now;
    const text = this.statusText();
    this.notifier?.status(text);
    this.log.info({ stats: this.stats(), mqtt: this.publisher?.stats() }, text);
  }

  /** Current counters. */
  stats(): DaemonStats {
    const slot = this.slot.stats();
    return {
      framesIn: slot.offered,
      classified: this.classified,
      dropped: slot.dropped,
      badFrames: { ...this.badFrames },
      failed: this.failed,
      sourceFps: this.source?.stats().fps ?? 0,
      classifiedFps: this.classifiedFps,
    };
  }

  /**
   * Stops everything in reverse order: the source (no child left),
   * the frame in flight (finished or dropped after {@link STOP_IN_FLIGHT_MS}),
   * GPIO outputs to their safe level and released, `offline` published, the
   * embedded broker, the worker thread. Idempotent; never throws — the first
   * failure is logged and rethrown after everything else has stopped.
   */
  stop(): Promise<void> {
    this.stopped ??= this.doStop();
    return this.stopped;
  }

  private async doStop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.statusTimer);
    clearInterval(this.stallTimer);
    let firstError: unknown;
    const step = async (name: string, fn: () => Promise<void> | void) => {
      try {
        await fn();
      } catch (err) {
        firstError ??= err;
        this.log.error({ err }, `stopping ${name} failed`);
      }
    };
    await step('source', () => this.source?.stop());
    this.slot.close();
    await step('frame in flight', async () => {
      if (!this.loop) return;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          this.log.warn(`frame in flight not finished after ${STOP_IN_FLIGHT_MS} ms: dropped`);
          resolve();
        }, STOP_IN_FLIGHT_MS);
      });
      await Promise.race([this.loop, timeout]);
      clearTimeout(timer);
    });
    await step('gpio', () => this.gpio?.stop());
    await step('mqtt', () => this.publisher?.stop());
    await step('embedded broker', () => this.broker?.stop());
    await step('classifier', () => this.classifier?.close());
    if (firstError !== undefined) throw firstError;
  }
}
