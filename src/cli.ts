#!/usr/bin/env node
/**
 * The process shell: arguments, signals, exit codes. Nothing else: reload and
 * shutdown policy is the supervisor's (`service/supervisor.ts`), the
 * application the daemon's (`service/daemon.ts`).
 *
 * Exit codes: 0 done (or stopped by SIGTERM/SIGINT), 1 a runtime failure
 * (model cannot load, a file cannot be classified), 2 bad command-line usage,
 * 78 (EX_CONFIG) a configuration that cannot work — the systemd unit does not
 * restart on 78.
 *
 * Only the signal handlers of `run` (`service/signals.ts`, first), node
 * built-ins and commander are imported up front; the rest (sharp, mqtt, the
 * stages) is loaded by the command that needs it, so a SIGTERM or SIGHUP in
 * the first second of a slow start is handled, not fatal.
 */
// First: the signal handlers of `run` (before commander and everything else is loaded).
import { runSignals } from './service/signals.js';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError, Option } from 'commander';
import type { ConfigOverrides } from './config/load.js';
import type { Config } from './config/schema.js';
import type { TensorDetails } from './core/types.js';
import { addWorkflowCommands } from './evaluation/cli-commands.js';
import { addReleaseCommands } from './release/commands.js';
import { addFleetCommands } from './fleet/command.js';

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
/** The `--gpio` grammar for the help text (the parser, `config/gpio-flag.ts`, says the same in its errors). */
const GPIO_HELP = "PIN=LABEL[|LABEL…][@MIN_SCORE][:active-low][:hold=MS], repeatable, e.g. '17=Egyptian cat|tabby, tabby cat@0.6:active-low:hold=2000'";

/** Whole numbers in decimal only: '' or '0x10' are usage errors, not 0 or 16. */
const int = (name: string) => (v: string) => {
  if (!/^[+-]?\d+$/.test(v.trim())) throw new InvalidArgumentError(`${name} expects a whole number, got '${v}'`);
  return Number(v);
};
/** Decimal numbers only ('0x1', '1e', '' are usage errors). */
const num = (name: string) => (v: string) => {
  if (!/^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(v.trim())) throw new InvalidArgumentError(`${name} expects a number, got '${v}'`);
  return Number(v);
};
const collect = (v: string, all: string[] = []) => [...all, v];
/** `--threads`: `auto` or a whole number. */
const threadsArg = (v: string): number | 'auto' => (v.trim() === 'auto' ? 'auto' : int('--threads')(v));

interface CommonFlags {
  config?: string;
  model?: string;
  labels?: string;
  cpuModel?: string;
  delegate?: string;
  engine?: string;
  topK?: number;
  threshold?: number;
  threads?: number | 'auto';
  logLevel?: string;
}
type RunFlags = CommonFlags & {
  source?: string;
  mqttUrl?: string;
  baseTopic?: string;
  gpio?: string[];
  logPredictions?: boolean;
  checkConfig?: boolean;
  selfTest?: boolean;
  removeDiscovery?: boolean;
};

/** Flags as configuration overrides; a malformed `--gpio` is a ConfigError (exit 78) naming the grammar. */
async function overridesFrom(flags: RunFlags): Promise<ConfigOverrides> {
  const { ConfigError } = await import('./config/load.js');
  const { parseGpioFlag } = await import('./config/gpio-flag.js');
  return {
    source: flags.source,
    model: flags.model,
    labels: flags.labels,
    cpuModel: flags.cpuModel,
    delegate: flags.delegate,
    engine: flags.engine,
    mqttUrl: flags.mqttUrl,
    baseTopic: flags.baseTopic,
    topK: flags.topK,
    threshold: flags.threshold,
    threads: flags.threads,
    logLevel: flags.logLevel,
    gpioRules: flags.gpio?.map((f) => {
      try {
        return parseGpioFlag(f);
      } catch (err) {
        throw new ConfigError([(err as Error).message]);
      }
    }),
  };
}

function addModelFlags(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'YAML or JSON configuration file')
    .option('--model <file>', '.tflite classifier (default: models/tf2_mobilenet_v2_1.0_224_ptq.tflite)')
    .option('--labels <file>', 'labels file, one per line or "index label"; overrides the model metadata')
    .addOption(new Option('--delegate <name>', 'run on the CPU or a Coral Edge TPU').choices(['cpu', 'edgetpu']))
    .option('--cpu-model <file>', 'CPU model to fall back to when the Edge TPU cannot be used')
    .option('--top-k <n>', 'classes reported per image', int('--top-k'))
    .option('--threshold <score>', 'score threshold (0-1)', num('--threshold'))
    .addOption(
      new Option('--engine <name>', 'what runs the model (auto: measure at start and keep the fastest that agrees)').choices([
        'auto',
        'tflite',
        'tflite-xnnpack',
        'litert-wasm',
        'edgetpu',
      ]),
    )
    .option('--threads <n>', 'interpreter threads, or auto (measure 1 … cores − 1)', threadsArg)
    .addOption(new Option('--log-level <level>', 'log level').choices(LOG_LEVELS));
}

/** `run`: the daemon, until SIGTERM/SIGINT; SIGHUP reloads the configuration. */
async function run(flags: RunFlags): Promise<number> {
  const signals = runSignals;
  if (!signals) throw new Error('run: signal handlers not installed');
  const { ConfigError, EX_CONFIG, loadConfig } = await import('./config/load.js');
  const { preflight } = await import('./config/preflight.js');
  const overrides = await overridesFrom(flags);
  /** Loads and preflights the configuration; throws ConfigError. */
  const load = async () => {
    const c = loadConfig({ file: flags.config, overrides });
    return { config: c, warnings: (await preflight(c, flags.config)).warnings };
  };
  if (flags.removeDiscovery) return removeFromHomeAssistant(loadConfig({ file: flags.config, overrides }));
  const { config, warnings } = await load();
  if (flags.checkConfig) {
    for (const w of warnings) process.stderr.write(`edge-classifier: warning: ${w}\n`);
    if (flags.selfTest) {
      const { createLogger } = await import('./core/log.js');
      const { selfTest } = await import('./service/self-test.js');
      const problems = await selfTest(config, createLogger('warn', 'pretty', process.stderr), programDir);
      if (problems.length > 0) throw new ConfigError(problems);
    }
    process.stdout.write(`${JSON.stringify(await resolvedForDisplay(config))}\n`);
    return 0;
  }
  const { createLogger } = await import('./core/log.js');
  const log = createLogger(config.log.level, config.log.format === 'auto' ? undefined : config.log.format);
  if (signals.stopRequested) {
    log.info('stopped before start-up');
    return 0;
  }
  const { SdNotifier } = await import('./service/sd-notify.js');
  const { Supervisor, errorFields } = await import('./service/supervisor.js');
  const notifier = new SdNotifier({ log });
  // systemd sets RUNTIME_DIRECTORY from the unit's RuntimeDirectory=; outside a unit there is no health file.
  const runtimeDir = process.env.RUNTIME_DIRECTORY?.split(':')[0];
  const { HealthFile } = await import('./service/health-file.js');
  const health = runtimeDir ? new HealthFile({ file: `${runtimeDir}/health.json`, version: programVersion(), programDir, log }) : undefined;
  const supervisor = new Supervisor({
    config,
    load: async () => (await load()).config,
    log,
    notifier,
    health,
    logPredictions: flags.logPredictions ?? false,
    ...(flags.config !== undefined ? { configFile: path.resolve(flags.config) } : {}),
  });
  // A crash still runs the cleanup: outputs to their safe level, offline published, no child left.
  const crash = (err: unknown) => {
    log.fatal({ err }, `unexpected error: ${(err as Error)?.message ?? String(err)}`);
    void supervisor.shutdown('crash', 1);
  };
  process.on('uncaughtException', crash);
  process.on('unhandledRejection', crash);
  const started = supervisor.start();
  signals.deliver((signal) => void (signal === 'SIGHUP' ? supervisor.reload() : supervisor.shutdown(signal, 0)));
  try {
    await started;
  } catch (err) {
    log.fatal(errorFields(err), (err as Error).message);
    await notifier.stop();
    // A native module that cannot load will not load after a restart either; nor does a configuration that
    // cannot work next to another daemon on the same base topic (its error carries exitCode 78).
    const exitCode = (err as { exitCode?: unknown }).exitCode;
    if (err instanceof ConfigError || (err as Error)?.name === 'NotLoadableError') return EX_CONFIG;
    return typeof exitCode === 'number' ? exitCode : 1;
  }
  return supervisor.exited;
}

/** `run --remove-discovery`: no model, source or GPIO needed, only the broker and the device's identity. */
async function removeFromHomeAssistant(config: Config): Promise<number> {
  const { createLogger } = await import('./core/log.js');
  const { removeDiscovery } = await import('./service/remove-discovery.js');
  const log = createLogger(config.log.level, config.log.format === 'auto' ? undefined : config.log.format);
  try {
    const topic = await removeDiscovery(config, log);
    log.info({ topic }, 'removed from Home Assistant: empty retained discovery message published');
    return 0;
  } catch (err) {
    log.error((err as Error).message);
    return 1;
  }
}

/** The configuration as `--check-config` prints it: passwords hidden, base topic and client id resolved. */
async function resolvedForDisplay(config: Config): Promise<Config> {
  const { deviceId } = await import('./core/device-id.js');
  const { configForDisplay } = await import('./config/options.js');
  return configForDisplay(config, deviceId());
}

/** `classify`: classify image files once; one line (or JSON object) per image. */
async function classify(images: string[], flags: CommonFlags & { json?: boolean; roi?: string }): Promise<number> {
  const { ConfigError, loadConfig } = await import('./config/load.js');
  const { parseRoi } = await import('./camera/roi.js');
  const { classifierOptions } = await import('./config/options.js');
  const { createLogger } = await import('./core/log.js');
  const { unreadableFileError } = await import('./core/errors.js');
  const { Classifier } = await import('./inference/classifier.js');
  const { EdgeTpuUnavailableError } = await import('./inference/delegate.js');
  const { FrameDecodeError } = await import('./inference/preprocess/preprocess.js');
  const config = loadConfig({ file: flags.config, overrides: await overridesFrom(flags) });
  const log = createLogger(flags.logLevel === undefined ? 'warn' : config.log.level, 'pretty', process.stderr);
  let roi = config.source.roi ?? undefined;
  try {
    if (flags.roi !== undefined) roi = parseRoi(flags.roi, '--roi');
  } catch (err) {
    throw new ConfigError([(err as Error).message]);
  }
  const classifier = new Classifier({ ...classifierOptions(config), ...(roi ? { roi } : {}), log });
  try {
    await classifier.start();
  } catch (err) {
    await classifier.stop();
    // As for `run`: a missing Edge TPU runtime is a configuration that cannot work until it is installed.
    if (err instanceof EdgeTpuUnavailableError && err.problem === 'runtime') throw new ConfigError([`inference.delegate: ${err.message}`]);
    throw err;
  }
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
        fail(file, unreadableFileError('the image', file, err).message);
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
    await classifier.stop();
  }
  return failures > 0 ? 1 : 0;
}

const round = (v: number, d: number) => Math.round(v * 10 ** d) / 10 ** d;

function describeTensor(t: TensorDetails): string {
  const [scale, zp] = t.quantization;
  const q = scale !== 0 ? ` scale ${scale} zero_point ${zp}` : '';
  const perAxis =
    t.quantization_parameters.scales.length > 1
      ? ` (per-axis on dimension ${t.quantization_parameters.quantized_dimension}, ${t.quantization_parameters.scales.length} scales)`
      : '';
  return `  #${t.index} ${t.name}: [${t.shape.join(',')}] ${t.dtype}${q}${perAxis}`;
}

/** `inspect`: the input and output details and metadata of a model. */
async function inspect(flags: { model?: string; json?: boolean; config?: string }): Promise<number> {
  const { loadConfig } = await import('./config/load.js');
  const { readModelFile } = await import('./inference/tflite-model.js');
  const { analyzeModel, formatBytes } = await import('./inference/model-analysis.js');
  const config = loadConfig({ file: flags.config, overrides: { model: flags.model } });
  const { scoresOutputIndex } = await import('./inference/compat.js');
  const { bytes, info } = await readModelFile(config.model.path);
  const kind = analyzeModel(bytes, info);
  const scores = scoresOutputIndex(info);
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ ...info, quantization_kind: kind, scores_output: scores })}\n`);
    return 0;
  }
  const weights = Object.entries(kind.weight_bytes)
    .map(([d, n]) => `${d} ${formatBytes(n ?? 0)}`)
    .join(', ');
  const md = info.metadata;
  const lines = [
    `model: ${info.path} (${info.size_bytes} bytes, schema version ${info.version})`,
    ...(md?.name ? [`name: ${md.name}${md.version ? ` version ${md.version}` : ''}`] : []),
    'inputs:',
    ...info.inputs.map(describeTensor),
    'outputs:',
    ...info.outputs.map(describeTensor),
    `normalization: ${md?.normalization ? `mean ${JSON.stringify(md.normalization.mean)} std ${JSON.stringify(md.normalization.std)}` : 'none in metadata'}`,
    `labels: ${
      md?.labels
        ? `${md.labels.length} from ${md.labels_file ?? 'metadata'} (${md.labels
            .slice(0, 3)
            .map((l) => JSON.stringify(l))
            .join(', ')}${md.labels.length > 3 ? ', ...' : ''})`
        : 'none in metadata'
    }`,
    `class scores: ${scores === null ? 'no output of shape [1,N] with N ≥ 2' : `output ${scores} (${info.outputs[scores]!.name})`}`,
    `quantization: ${kind.summary}`,
    `parameters: ${kind.parameters === null ? 'inside the Edge TPU op' : kind.parameters.toLocaleString('en-US')}${weights ? ` (weights: ${weights})` : ''}`,
    `custom ops: ${info.custom_ops.length ? info.custom_ops.join(', ') : 'none'}`,
    `needs the Edge TPU: ${info.requires_edgetpu ? 'yes' : 'no'}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

/** `bench`: per model, the engine table and choice, preprocessing per frame size, the pipeline rate and memory. */
async function bench(flags: { model?: string[]; json?: boolean; config?: string; logLevel?: string }): Promise<number> {
  const { loadConfig } = await import('./config/load.js');
  const { classifierOptions } = await import('./config/options.js');
  const { benchModel, formatBench } = await import('./service/bench.js');
  const models = flags.model?.length ? flags.model : [loadConfig({ file: flags.config }).model.path];
  let failures = 0;
  for (const m of models) {
    const config = loadConfig({ file: flags.config, overrides: { model: m } });
    const { modelPath: _m, engine: _e, threads: _t, cacheFile: _c, ...classifier } = classifierOptions(config);
    try {
      const result = await benchModel(config.model.path, { classifier });
      process.stdout.write(flags.json ? `${JSON.stringify(result)}\n` : `${formatBench(result)}\n\n`);
    } catch (err) {
      failures++;
      process.stderr.write(`${m}: ${(err as Error).message}\n`);
      if (flags.json) process.stdout.write(`${JSON.stringify({ model: m, error: (err as Error).message })}\n`);
    }
  }
  return failures > 0 ? 1 : 0;
}

/** The folder this program runs from (holding package.json and dist/): a release folder on a device. */
const programDir = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');

/** This program's package.json version (a release's own version when it runs from a release). */
function programVersion(): string {
  return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

function program(setExit: (p: Promise<number>) => void): Command {
  const cli = new Command('edge-classifier')
    .description('Camera frames to a TFLite image classifier, published over MQTT and on GPIO pins.')
    .version(programVersion())
    .showHelpAfterError()
    // Options before the command belong to the program (--version), after it to the command (pack --version V).
    .enablePositionalOptions()
    .exitOverride();

  addModelFlags(
    cli
      .command('run')
      .description('run the daemon: frames from a source, predictions to MQTT and GPIO')
      .option('--source <spec>', 'rpicam[:N], /dev/videoN, rtsp:// or http:// URL, a video file, or a directory of images'),
  )
    .option('--mqtt-url <url>', 'broker URL (default: an embedded broker on 127.0.0.1)')
    .option('--base-topic <topic>', 'MQTT base topic (default: edge-classifier/<device id>)')
    .option('--gpio <rule>', `GPIO rule ${GPIO_HELP}`, collect)
    .option('--log-predictions', 'log every prediction at info level')
    .option('--check-config', 'validate the configuration, print it resolved as JSON and exit (0, or 78 when invalid)')
    .option('--self-test', 'with --check-config: also load everything the daemon uses (TFLite and the model, sharp, the GPIO backend)')
    .option('--remove-discovery', 'remove this device from Home Assistant (empty retained discovery message) and exit')
    .action((opts: RunFlags) => setExit(run(opts)));

  addModelFlags(cli.command('classify').description('classify image files once').argument('<image...>', 'image files (JPEG, PNG, WebP, GIF, TIFF, AVIF)'))
    .option('--json', 'one JSON object per line')
    .option('--roi <x,y,w,h>', 'classify only this region, as fractions of the image (default: source.roi of the config, else the whole image)')
    .action((images: string[], opts: CommonFlags & { json?: boolean; roi?: string }) => setExit(classify(images, opts)));

  cli
    .command('inspect')
    .description('show the input and output details and metadata of a model')
    .option('--model <file>', '.tflite model (default: models/tf2_mobilenet_v2_1.0_224_ptq.tflite)')
    .option('--config <file>', 'YAML or JSON configuration file')
    .option('--json', 'one JSON object')
    .action((opts: { model?: string; json?: boolean; config?: string }) => setExit(inspect(opts)));

  addWorkflowCommands(cli, {
    addModelFlags,
    classifierOptions: async (flags: CommonFlags) => {
      const { loadConfig } = await import('./config/load.js');
      const { classifierOptions } = await import('./config/options.js');
      const { createLogger } = await import('./core/log.js');
      const config = loadConfig({ file: flags.config, overrides: await overridesFrom(flags) });
      return { ...classifierOptions(config), log: createLogger(flags.logLevel === undefined ? 'warn' : config.log.level, 'pretty', process.stderr) };
    },
    setExit,
  });

  cli
    .command('bench')
    .description('measure on this device: per model the engines × threads and the choice, preprocessing per frame size, the pipeline rate, memory')
    .option('--model <file>', '.tflite model, repeatable (default: the configured model)', collect)
    .option('--config <file>', 'YAML or JSON configuration file (preprocessing, library)')
    .option('--json', 'one JSON object per model')
    .action((opts: { model?: string[]; json?: boolean; config?: string }) => setExit(bench(opts)));
  addReleaseCommands(cli, programDir, setExit);
  addFleetCommands(cli, setExit);
  return cli;
}

async function main(argv: string[]): Promise<number> {
  let result: Promise<number> | undefined;
  try {
    program((p) => {
      result = p;
    }).parse(argv);
  } catch (err) {
    const e = err as { code?: string; exitCode?: number };
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0;
    return e.exitCode && e.exitCode !== 0 ? 2 : 0;
  }
  if (!result) return 2;
  try {
    return await result;
  } catch (err) {
    if ((err as Error)?.name === 'ConfigError' || (err as Error)?.name === 'NotLoadableError') {
      process.stderr.write(`edge-classifier: ${(err as Error).message}\n`);
      return 78;
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
