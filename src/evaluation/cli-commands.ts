import { type Command, Option } from 'commander';
import type { ClassifierOptions } from '../inference/classifier.js';
import type { InputSpec, TensorJson } from '../inference/tensor-json.js';
import type { ReportFormat } from './commands.js';

// Everything else (sharp, the interpreter, the reports) is imported by the command that runs.

/** Exit status of a command-line usage error (an argument that cannot work). */
const EX_USAGE = 2;

/** What the process shell lends the workflow commands. */
export interface WorkflowCliHost {
  /** Adds the model, config, engine and preprocessing flags `run` and `classify` take. */
  addModelFlags(cmd: Command): Command;
  /** The classifier options those flags, the config file and the environment give (throws ConfigError → exit 78). */
  classifierOptions(flags: Record<string, unknown>): Promise<ClassifierOptions>;
  /** Hands the command's exit status (or failure) to the shell. */
  setExit(p: Promise<number>): void;
}

const collect = (v: string, all: string[] = []) => [...all, v];

function formatOf(flags: { json?: boolean; format?: string }): ReportFormat {
  return flags.json ? 'json' : ((flags.format ?? 'text') as ReportFormat);
}

function addReportFlags(cmd: Command): Command {
  return cmd
    .option('--json', 'one JSON object with every figure (same as --format json)')
    .addOption(new Option('--format <format>', 'output format').choices(['text', 'json', 'md']).default('text'))
    .option('--report <file.html>', 'also write a self-contained HTML report with charts');
}

function describeOutput(o: TensorJson, formatNested: (v: TensorJson['values']) => string): string {
  const [scale, zp] = o.quantization;
  const head = `output '${o.name}' (#${o.index}, [${o.shape.join(',')}] ${o.dtype}${scale ? `, scale ${scale} zero point ${zp}` : ''})`;
  if (o.dequantized === undefined) return `${head}: ${formatNested(o.values)}`;
  return `${head}:\n  raw:         ${formatNested(o.values)}\n  dequantized: ${formatNested(o.dequantized)}`;
}

/**
 * Adds `predict`, `eval` and `compare` to the command line. Exit statuses:
 * 0 done; 1 a failed run (a model that cannot load, a folder that cannot be
 * used, models that cannot be compared); 2 usage (an `--input` that does not
 * fit the model, fewer than two models to compare); 78 a configuration
 * problem (from `host.classifierOptions`).
 */
export function addWorkflowCommands(cli: Command, host: WorkflowCliHost): void {
  host
    .addModelFlags(
      cli
        .command('predict')
        .description("run any model once on given tensors: set_tensor, invoke, get_tensor (the interpreter's own loop)")
        .requiredOption(
          '--input <json>',
          "input values as nested JSON arrays in the tensor's shape: '[[10.0]]', NAME=JSON, NAME=@file.json or @file.json; repeat per input",
          collect,
        )
        .option('--raw', 'quantized inputs are given as stored integers, not real values')
        .option('--json', 'one JSON object'),
    )
    .action((opts: Record<string, unknown>) =>
      host.setExit(
        (async () => {
          const { formatNested, parseInputSpec, TensorValueError } = await import('../inference/tensor-json.js');
          const { predict } = await import('../inference/predict.js');
          const c = await host.classifierOptions(opts);
          let specs: InputSpec[];
          try {
            specs = (opts.input as string[]).map(parseInputSpec);
          } catch (err) {
            process.stderr.write(`edge-classifier: ${(err as Error).message}\n`);
            return EX_USAGE;
          }
          try {
            // `auto` means the reference (default kernels): predict shows what the model computes, not how fast.
            if (c.engine === 'edgetpu') {
              process.stderr.write(
                'edge-classifier: predict runs on tflite, tflite-xnnpack or litert-wasm, not edgetpu; check an Edge TPU model with classify\n',
              );
              return EX_USAGE;
            }
            const r = await predict({
              modelPath: c.modelPath,
              inputs: specs,
              raw: opts.raw === true,
              threads: typeof c.threads === 'number' ? c.threads : 1,
              ...(c.engine !== 'auto' ? { engine: c.engine } : {}),
              ...(c.library !== undefined ? { library: c.library } : {}),
              onNote: (note) => process.stderr.write(`edge-classifier: ${note}\n`),
            });
            if (opts.json) process.stdout.write(`${JSON.stringify(r)}\n`);
            else process.stdout.write(`${r.outputs.map((x) => describeOutput(x, formatNested)).join('\n')}\ninvoke ${r.inference_ms.toFixed(3)} ms\n`);
            return 0;
          } catch (err) {
            if (!(err instanceof TensorValueError)) throw err;
            process.stderr.write(`edge-classifier: ${err.message}\n`);
            return EX_USAGE;
          }
        })(),
      ),
    );

  addReportFlags(
    host.addModelFlags(
      cli
        .command('eval')
        .description('accuracy and latency on a labelled folder (one sub-folder of images per class, named after a label)')
        .argument('<dir>', 'folder with one sub-folder per class'),
    ),
  ).action((dir: string, opts: Record<string, unknown>) =>
    host.setExit(
      (async () => {
        const { evalCommand } = await import('./commands.js');
        const c = await host.classifierOptions(opts);
        await evalCommand(dir, {
          classifier: c,
          format: formatOf(opts),
          ...(opts.report ? { report: opts.report as string } : {}),
          stdout: process.stdout,
          stderr: process.stderr,
        });
        return 0;
      })(),
    ),
  );

  addReportFlags(
    host.addModelFlags(
      cli
        .command('compare')
        .description('compare variants of one model (the first is the reference): size, quantization, accuracy, agreement, latency')
        .argument('<model...>', '.tflite files, the reference first')
        .option('--data <dir>', 'labelled folder to measure accuracy and agreement on'),
    ),
  ).action((models: string[], opts: Record<string, unknown>) =>
    host.setExit(
      (async () => {
        if (models.length < 2) {
          process.stderr.write(`edge-classifier: compare needs at least two models (the reference first), got ${models.length}\n`);
          return EX_USAGE;
        }
        const { compareCommand } = await import('./commands.js');
        const c = await host.classifierOptions(opts);
        await compareCommand(models, (opts.data as string | undefined) ?? null, {
          classifier: c,
          format: formatOf(opts),
          ...(opts.report ? { report: opts.report as string } : {}),
          stdout: process.stdout,
          stderr: process.stderr,
        });
        return 0;
      })(),
    ),
  );
}
