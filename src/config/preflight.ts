import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { FFMPEG_INSTALL_HINT } from '../camera/ffmpeg.js';
import { listReplayFiles } from '../camera/replay.js';
import { findOnPath, findRpicamProgram } from '../camera/rpicam.js';
import { parseSourceSpec } from '../camera/source-spec.js';
import { unreadableFileError } from '../core/errors.js';
import { redactUrl } from '../core/redact.js';
import { gpioBackendProblem } from '../gpio/backends.js';
import { unknownLabelWarnings } from '../gpio/rules.js';
import { modelProblems } from '../inference/compat.js';
import { checkSharedLibrary, edgeTpuDelegate } from '../inference/delegate.js';
import { type Labels, readLabelsFile } from '../inference/labels.js';
import type { ModelInfo } from '../inference/model-info.js';
import { REQUIRED_SYMBOLS } from '../inference/tflite-c.js';
import { readModelInfo } from '../inference/tflite-model.js';
import { validateBaseTopic } from '../mqtt/topics.js';
import { ConfigError } from './load.js';
import { gpioRules } from './options.js';
import type { Config } from './schema.js';

/**
 * Checks what a configuration refers to, beyond its schema, without starting
 * anything: the model files are TFLite models the daemon can feed (read from
 * the flatbuffer, no interpreter), the labels and TLS files can be read, the
 * source spec names something that exists, the base topic is publishable.
 * `run` calls it before starting and before a SIGHUP reload replaces the
 * running configuration; `run --check-config` reports it, so a fleet can
 * check a configuration before restarting devices.
 *
 * Also: the camera program (rpicam-vid or ffmpeg) is on PATH, a replay
 * folder holds files, TLS files hold usable PEM, and with
 * `inference.delegate: edgetpu` (or engine `edgetpu`) and no CPU fallback
 * the Edge TPU library loads, and `inference.library` is a TFLite C
 * library. Not checked here (they need the hardware or the network): that
 * the camera opens, that an Edge TPU is plugged in, that the broker is up.
 * With GPIO rules, the backend must be usable on a machine that has GPIO
 * (`gpioBackendProblem`: onoff loads, the export file is writable); only a
 * machine without GPIO falls back to virtual pins.
 * Returns warnings that do not stop the daemon: GPIO rule labels the model
 * has no class for (they can never switch the output).
 * @throws ConfigError listing every problem, each starting with its key.
 */
export async function preflight(config: Config, file?: string): Promise<{ warnings: string[] }> {
  const problems: string[] = [];
  const c = config;

  const model = async (key: string, path: string): Promise<ModelInfo | undefined> => {
    try {
      return await readModelInfo(path);
    } catch (err) {
      problems.push(`${key}: ${(err as Error).message}`);
      return undefined;
    }
  };
  const main = await model('model.path', c.model.path);
  const fallback = c.model.cpu_fallback ? await model('model.cpu_fallback', c.model.cpu_fallback) : undefined;
  // The one model-compatibility check (the classifier runs it too): every problem of each model, each named.
  const normalizationConfigured = c.preprocess.mean !== null || c.preprocess.std !== null;
  const wantsEdgeTpu = c.inference.delegate === 'edgetpu' || c.inference.engine === 'edgetpu';
  const edgeTpu = wantsEdgeTpu || c.model.cpu_fallback !== null;
  const size = c.preprocess.input_size;
  const inputSize: [number, number] | undefined = size === null ? undefined : Array.isArray(size) ? [size[0]!, size[1]!] : [size, size];
  for (const p of main ? modelProblems(main, { edgeTpu, normalizationConfigured, inputSize }) : []) problems.push(`${problemKey(p)}: ${p}`);
  for (const p of fallback ? modelProblems(fallback, { edgeTpu: false, normalizationConfigured, inputSize }) : []) {
    problems.push(`${problemKey(p, 'model.cpu_fallback')}: ${p}`);
  }

  let labels: Labels | undefined;
  if (c.model.labels) {
    try {
      labels = await readLabelsFile(c.model.labels);
    } catch (err) {
      problems.push(`model.labels: ${(err as Error).message}`);
    }
  }
  const pem: { ca?: Buffer; cert?: Buffer; key?: Buffer } = {};
  for (const key of ['ca', 'cert', 'key'] as const) {
    const path = c.mqtt.tls[key];
    if (!path) continue;
    try {
      pem[key] = await readFile(path);
    } catch (err) {
      problems.push(`mqtt.tls.${key}: ${unreadableFileError('the PEM file', path, err).message}`);
    }
  }
  // The same check Node.js makes when it connects, so unusable PEM contents show here, not at run time.
  for (const key of ['ca', 'cert', 'key'] as const) {
    const text = pem[key];
    if (!text) continue;
    const marker = key === 'key' ? /-----BEGIN [A-Z ]*PRIVATE KEY-----/ : /-----BEGIN CERTIFICATE-----/;
    if (!marker.test(text.toString('latin1'))) {
      problems.push(
        `mqtt.tls.${key}: ${c.mqtt.tls[key]} holds no PEM ${key === 'key' ? 'private key' : 'certificate'}: expected a '${key === 'key' ? '-----BEGIN PRIVATE KEY-----' : '-----BEGIN CERTIFICATE-----'}' block`,
      );
      continue;
    }
    try {
      createSecureContext({
        [key]: pem[key],
        ...(key === 'cert' && pem.key ? { key: pem.key } : {}),
        ...(key === 'key' && pem.cert ? { cert: pem.cert } : {}),
      });
    } catch (err) {
      problems.push(`mqtt.tls.${key}: ${c.mqtt.tls[key]} is not a usable PEM ${key === 'key' ? 'private key' : 'certificate'} (${(err as Error).message})`);
    }
  }
  if ((pem.cert === undefined) !== (pem.key === undefined) && problems.every((p) => !p.startsWith('mqtt.tls.'))) {
    problems.push(`mqtt.tls.${pem.cert ? 'key' : 'cert'}: a client certificate needs both mqtt.tls.cert and mqtt.tls.key`);
  }

  try {
    const parsed = parseSourceSpec(c.source.spec, c.source.rotation);
    if (parsed.kind === 'rpicam') findRpicamProgram();
    else if (parsed.kind === 'replay') await listReplayFiles(parsed.dir);
    else if (!findOnPath('ffmpeg')) throw new Error(`source ${redactUrl(c.source.spec)} is read through ffmpeg, which is not on PATH: ${FFMPEG_INSTALL_HINT}`);
  } catch (err) {
    problems.push(`source.spec: ${(err as Error).message}`);
  }
  if (c.inference.library !== null) {
    // Checked from the file, without loading it into this process.
    const why = await checkSharedLibrary(c.inference.library, REQUIRED_SYMBOLS);
    if (why) {
      problems.push(
        `inference.library: ${c.inference.library} is not a TensorFlow Lite C library (${why}): point it at a libtensorflowlite_c.so, or set it to null to use the bundled TFLite 2.9`,
      );
    }
  }
  if (wantsEdgeTpu && !c.model.cpu_fallback) {
    // The library only (present, the right architecture, loadable): whether an accelerator is plugged in is for start-up.
    try {
      await edgeTpuDelegate(c.inference.edgetpu_device ? { device: c.inference.edgetpu_device } : {});
    } catch (err) {
      problems.push(`inference.delegate: ${(err as Error).message}`);
    }
  }
  if (c.mqtt.base_topic !== null) {
    try {
      validateBaseTopic(c.mqtt.base_topic);
    } catch (err) {
      problems.push(`mqtt.base_topic: ${(err as Error).message}`);
    }
  }
  if (c.gpio.rules.length > 0) {
    const gpio = await gpioBackendProblem(c.gpio.backend);
    if (gpio !== undefined) problems.push(`gpio.backend: ${gpio}`);
  }
  if (problems.length > 0) throw new ConfigError(problems, file);

  // Labels the daemon would use: a labels file overrides the model's own (of the model that runs on the CPU, when it falls back).
  const modelLabels = labels?.entries.map((l) => l ?? '') ?? (main?.requires_edgetpu && fallback ? fallback : main)?.metadata?.labels ?? [];
  return { warnings: unknownLabelWarnings(gpioRules(c), modelLabels).map((w) => w.message) };
}

/** The key a model problem is about: preprocess.mean for a missing normalization, else the model's own key. */
function problemKey(problem: string, modelKey = 'model.path'): string {
  return /no normalization/.test(problem) ? 'preprocess.mean' : modelKey;
}
