#!/usr/bin/env node
/**
 * The process shell: arguments, signals, exit codes. Everything else lives
 * in the stage folders and in `service/daemon.ts`.
 *
 * Exit codes: 0 done (or stopped by SIGTERM/SIGINT), 1 a runtime failure
 * (model cannot load, a file cannot be classified), 2 bad command-line usage,
 * 78 (EX_CONFIG) a configuration that cannot work — the systemd unit does not
 * restart on 78.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { ConfigError, EX_CONFIG, loadConfig, packageRoot, type ConfigOverrides } from './config/load.js';
import { classifierOptions } from './config/options.js';
import { preflight } from './config/preflight.js';
import type { Config } from './config/schema.js';
import { GPIO_FLAG_EXAMPLE, GPIO_FLAG_GRAMMAR, parseGpioFlag } from './gpio/rules.js';
import { Classifier } from './inference/classifier.js';
import { readModelInfo } from './inference/tflite-model.js';
import type { ModelInfo, TensorDetails } from './inference/types.js';
import { FrameDecodeError } from './preprocess/preprocess.js';
import { Daemon } from './service/daemon.js';
import { createLogger, LOG_LEVELS, redactUrl } from './service/log.js';
import { SdNotifier } from './service/sd-notify.js';

/** Longest a SIGTERM/SIGINT shutdown may take before the process exits anyway, in ms. */
const SHUTDOWN_DEADLINE_MS = 4_500;

const int = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new InvalidArgumentError(`${name} expects a whole number, got '${v}'`);
  return n;
};
const num = (name: string) => (v: string) => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`${name} expects a number, got '${v}'`);
  return n;
};
const collect = (v: string, all: string[] = []) => [...all, v];

interface CommonFlags {
  config?: string;
  model?: string;
  labels?: string;
  cpuModel?: string;
  delegate?: string;
  topK?: number;
  threshold?: number;
  threads?: number;
  logLevel?: string;
}

function overridesFrom(flags: CommonFlags & { source?: string; mqttUrl?: string; baseTopic?: string; gpio?: string[] }): ConfigOverrides {
  return {
    source: flags.source,
    model: flags.model,
    labels: flags.labels,
    cpuModel: flags.cpuModel,
    delegate: flags.delegate,
    mqttUrl: flags.mqttUrl,
    baseTopic: flags.baseTopic,
    topK: flags.topK,
    threshold: flags.threshold,
    threads: flags.threads,
    logLevel: flags.logLevel,
    gpioRules: flags.gpio?.map((f) => {
      try {
        const r = parseGpioFlag(f);
        return { pin: r.pin, labels: [...r.labels], min_score: r.minScore, active_low: r.activeLow, hold_ms: r.holdMs };
      } catch (err) {
        throw new ConfigError([(err as Error).message]);
      }
    }),
  };
}

function addModelFlags(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'YAML or JSON configuration file')
    .option('--model <file>', '.tflite classifier (default: models/mobilenet_v2_1.0_224_quant.tflite)')
    .option('--labels <file>', 'labels file, one per line or "index label"; overrides the model metadata')
    .addOption(new Option('--delegate <name>', 'run on the CPU or a Coral Edge TPU').choices(['cpu', 'edgetpu']))
    .option('--cpu-model <file>', 'CPU model to fall back to when the Edge TPU cannot be used')
    .option('--top-k <n>', 'classes reported per image', int('--top-k'))
    .option('--threshold <score>', 'score threshold (0-1)', num('--threshold'))
    .option('--threads <n>', 'interpreter threads', int('--threads'))
    .addOption(new Option('--log-level <level>', 'log level').choices([...LOG_LEVELS]));
}

/** `run`: the daemon, until SIGTERM/SIGINT; SIGHUP reloads the configuration. */
async function run(flags: CommonFlags & { source?: string; mqttUrl?: string; baseTopic?: string; gpio?: string[]; logPredictions?: boolean; checkConfig?: boolean }): Promise<number> {
  /** Loads and preflights the configuration; throws ConfigError. */
  const load = async () => {
    const c = loadConfig({ file: flags.config, overrides: overridesFrom(flags) });
    await preflight(c, flags.config);
    return c;
  };
  let config = await load();
  const format = config.log.format === 'auto' ? undefined : config.log.format;
  const log = createLogger(config.log.level, format);
  if (flags.checkConfig) {
    const shown = {
      ...config,
      source: { ...config.source, spec: redactUrl(config.source.spec) },
      mqtt: { ...config.mqtt, url: config.mqtt.url === null ? null : redactUrl(config.mqtt.url), password: config.mqtt.password ? '***' : null },
    };
    process.stdout.write(`${JSON.stringify(shown)}\n`);
    return 0;
  }
  const notifier = new SdNotifier({ log });
  const makeDaemon = (c: Config) => {
    const d = new Daemon({ config: c, log, notifier, logPredictions: flags.logPredictions });
    // A finite source (loop off) ending is the job done; a looping one ending (folder removed) is a failure.
    d.on('end', (reason: string) => {
      if (c.source.loop) log.error({ reason }, 'the source ended although source.loop is on');
      void shutdown('source ended', c.source.loop ? 1 : 0);
    });
    d.on('failed', (err: Error) => {
      log.fatal(`classification keeps failing (${err.message}): stopping so the service manager can restart`);
      void shutdown('classifier failing', 1);
    });
    return d;
  };
  let daemon = makeDaemon(config);

  let resolveExit!: (code: number) => void;
  const exit = new Promise<number>((resolve) => (resolveExit = resolve));
  let shuttingDown = false;
  let reloading: Promise<void> | undefined;
  async function shutdown(why: string, code: number): Promise<void> {
    if (shuttingDown) return;
    shuttingDown = true;
    log.info({ why }, 'shutting down');
    notifier.stopping();
    const deadline = setTimeout(() => {
      log.error(`shutdown took longer than ${SHUTDOWN_DEADLINE_MS} ms: exiting anyway`);
      resolveExit(1);
    }, SHUTDOWN_DEADLINE_MS);
    deadline.unref();
    let status = code;
    try {
      // A reload under way sees shuttingDown and starts nothing more; wait for it, so that no
      // interpreter worker is still being built when the process exits (that aborts the process).
      await reloading;
      await daemon.stop();
    } catch {
      status = 1;
    }
    await notifier.stop();
    clearTimeout(deadline);
    resolveExit(status);
  }

  /**
   * SIGHUP: a configuration that fails to load or preflight is logged and the
   * running one kept; one that passes replaces it; if the new one still fails
   * to start (camera, broker port...), the previous configuration is started
   * again, and only if that fails too does the process exit.
   */
  const reload = async () => {
    if (shuttingDown) return;
    if (reloading) {
      log.warn('SIGHUP: a reload is already under way; ignored');
      return;
    }
    reloading = doReload().finally(() => (reloading = undefined));
    await reloading;
  };
  const doReload = async () => {
    try {
      let next: Config;
      try {
        next = await load();
      } catch (err) {
        log.error(`SIGHUP: ${(err as Error).message}; keeping the running configuration`);
        return;
      }
      if (shuttingDown) return;
      log.info('SIGHUP: reloading configuration');
      await daemon.stop();
      if (shuttingDown) return;
      const previous = config;
      try {
        daemon = makeDaemon(next);
        await daemon.start();
        config = next;
        log.level = config.log.level;
      } catch (err) {
        if (shuttingDown) return;
        log.error(`SIGHUP: the new configuration failed to start (${(err as Error).message}); starting the previous one again`);
        daemon = makeDaemon(previous);
        await daemon.start();
      }
    } catch (err) {
      if (shuttingDown) return;
      log.fatal(errorFields(err), `reload failed: ${(err as Error).message}`);
      setImmediate(() => void shutdown('reload failed', 1));
    }
  };

  // A crash still runs the cleanup: outputs to their safe level, offline published, no child left.
  const crash = (err: unknown) => {
    log.fatal({ err }, `unexpected error: ${(err as Error)?.message ?? String(err)}`);
    void shutdown('crash', 1);
  };
  process.on('uncaughtException', crash);
  process.on('unhandledRejection', crash);
  process.on('SIGTERM', () => void shutdown('SIGTERM', 0));
  process.on('SIGINT', () => void shutdown('SIGINT', 0));
  process.on('SIGHUP', () => void reload());

  try {
    await daemon.start();
  } catch (err) {
    if (shuttingDown) return exit;
    log.fatal(errorFields(err), (err as Error).message);
    await notifier.stop();
    return err instanceof ConfigError ? EX_CONFIG : 1;
  }
  return exit;
}

function errorFields(err: unknown): Record<string, unknown> {
  return err instanceof Error && !(err instanceof ConfigError) && process.env.EDGE_CLASSIFIER_DEBUG ? { err } : {};
}

/** `classify`: classify image files once; one line (or JSON object) per image. */
async function classify(images: string[], flags: CommonFlags & { json?: boolean }): Promise<number> {
  const config = loadConfig({ file: flags.config, overrides: overridesFrom(flags) });
  const log = createLogger(flags.logLevel === undefined ? 'warn' : config.log.level, 'pretty', process.stderr);
  const classifier = await Classifier.open(classifierOptions(config, log));
  let failures = 0;
  /** A file that could not be classified: the message on stderr, and with --json an `error` line on stdout so scripts keep one line per image. */
  const fail = (file: string, message: string) => {
    process.stderr.write(`${message}\n`);
    if (flags.json) process.stdout.write(`${JSON.stringify({ file, error: message })}\n`);
  };
  try {
    for (const file of images) {
      let bytes: Buffer;
      try {
        bytes = await readFile(file);
      } catch (err) {
        failures++;
        fail(file, `${file}: cannot read: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
        continue;
      }
      try {
        const result = await classifier.classify(bytes, file);
        if (flags.json) {
          const timings = Object.fromEntries(Object.entries(result.timings).map(([k, v]) => [k, round(v, 2)]));
          process.stdout.write(`${JSON.stringify({ file, classes: result.classes.map((c) => ({ ...c, score: round(c.score, 4) })), timings })}\n`);
        } else {
          const line = result.classes.map((c) => `${c.label} (${c.index}) ${c.score.toFixed(3)}`).join(', ') || 'nothing above the score threshold';
          process.stdout.write(`${file}: ${line}\n`);
        }
      } catch (err) {
        failures++;
        fail(file, err instanceof FrameDecodeError ? err.message : `${file}: ${(err as Error).message}`);
      }
    }
  } finally {
    await classifier.close();
  }
  return failures > 0 ? 1 : 0;
}

const round = (v: number, d: number) => Math.round(v * 10 ** d) / 10 ** d;

function describeTensor(t: TensorDetails): string {
  const [scale, zp] = t.quantization;
  const q = scale !== 0 ? ` scale ${scale} zero_point ${zp}` : '';
  const perAxis = t.quantization_parameters.scales.length > 1 ? ` (per-axis on dimension ${t.quantization_parameters.quantized_dimension}, ${t.quantization_parameters.scales.length} scales)` : '';
  return `  #${t.index} ${t.name}: [${t.shape.join(',')}] ${t.dtype}${q}${perAxis}`;
}

/** `inspect`: the input and output details and metadata of a model. */
async function inspect(flags: { model?: string; json?: boolean; config?: string }): Promise<number> {
  const config = loadConfig({ file: flags.config, overrides: { model: flags.model } });
  const info: ModelInfo = await readModelInfo(config.model.path);
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(info)}\n`);
    return 0;
  }
  const md = info.metadata;
  const lines = [
    `model: ${info.path} (${info.size_bytes} bytes, schema version ${info.version})`,
    ...(md?.name ? [`name: ${md.name}${md.version ? ` version ${md.version}` : ''}`] : []),
    'inputs:',
    ...info.inputs.map(describeTensor),
    'outputs:',
    ...info.outputs.map(describeTensor),
    `normalization: ${md?.normalization ? `mean ${JSON.stringify(md.normalization.mean)} std ${JSON.stringify(md.normalization.std)}` : 'none in metadata'}`,
    `labels: ${md?.labels ? `${md.labels.length} from ${md.labels_file ?? 'metadata'} (${md.labels.slice(0, 3).map((l) => JSON.stringify(l)).join(', ')}${md.labels.length > 3 ? ', ...' : ''})` : 'none in metadata'}`,
    `custom ops: ${info.custom_ops.length ? info.custom_ops.join(', ') : 'none'}`,
    `needs the Edge TPU: ${info.requires_edgetpu ? 'yes' : 'no'}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

function program(setExit: (p: Promise<number>) => void): Command {
  const cli = new Command('edge-classifier')
    .description('Camera frames to a TFLite image classifier, published over MQTT and on GPIO pins.')
    .version((JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version)
    .showHelpAfterError()
    .exitOverride();

  addModelFlags(
    cli
      .command('run')
      .description('run the daemon: frames from a source, predictions to MQTT and GPIO')
      .option('--source <spec>', 'rpicam[:N], /dev/videoN, rtsp:// or http:// URL, a video file, or a directory of images'),
  )
    .option('--mqtt-url <url>', 'broker URL (default: an embedded broker on 127.0.0.1)')
    .option('--base-topic <topic>', 'MQTT base topic (default: edge-classifier/<device id>)')
    .option('--gpio <rule>', `GPIO rule ${GPIO_FLAG_GRAMMAR}, repeatable, e.g. '${GPIO_FLAG_EXAMPLE}'`, collect)
    .option('--log-predictions', 'log every prediction at info level')
    .option('--check-config', 'validate the configuration, print it resolved as JSON and exit (0, or 78 when invalid)')
    .action((opts) => setExit(run(opts)));

  addModelFlags(cli.command('classify').description('classify image files once').argument('<image...>', 'image files (JPEG, PNG, WebP, GIF, TIFF, AVIF)'))
    .option('--json', 'one JSON object per line')
    .action((images: string[], opts) => setExit(classify(images, opts)));

  cli
    .command('inspect')
    .description('show the input and output details and metadata of a model')
    .option('--model <file>', '.tflite model (default: models/mobilenet_v2_1.0_224_quant.tflite)')
    .option('--config <file>', 'YAML or JSON configuration file')
    .option('--json', 'one JSON object')
    .action((opts) => setExit(inspect(opts)));
  return cli;
}

async function main(argv: string[]): Promise<number> {
  let result: Promise<number> | undefined;
  try {
    program((p) => (result = p)).parse(argv);
  } catch (err) {
    const e = err as { code?: string; exitCode?: number };
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0;
    return e.exitCode && e.exitCode !== 0 ? 2 : 0;
  }
  if (!result) return 2;
  try {
    return await result;
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`edge-classifier: ${err.message}\n`);
      return EX_CONFIG;
    }
    process.stderr.write(`edge-classifier: ${(err as Error).message}\n`);
    if (process.env.EDGE_CLASSIFIER_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
    return 1;
  }
}

// `classify ... | head -1`: the reader went away; that is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

main(process.argv).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`edge-classifier: ${(err as Error).stack}\n`);
    process.exit(1);
  },
);
