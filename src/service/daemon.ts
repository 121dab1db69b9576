import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { CaptureSource, POWER_SAVE_INTERVAL_S } from '../camera/capture.js';
import type { FrameSource } from '../camera/frame-source.js';
import { createFrameSource, parseSourceSpec, type SourceOptions } from '../camera/source-spec.js';
import { stallTimeoutMs } from '../camera/stall-watchdog.js';
import { configForDisplay, type DaemonPlan, daemonPlan, gpioSmoothing, reportedClasses, smoothingOutput, stateOptions } from '../config/options.js';
import type { Config } from '../config/schema.js';
import { deviceId } from '../core/device-id.js';
import { CancelledError, IntervalTimer, type Lifecycle, NEVER_ABORTED, Parts } from '../core/lifecycle.js';
import { componentLogger, type Logger, LogThrottle } from '../core/log.js';
import { PROBLEM, type Problem, ProblemRegistry } from '../core/problems.js';
import { redactUrl } from '../core/redact.js';
import type { Classification, Frame } from '../core/types.js';
import { GpioActuator } from '../gpio/actuator.js';
import { createGpioBackend, type GpioBackend, VirtualBackend } from '../gpio/backends.js';
import { createGpioInputBackend, type GpioInputBackend, GpioTrigger } from '../gpio/input.js';
import { unknownLabelWarnings } from '../gpio/rules.js';
import { Classifier, type ClassifierOptions } from '../inference/classifier.js';
import type { FramePipeline } from '../inference/pipeline.js';
import { FrameDecodeError } from '../inference/preprocess/preprocess.js';
import { rawFrameToRgb } from '../inference/preprocess/raw-to-tensor.js';
import type { Slot } from '../inference/session.js';
import { commandTopics, type IncomingMessage, type ReplyTo, type RequestName } from '../mqtt/commands.js';
import { buildDiscovery } from '../mqtt/discovery.js';
import { EmbeddedBroker } from '../mqtt/embedded-broker.js';
import { thisInstance } from '../mqtt/instance.js';
import { MqttPublisher } from '../mqtt/publisher.js';
import { StateSmoother, statePayload } from '../mqtt/state.js';
import { defaultBaseTopic, type Prediction, predictionPayload, type ResponsePayload, type StatsPayload } from '../mqtt/topics.js';
import { encodeSnapshot, type RawImage } from '../snapshot/encode.js';
import { SnapshotFolder } from '../snapshot/folder.js';
import { LatencyWindow } from '../stats/latency.js';
import { SystemSampler } from '../stats/sampler.js';
import { ANSWERED_LATER, CommandHandler } from './command-handler.js';
import type { PipelineHealth } from './health-file.js';
import { type CheckedPatch, LiveSettings } from './live-settings.js';
import { type SdNotifier, SdWatchdog } from './sd-notify.js';

/** edge-classifier's version, from package.json (Home Assistant's device and origin blocks). */
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** How long `request/classify_now` waits for a frame when none has arrived yet, in ms. */
const CLASSIFY_NOW_WAIT_MS = 5_000;

/** The board from the device tree (`Raspberry Pi 4 Model B Rev 1.4`), or undefined off a Pi. */
function boardModel(): string | undefined {
  try {
    return readFileSync('/proc/device-tree/model', 'utf8').replace(/\0/g, '').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** How often `STATUS=` and the stats log line are refreshed, in ms. */
const STATUS_INTERVAL_MS = 10_000;
/** Consecutive classification failures (other than bad frames) after which the daemon gives up (`onFailed`). */
export const MAX_CONSECUTIVE_FAILURES = 20;
/** Least time between two logged classification failures, in ms (the rest are counted). */
const FAILURE_LOG_INTERVAL_MS = 10_000;
/** How long `stop()` waits for the frame in flight before dropping it, in ms. */
const STOP_IN_FLIGHT_MS = 2_000;

/** Counters of a running daemon, for `STATUS=`, logs and tests. */
interface DaemonStats {
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
  /** Frames that arrived while classification was paused. */
  readonly pausedDropped: number;
  /** Frames per second delivered by the source (measured). */
  readonly sourceFps: number;
  /** Frames per second classified over the last status interval. */
  readonly classifiedFps: number;
  /** Frames the motion gate skipped (no inference). */
  readonly motionSkipped: number;
  /** Restarts of the source's camera process, and how many of them the stall watchdog caused. */
  readonly sourceRestarts: number;
  readonly sourceStalls: number;
}

export interface DaemonOptions {
  readonly config: Config;
  readonly log: Logger;
  /** systemd notifier (owned by the supervisor); absent outside a service. */
  readonly notifier?: SdNotifier;
  /** Log every prediction at info level (the quick start does). Default: debug level. */
  readonly logPredictions?: boolean;
  /**
   * Called once when the source ended by itself and its last frame is done:
   * a finite source (`source.loop: false`) is the job done, `failure` false;
   * a looping one that ends anyway (its folder removed) is a failure.
   */
  readonly onEnd?: (reason: string, failure: boolean) => void;
  /** Called once when the first frame is classified (READY=1 is sent then). */
  readonly onReady?: () => void;
  /** Called after every change of the problem list (the health file is written at once then). */
  readonly onProblemsChanged?: () => void;
  /** Called once after {@link MAX_CONSECUTIVE_FAILURES} classifications in a row failed for a reason other than a bad frame. */
  readonly onFailed?: (err: Error) => void;
  /** Builds the frame source (default: `createFrameSource`); tests hand in an array-backed one. */
  readonly createSource?: (spec: string, options: SourceOptions, log: Logger) => FrameSource;
  /** Builds the classifier (default: `new Classifier`). */
  readonly createClassifier?: (options: ClassifierOptions) => Classifier;
  /** The GPIO backend (default: the one `gpio.backend` names). */
  readonly gpioBackend?: GpioBackend;
  /** The backend of the trigger input (default: the one `gpio.backend` names). */
  readonly gpioInputBackend?: GpioInputBackend;
  /** The device id for default topics (default: `deviceId()`). */
  readonly deviceId?: string;
  /** The config file the configuration came from: live settings are persisted into it when asked. */
  readonly configFile?: string;
  /**
   * `request/reload` over MQTT: the supervisor reloads (as on SIGHUP) and
   * answers on `reply` through the daemon then running. Without it the
   * request is refused.
   */
  readonly onReloadRequest?: (reply: ReplyTo, id: string | number | undefined) => void;
  /** Machine readings for `<base>/stats` (default: this machine's). */
  readonly sampler?: SystemSampler;
}

/**
 * The application: wires source → frame pipeline → classifier (engine in a
 * worker thread) → state tracker, MQTT publisher and GPIO actuator, and owns their
 * lifecycle. It never calls `process.exit` and handles no signal; the
 * supervisor owns reload and shutdown, `cli.ts` signals and exit codes.
 *
 * Every part implements `Lifecycle` and is started through `Parts` in this
 * order: classifier (model loaded and checked), embedded broker (when no
 * URL), MQTT publisher, GPIO (outputs at their safe level), frame loop,
 * source, status timer, stall timer, systemd watchdog. `stop()` stops them in
 * reverse, each in isolation; a `stop()` during `start()` cancels the start
 * between parts and stops what had started. READY=1 is sent after the first
 * frame is classified. From the moment `stop()` is called no result reaches
 * MQTT or GPIO.
 */
export class Daemon implements Lifecycle {
  readonly name = 'daemon';
  private readonly options: DaemonOptions;
  private readonly log: Logger;
  private readonly plan: DaemonPlan;
  private readonly parts: Parts;
  private readonly abort = new AbortController();
  private starting: Promise<void> | undefined;
  private stopped: Promise<void> | undefined;
  private stopping = false;

  private classifier: Classifier | undefined;
  private publisher: MqttPublisher | undefined;
  private gpio: GpioActuator | undefined;
  private source: CaptureSource | undefined;
  private frames: FramePipeline<Frame, Slot, Classification> | undefined;
  private readonly state: StateSmoother;
  private readonly settings: LiveSettings;
  /** The daemon's problems (stalled or frozen camera, camera errors, Edge TPU fallback, ...), raised and cleared by the parts; `<base>/problems` mirrors it, health checks read it. */
  readonly problems = new ProblemRegistry();
  private commands: CommandHandler | undefined;
  private snapshots: SnapshotFolder | undefined;
  private readonly sampler: SystemSampler;
  private readonly inferenceMs = new LatencyWindow();
  private readonly preprocessMs = new LatencyWindow();
  private readonly startedAt = new Date();
  private readonly startedMs = performance.now();
  /** The latest frame that arrived (for `request/snapshot` and `request/classify_now`). */
  private lastFrame: Frame | undefined;
  /** Snapshot encoding: one at a time, the latest request waits (older ones are replaced). */
  private snapshotBusy = false;
  private snapshotNext: { frame: Frame; label: string | null; time: Date } | undefined;
  private readonly snapshotErrors = new LogThrottle(60_000);
  private pausedDropped = 0;
  private sourceEnded: string | undefined;
  private modelName = '';
  private stalled = false;
  private isReady = false;

  private classified = 0;
  private failed = 0;
  private consecutiveFailures = 0;
  private readonly failureLog = new LogThrottle(FAILURE_LOG_INTERVAL_MS);
  private readonly badFrames: Record<string, number> = {};
  private lastClassifiedAt = 0;
  /** Wall-clock time of the last classified frame, ISO 8601, for the health file. */
  private lastClassifiedIso: string | null = null;
  /** Last frame classified or skipped by the motion gate (a frame dealt with). */
  private lastHandledAt = 0;
  private classifiedAtLastStatus = 0;
  private lastStatusAt = 0;
  private classifiedFps = 0;

  /** The MQTT base topic in use (known after `start()`). */
  baseTopic = '';
  /** The broker URL in use: the configured one or the embedded broker's (known after `start()`). */
  brokerUrl = '';

  /** Maps the configuration onto every stage's options (`config/options.ts`); no I/O but reading the device id. */
  constructor(options: DaemonOptions) {
    this.options = options;
    this.log = componentLogger(options.log, 'daemon');
    this.parts = new Parts(this.log);
    this.id = options.deviceId ?? deviceId();
    this.plan = daemonPlan(options.config, this.id);
    this.state = new StateSmoother(this.plan.state);
    this.settings = new LiveSettings(options.config);
    this.sampler = options.sampler ?? new SystemSampler();
    if (options.onProblemsChanged) this.problems.onChange(options.onProblemsChanged);
  }

  private readonly id: string;

  /** The current problems, oldest first (see `ProblemRegistry`). */
  problemList(): readonly Problem[] {
    return this.problems.list();
  }

  /**
   * Starts every part in order; resolves when frames are flowing into the
   * classifier (READY=1 follows with the first classified frame). An abort of
   * `signal`, or `stop()`, cancels the start between parts.
   * @throws the first part's start-up error (or CancelledError), after
   *   stopping what had started.
   */
  start(signal: AbortSignal = NEVER_ABORTED): Promise<void> {
    if (this.starting) throw new Error('Daemon.start() called twice: build a new Daemon to start again');
    if (signal.aborted) this.abort.abort(signal.reason);
    else signal.addEventListener('abort', () => this.abort.abort(signal.reason), { once: true });
    this.starting = this.startParts(this.abort.signal).catch(async (err: unknown) => {
      await this.parts.stop().catch(() => {});
      throw err;
    });
    return this.starting;
  }

  /** The start-up, as a list of steps. */
  private async startParts(signal: AbortSignal): Promise<void> {
    const p = this.plan;
    const o = this.options;
    const log = o.log;
    const sourceKind = parseSourceSpec(p.source.spec, p.source.options.rotation).kind;
    // Camera sources crop the ROI themselves; replayed files are cropped by the preprocessing.
    const roi = sourceKind === 'replay' && p.capture.roi ? { roi: p.capture.roi } : {};
    const classifierOptions = { ...p.classifier, ...roi, log: componentLogger(log, 'inference') };
    const classifier = await this.parts.start(o.createClassifier?.(classifierOptions) ?? new Classifier(classifierOptions), signal);
    this.classifier = classifier;
    // The file name, not the metadata name: it tells model variants (quant, edgetpu, ...) apart across a fleet.
    this.modelName = path.basename(classifier.modelPath, '.tflite');
    for (const w of unknownLabelWarnings(p.gpio.rules, classifier.labels)) {
      this.log.warn({ pin: w.pin, labels: w.labels }, w.message);
      this.problems.raise(`${PROBLEM.gpioLabelsMissing}:${w.pin}`, w.message, 'use labels as the labels file writes them (see `edge-classifier inspect`)');
    }
    this.checkWatchLabels(classifier.labels);
    if (p.classifier.delegate === 'edgetpu' && classifier.backend !== 'edgetpu') {
      this.problems.raise(
        PROBLEM.edgetpuFallback,
        `the Edge TPU cannot be used: ${path.basename(classifier.modelPath)} runs on the CPU instead`,
        'plug in the Coral accelerator and install the Edge TPU runtime (libedgetpu1-std), then reload; see the log for why it failed',
        'warning',
      );
    }

    const mqttLog = componentLogger(log, 'mqtt');
    this.brokerUrl = p.brokerUrl ?? (await this.parts.start(new EmbeddedBroker({ port: p.embeddedPort, log: mqttLog }), signal)).url;
    this.baseTopic = p.publisher.baseTopic;
    const ha = p.homeassistant;
    const haStatus = ha === null ? undefined : `${ha.prefix}/status`;
    const gpioPins = p.gpio.rules.map((r) => r.pin);
    const subscriptions = [...(p.commandRate !== null ? commandTopics(this.baseTopic, gpioPins) : []), ...(haStatus !== undefined ? [haStatus] : [])];
    const publisher = new MqttPublisher({
      ...p.publisher,
      url: this.brokerUrl,
      log: mqttLog,
      problems: this.problems,
      subscriptions,
      onMessage: (msg) => this.onMessage(msg, haStatus),
      // Only a broker someone else runs can have another daemon on it.
      ...(p.brokerUrl !== null ? { instance: thisInstance(this.startedAt) } : {}),
    });
    this.publisher = publisher;
    // Retained values before connecting, so the first connection sends them: discovery first, then a
    // fresh problem list and settings, and an unknown state (nothing stale from a previous run stays).
    if (ha !== null) void publisher.publishExternalRetained(this.discovery().topic, this.discovery().payload);
    publisher.publishSettings(this.settings.payload());
    publisher.publishProblems({ time: new Date().toISOString(), problems: this.problems.list() });
    this.problems.onChange((list) => publisher.publishProblems({ time: new Date().toISOString(), problems: list }));
    publisher.publishState(statePayload(this.state.markUnknown(this.startedAt)));
    if (p.commandRate !== null) {
      this.commands = new CommandHandler({
        base: this.baseTopic,
        settings: this.settings,
        ...(o.configFile !== undefined ? { configFile: o.configFile } : {}),
        ratePerS: p.commandRate,
        log: mqttLog,
        problems: this.problems,
        apply: (checked) => this.applySettings(checked),
        request: (command, reply, id) => this.request(command, reply, id),
        respond: (reply, payload) => publisher.respond(reply, payload),
      });
    }
    if (p.snapshot.dir !== null) this.snapshots = new SnapshotFolder({ dir: p.snapshot.dir, maxFiles: p.snapshot.maxFiles, maxBytes: p.snapshot.maxBytes });
    await this.parts.start(publisher, signal);
    void this.publishStats();

    const gpioLog = componentLogger(log, 'gpio');
    // Without rules no pin is driven: no backend to load (a Pi whose onoff is broken but drives nothing runs).
    const backend =
      o.gpioBackend ?? (p.gpio.rules.length === 0 ? new VirtualBackend({ log: gpioLog }) : await createGpioBackend(p.gpio.backend, { log: gpioLog }));
    const onChange = (pin: number, level: 0 | 1) => publisher.publishGpio(pin, level);
    this.gpio = await this.parts.start(new GpioActuator({ rules: p.gpio.rules, backend, log: gpioLog, onChange, smoothing: p.gpio.smoothing }), signal);

    const cameraLog = componentLogger(log, 'camera');
    const size = classifier.inputSize;
    const sourceOptions: SourceOptions = {
      ...p.source.options,
      ...(size ? { model: { ...size, resize: p.classifier.resize } } : {}),
      stallTimeoutMs: p.source.options.stallTimeoutMs ?? stallTimeoutMs(p.source.options.fps),
      problems: this.problems,
    };
    const capture = p.capture;
    const source = new CaptureSource((o.createSource ?? createFrameSource)(p.source.spec, sourceOptions, cameraLog), {
      mode: capture.mode,
      powerSave: sourceKind === 'rpicam' && capture.mode.kind === 'interval' && capture.intervalS >= POWER_SAVE_INTERVAL_S,
      // Replayed folders and video files may show one picture for long: not a frozen camera.
      frozenAfterMs: sourceKind === 'replay' || sourceKind === 'video' ? 0 : capture.frozenAfterMs,
      ...(capture.motion ? { motion: capture.motion } : {}),
      problems: this.problems,
      log: cameraLog,
    });
    // Frame N+1 is decoded into the engine's other input buffer while N is in inference; latest frame wins.
    const frames = classifier.pipeline<Frame>(
      (frame, result) => this.handleResult(frame, result),
      (frame, err) => this.handleFailure(frame, err),
    );
    this.frames = frames;
    const loop = new FrameLoop(frames, () => this.loopEnded(), this.log);
    source.listen(
      (frame) => {
        // Kept for request/snapshot and request/classify_now, also while paused.
        this.lastFrame = frame;
        if (this.settings.paused) this.pausedDropped += 1;
        else frames.offer(frame);
      },
      (reason) => {
        this.sourceEnded = reason;
        this.log.info({ source: source.description, reason }, 'source ended');
        loop.end();
      },
      // Trigger mode classifies nothing until a trigger: frames flowing is what makes the daemon ready.
      () => {
        if (capture.mode.kind === 'trigger') this.markReady('frames flow, waiting for a trigger');
      },
    );
    this.source = source;
    await this.parts.start(loop, signal);
    await this.parts.start(source, signal);
    if (capture.trigger) {
      const inputs = o.gpioInputBackend ?? (await createGpioInputBackend(p.gpio.backend, { log: gpioLog }));
      await this.parts.start(new GpioTrigger(inputs, capture.trigger.pin, capture.trigger.input, () => this.trigger(), gpioLog), signal);
    } else if (capture.mode.kind === 'trigger') {
      this.log.warn('source.mode is trigger but source.trigger.pin is null: only MQTT commands or the API start a burst');
    }

    this.lastStatusAt = performance.now();
    await this.parts.start(new IntervalTimer('status timer', STATUS_INTERVAL_MS, () => this.reportStatus(), this.log), signal);
    await this.parts.start(new IntervalTimer('stall timer', Math.min(1000, p.stallMs / 2), () => this.checkStall(), this.log), signal);
    await this.parts.start(new IntervalTimer('stats timer', p.statsIntervalMs, () => void this.publishStats(), this.log), signal);
    const notifier = o.notifier;
    const watchdogMs = notifier?.watchdogIntervalMs();
    if (notifier && watchdogMs !== undefined) {
      // Healthy while frames are being handled: classified (or skipped by the motion gate) within two watchdog
      // periods; in interval and trigger modes, while the camera delivers or sleeps between captures on purpose.
      // Paused on request is healthy too: no frame is classified then on purpose.
      const continuous = capture.mode.kind === 'continuous';
      await this.parts.start(
        new SdWatchdog(notifier, () => {
          if (this.settings.paused) return true;
          const now = performance.now();
          return continuous ? now - this.lastHandled() < 2 * watchdogMs : source.alive(now, 2 * watchdogMs);
        }),
        signal,
      );
    }
    this.log.info({ source: source.description, broker: redactUrl(this.brokerUrl), base_topic: this.baseTopic, parts: this.parts.names() }, 'running');
  }

  /**
   * A source that stalls (camera unplugged, stream frozen) must not leave a
   * relay on: after `stallMs` without a classified frame the outputs see an
   * empty frame, so they switch off once their hold_ms has passed. The
   * same timer expires the state and ends a command flood that stopped.
   */
  private checkStall(): void {
    if (this.stopping) return;
    // A command flood that stopped is over without waiting for the next command.
    this.commands?.tick();
    const expired = this.state.expire();
    if (expired) {
      this.publisher?.publishState(statePayload(expired));
      this.log.info({ expire_after_s: this.settings.current.state.expire_after_s }, 'no frame classified lately: state unknown');
    }
    const last = this.lastHandled();
    if (last === 0 || this.stalled || this.settings.paused) return;
    const idle = performance.now() - last;
    if (idle < this.plan.stallMs) return;
    this.stalled = true;
    const source = this.source?.description ?? this.plan.source.spec;
    const what = `no frame classified for ${(idle / 1000).toFixed(1)} s: GPIO outputs off until frames come back`;
    this.gpio?.idle();
    // Between triggers nothing is classified on purpose: not a problem.
    if (this.plan.capture.mode.kind === 'trigger') {
      this.log.debug(what);
      return;
    }
    this.log.warn({ source }, what);
    this.problems.raise(
      PROBLEM.sourceStalled,
      `no frame classified from ${source} for more than ${(this.plan.stallMs / 1000).toFixed(1)} s`,
      'check the camera (cable, power, another program holding it) or the stream; camera programs are restarted by themselves, and the state expires per state.expire_after_s',
      'error',
    );
  }

  /** When a frame was last dealt with: classified, or skipped by the motion gate (ms, 0: never). */
  private lastHandled(): number {
    return Math.max(this.lastHandledAt, this.source?.lastSkippedAt ?? 0);
  }

  /**
   * Starts a burst of classified frames in trigger mode (the GPIO trigger
   * input calls it; an MQTT command may). Returns false when the daemon is
   * not running in trigger mode.
   */
  trigger(): boolean {
    if (this.stopping || !this.source) return false;
    return this.source.trigger();
  }

  private markReady(status: string): void {
    if (this.isReady) return;
    this.isReady = true;
    const mqtt = this.publisher?.connected ? 'mqtt connected' : 'mqtt offline';
    this.options.notifier?.ready(`${status}, ${mqtt}`);
    this.log.info(`${status}: ready`);
  }

  private loopEnded(): void {
    if (this.sourceEnded === undefined || this.stopping) return;
    if (this.plan.loop) this.log.error({ reason: this.sourceEnded }, 'the source ended although source.loop is on');
    this.options.onEnd?.(this.sourceEnded, this.plan.loop);
  }

  private handleResult(frame: Frame, result: Classification): void {
    // Stop has begun (or classification was paused) while this frame was in flight: its result must not switch an output or reach MQTT.
    if (this.stopping || this.settings.paused) return;
    // The classifier reports more for the smoothing's hysteresis (see smoothingOutput); published is the usual cut.
    const classes = reportedClasses(result.classes, this.settings.current.inference);
    const totalMs = performance.now() - frame.arrivedAt;
    this.inferenceMs.add(result.timings.inference_ms);
    this.preprocessMs.add(result.timings.preprocess_ms);
    this.classified += 1;
    this.consecutiveFailures = 0;
    if (this.stalled) {
      this.stalled = false;
      this.problems.clear(PROBLEM.sourceStalled);
      this.log.info('frames are being classified again');
    }
    this.lastClassifiedAt = performance.now();
    this.lastClassifiedIso = new Date().toISOString();
    this.lastHandledAt = this.lastClassifiedAt;
    const timings = { ...result.timings, total_ms: totalMs };
    this.publisher?.publishPrediction({
      seq: frame.seq,
      source: this.source?.description ?? '',
      model: this.modelName,
      classes,
      timings,
      dropped: this.frames?.stats().dropped ?? 0,
    });
    const state = this.state.update(classes, new Date(), performance.now(), result.classes);
    if (state) {
      this.publisher?.publishState(statePayload(state));
      this.log.info({ status: state.status, label: state.label, score: state.score }, 'state changed');
      if (this.plan.snapshot.enabled) this.takeSnapshot(frame, state.label, state.since);
    }
    this.gpio?.update(classes, performance.now(), result.classes);
    const summary = classes.map((c) => `${c.label} ${c.score.toFixed(3)}`).join(', ') || '(nothing above threshold)';
    const fields = { seq: frame.seq, file: frame.file ? path.basename(frame.file) : undefined, ms: Math.round(timings.total_ms) };
    if (this.options.logPredictions) this.log.info(fields, summary);
    else this.log.debug(fields, summary);
    if (!this.isReady) {
      this.isReady = true;
      // No rate can be measured from one frame: READY's status says what was asked and how long the first frame took.
      const mqtt = this.publisher?.connected ? 'mqtt connected' : 'mqtt offline';
      this.options.notifier?.ready(`first frame classified in ${Math.round(totalMs)} ms, source asked for ${this.plan.source.options.fps} fps, ${mqtt}`);
      this.log.info({ ms: Math.round(totalMs) }, 'first frame classified: ready');
      this.options.onReady?.();
    }
  }

  private handleFailure(frame: Frame, err: unknown): void {
    if (this.stopping) return;
    if (err instanceof FrameDecodeError) {
      const seen = this.badFrames[err.kind] ?? 0;
      this.badFrames[err.kind] = seen + 1;
      // Once per kind, so a broken camera does not flood the journal; the counts go into STATUS= and stats.
      if (seen === 0) this.log.warn({ seq: frame.seq, kind: err.kind }, `frame dropped: ${err.message} (further ${err.kind} frames are counted, not logged)`);
      return;
    }
    this.failed += 1;
    this.consecutiveFailures += 1;
    if (this.failureLog.allow()) this.log.error({ seq: frame.seq, err, failed: this.failed }, `classification failed: ${(err as Error).message}`);
    // A dead interpreter worker fails every frame: give up so systemd restarts the service.
    if (this.consecutiveFailures === MAX_CONSECUTIVE_FAILURES) this.options.onFailed?.(err as Error);
  }

  /** The Home Assistant discovery message of this daemon (deterministic). */
  private discovery(): { topic: string; payload: string } {
    const ha = this.plan.homeassistant!;
    const board = boardModel();
    return buildDiscovery({
      prefix: ha.prefix,
      deviceId: this.id,
      defaultBase: defaultBaseTopic(this.id),
      topics: this.publisher!.topics,
      deviceName: ha.deviceName ?? `edge-classifier ${hostname()}`,
      model: this.modelName,
      swVersion: VERSION,
      ...(board !== undefined ? { hardware: board } : {}),
      gpio: this.plan.gpio.rules.map((r) => ({ pin: r.pin, labels: r.labels })),
      watch: ha.watch,
      commands: this.plan.commandRate !== null,
    });
  }

  /** Watched labels (Home Assistant binary sensors) the model has no class for never turn on: say so. */
  private checkWatchLabels(modelLabels: readonly string[]): void {
    const ha = this.plan.homeassistant;
    if (ha === null || modelLabels.length === 0) return;
    // As the binary sensor's template matches: the whole label or one of its synonyms, case-insensitive.
    const known = new Set(modelLabels.flatMap((l) => [l.toLowerCase(), ...l.toLowerCase().split(', ')]));
    for (const label of ha.watch) {
      if (known.has(label.toLowerCase())) continue;
      const message = `homeassistant.watch: the model has no class (or synonym) named ${JSON.stringify(label)}: its binary sensor will never turn on`;
      this.log.warn({ label }, message);
      const detail = label.replace(/[^A-Za-z0-9_.-]+/g, '_').slice(0, 60) || 'label';
      this.problems.raise(`watch_label_missing:${detail}`, message, 'write the label exactly as the labels file does (see `edge-classifier inspect`)');
    }
  }

  /** A message on a subscribed topic: Home Assistant's status, or a command. */
  private onMessage(msg: IncomingMessage, haStatus: string | undefined): void {
    if (msg.topic === haStatus) {
      if (msg.payload.toString() === 'online') {
        this.log.info('Home Assistant is online: publishing discovery and every retained topic again');
        this.publisher?.republish();
      }
      return;
    }
    this.commands?.handle(msg);
  }

  /** A settings change (already validated and committed): into the running parts, and `<base>/settings`. */
  private applySettings(checked: CheckedPatch): void {
    const c = checked.config;
    const keys = new Set(checked.changes.map((x) => x.key.split(/[.[]/)[0]));
    // The classifier's cut depends on the threshold, the state's and the GPIO rules' thresholds and the hysteresis.
    if (keys.has('inference') || keys.has('state') || keys.has('gpio')) this.classifier?.setOutput(smoothingOutput(c));
    if (keys.has('mqtt')) this.publisher?.setPredictionInterval(c.mqtt.prediction_interval_ms);
    if (keys.has('state') || keys.has('inference')) {
      this.state.reconfigure(stateOptions(c));
      this.gpio?.setSmoothing(gpioSmoothing(c));
    }
    for (const change of checked.changes) {
      const m = /^gpio\.rules\[(\d+)\]\.(min_score|hold_ms)$/.exec(change.key);
      if (m === null) continue;
      const rule = c.gpio.rules[Number(m[1])]!;
      this.gpio?.setRule(rule.pin, m[2] === 'min_score' ? { minScore: rule.min_score } : { holdMs: rule.hold_ms });
    }
    if (keys.has('paused')) {
      if (checked.paused) {
        // Outputs to their safe level: a paused classifier must not leave a relay on.
        this.gpio?.idle();
        this.log.info('classification paused');
      } else this.log.info('classification resumed');
    }
    this.publisher?.publishSettings(this.settings.payload());
  }

  /** Runs one request; rejects with a message for the response. */
  private async request(command: RequestName, reply: ReplyTo, id: string | number | undefined): Promise<unknown> {
    switch (command) {
      case 'get_config':
        return configForDisplay(this.settings.current, this.id);
      case 'reload':
        if (!this.options.onReloadRequest) throw new Error('reload is not available here (no supervisor runs this daemon)');
        this.options.onReloadRequest(reply, id);
        return ANSWERED_LATER;
      case 'snapshot': {
        const frame = this.lastFrame;
        if (frame === undefined) throw new Error('no frame has arrived yet: nothing to take a snapshot of');
        const time = new Date();
        const snap = await encodeSnapshot(snapshotPicture(frame), { width: this.plan.snapshot.width, quality: this.plan.snapshot.quality });
        const label = this.state.state?.label ?? null;
        this.publisher?.publishSnapshot(snap.jpeg, { time, seq: frame.seq, label });
        const file = await this.saveSnapshot(snap.jpeg, time, label);
        return { bytes: snap.jpeg.length, width: snap.width, height: snap.height, seq: frame.seq, time: time.toISOString(), ...(file ? { file } : {}) };
      }
      case 'classify_now': {
        const frame = this.lastFrame ?? (await this.nextFrame(CLASSIFY_NOW_WAIT_MS));
        const classifier = this.classifier;
        if (!classifier) throw new Error('the classifier is not running');
        // Shares the engine's slots with the frame pipeline: waits for a free one at most one inference.
        const result = await classifier.classify(frame.data, frame.file, frame.raw);
        const prediction: Prediction = {
          seq: frame.seq,
          source: this.source?.description ?? '',
          model: this.modelName,
          classes: reportedClasses(result.classes, this.settings.current.inference),
          timings: { ...result.timings, total_ms: performance.now() - frame.arrivedAt },
          dropped: this.frames?.stats().dropped ?? 0,
        };
        this.publisher?.publishPrediction(prediction);
        return predictionPayload(prediction);
      }
    }
  }

  /** Resolves with the next frame to arrive; rejects after `ms`. */
  private nextFrame(ms: number): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const started = performance.now();
      const timer = setInterval(() => {
        if (this.lastFrame !== undefined) {
          clearInterval(timer);
          resolve(this.lastFrame);
        } else if (performance.now() - started >= ms || this.stopping) {
          clearInterval(timer);
          reject(new Error(`no frame arrived within ${ms} ms: the source delivers nothing (see <base>/problems)`));
        }
      }, 50);
    });
  }

  /**
   * Answers a command through this daemon's publisher (sent after the next
   * `online` when not connected). The supervisor answers `request/reload`
   * this way, through the daemon running after the reload.
   */
  respond(reply: ReplyTo, payload: ResponsePayload): void {
    this.publisher?.respond(reply, payload);
  }

  /**
   * Encodes `frame` as the snapshot of a state change and publishes it (and
   * writes it to the snapshot folder). One encoding at a time; a change
   * while one runs waits, and a newer change replaces a waiting one.
   */
  private takeSnapshot(frame: Frame, label: string | null, time: Date): void {
    if (this.snapshotBusy) {
      this.snapshotNext = { frame, label, time };
      return;
    }
    this.snapshotBusy = true;
    const s = this.plan.snapshot;
    void encodeSnapshot(snapshotPicture(frame), { width: s.width, quality: s.quality })
      .then(async (snap) => {
        if (this.stopping) return;
        this.publisher?.publishSnapshot(snap.jpeg, { time, seq: frame.seq, label });
        await this.saveSnapshot(snap.jpeg, time, label);
      })
      .catch((err: unknown) => {
        if (this.snapshotErrors.allow('encode')) this.log.warn({ seq: frame.seq, err: (err as Error).message }, `snapshot failed: ${(err as Error).message}`);
      })
      .finally(() => {
        this.snapshotBusy = false;
        const next = this.snapshotNext;
        this.snapshotNext = undefined;
        if (next && !this.stopping) this.takeSnapshot(next.frame, next.label, next.time);
      });
  }

  /** Writes a snapshot to the snapshot folder when one is configured; returns its path. Failures are logged once a minute. */
  private async saveSnapshot(jpeg: Buffer, time: Date, label: string | null): Promise<string | undefined> {
    if (!this.snapshots) return undefined;
    try {
      return await this.snapshots.save(jpeg, time, label);
    } catch (err) {
      if (this.snapshotErrors.allow('folder')) this.log.warn({ err: (err as Error).message }, `snapshot not written: ${(err as Error).message}`);
      return undefined;
    }
  }

  /** Samples the machine and publishes `<base>/stats`. */
  private async publishStats(): Promise<void> {
    const system = await this.sampler.sample();
    if (this.stopping || !this.publisher) return;
    this.publisher.publishStats(this.statsPayload(system));
  }

  /** The `<base>/stats` payload; see `schemas/stats.schema.json`. */
  private statsPayload(system: StatsPayload['system']): StatsPayload {
    const s = this.stats();
    const m = this.publisher?.stats();
    const c = this.commands?.stats();
    const [i50, i95] = this.inferenceMs.percentiles([50, 95]);
    const [p50, p95] = this.preprocessMs.percentiles([50, 95]);
    const round2 = (v: number | null) => (v === null ? null : Math.round(v * 100) / 100);
    const classifier = this.classifier;
    return {
      time: new Date().toISOString(),
      uptime_s: Math.round((performance.now() - this.startedMs) / 100) / 10,
      model: this.modelName,
      engine: classifier?.engine ?? 'tflite',
      delegate: classifier?.backend ?? 'cpu',
      threads: classifier?.threads ?? 0,
      source: this.source?.description ?? this.plan.source.spec,
      paused: this.settings.paused,
      frames: {
        in: s.framesIn,
        classified: s.classified,
        dropped: s.dropped,
        bad: Object.values(s.badFrames).reduce((a, b) => a + b, 0),
        failed: s.failed,
      },
      bad_frames: s.badFrames,
      fps: { in: Math.round(s.sourceFps * 10) / 10, classified: Math.round(s.classifiedFps * 10) / 10 },
      inference_ms: { p50: round2(i50 ?? null), p95: round2(i95 ?? null) },
      preprocess_ms: { p50: round2(p50 ?? null), p95: round2(p95 ?? null) },
      mqtt: {
        protocol: m?.protocol ?? '3.1.1',
        reconnects: m?.reconnects ?? 0,
        published: m?.published ?? 0,
        dropped_offline: m?.droppedOffline ?? 0,
        dropped_rate_limited: m?.droppedRateLimited ?? 0,
        dropped_backpressure: m?.droppedBackpressure ?? 0,
        commands_accepted: c?.accepted ?? 0,
        commands_refused: c?.refused ?? 0,
        commands_rate_limited: c?.rateLimited ?? 0,
      },
      system,
      instance: thisInstance(this.startedAt),
    };
  }

  private statusText(): string {
    const s = this.stats();
    const bad = Object.values(s.badFrames).reduce((a, b) => a + b, 0);
    const mqtt = this.publisher?.connected ? 'mqtt connected' : 'mqtt offline';
    const gate = this.plan.capture.motion ? `, ${s.motionSkipped} without motion` : '';
    const restarts = s.sourceRestarts > 0 ? `, camera restarted ${s.sourceRestarts}x (${s.sourceStalls} stalls)` : '';
    return `${s.sourceFps.toFixed(1)} fps in, ${s.classifiedFps.toFixed(1)} fps classified, ${s.dropped} dropped, ${bad} bad${gate}${restarts}, ${mqtt}`;
  }

  private reportStatus(): void {
    const now = performance.now();
    const elapsed = (now - this.lastStatusAt) / 1000;
    if (elapsed > 0) this.classifiedFps = (this.classified - this.classifiedAtLastStatus) / elapsed;
    this.classifiedAtLastStatus = this.classified;
    this.lastStatusAt = now;
    const text = this.statusText();
    this.options.notifier?.status(text);
    this.log.info({ stats: this.stats(), mqtt: this.publisher?.stats() }, text);
  }

  /** What the health file says about this daemon (see `HealthFile`): ready, the model in use, counters, stall, problems. */
  health(): PipelineHealth {
    const s = this.stats();
    return {
      ready: this.isReady,
      model_path: this.classifier?.modelPath ?? null,
      labels_path: this.options.config.model.labels,
      frames_in: s.framesIn,
      classified: s.classified,
      dropped: s.dropped,
      bad_frames: Object.values(s.badFrames).reduce((a, b) => a + b, 0),
      failed: s.failed,
      fps: s.classifiedFps,
      last_classified_at: this.lastClassifiedIso,
      stalled: this.stalled,
      mqtt_connected: this.publisher?.connected ?? false,
      problems: this.problems.list(),
    };
  }

  /** Current counters. */
  stats(): DaemonStats {
    const frames = this.frames?.stats();
    const source = this.source?.stats();
    return {
      framesIn: (frames?.offered ?? 0) + this.pausedDropped,
      classified: this.classified,
      dropped: (frames?.dropped ?? 0) + this.pausedDropped,
      badFrames: { ...this.badFrames },
      failed: this.failed,
      pausedDropped: this.pausedDropped,
      sourceFps: source?.fps ?? 0,
      classifiedFps: this.classifiedFps,
      motionSkipped: source?.motionSkipped ?? 0,
      sourceRestarts: source?.restarts ?? 0,
      sourceStalls: source?.stalls ?? 0,
    };
  }

  /**
   * Stops everything in reverse start order: the timers, the source (no
   * child left), the frame in flight (finished but discarded, or dropped
   * after {@link STOP_IN_FLIGHT_MS}), GPIO outputs to their safe level and
   * released, `offline` published, the embedded broker, the interpreter
   * worker. A start under way is cancelled first and waited for. Idempotent;
   * rejects with the first part's failure after every part was stopped.
   */
  stop(): Promise<void> {
    this.stopped ??= this.doStop();
    return this.stopped;
  }

  private async doStop(): Promise<void> {
    this.stopping = true;
    this.abort.abort(new CancelledError('stopped during start-up'));
    await this.starting?.catch(() => {});
    await this.parts.stop();
  }
}

/**
 * The frame pipeline as a part: `end()` (the source ended) waits for the
 * frames in flight, then reports the end; `stop()` closes the pipeline
 * (a waiting frame is dropped) and waits for the frames in flight, at most
 * {@link STOP_IN_FLIGHT_MS}.
 */
class FrameLoop implements Lifecycle {
  readonly name = 'frame pipeline';

  constructor(
    private readonly frames: FramePipeline<Frame, Slot, Classification>,
    private readonly ended: () => void,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {}

  /** The source ended: once the frames in flight are done, report it. */
  end(): void {
    void this.frames.close().then(() => this.ended());
  }

  async stop(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.log.warn(`frame in flight not finished after ${STOP_IN_FLIGHT_MS} ms: dropped`);
        resolve();
      }, STOP_IN_FLIGHT_MS);
    });
    await Promise.race([this.frames.close(), timeout]);
    clearTimeout(timer);
  }
}

/**
 * The picture of a frame as the snapshot encoder takes it: encoded bytes
 * as they came, or a raw frame (I420 or RGB24) converted to packed RGB only
 * now, when a snapshot is asked for.
 */
function snapshotPicture(frame: Frame): Buffer | RawImage {
  if (!frame.raw) return frame.data;
  const rgb = rawFrameToRgb(frame.raw, frame.data);
  return { data: Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength), width: frame.raw.width, height: frame.raw.height, channels: 3 };
}
