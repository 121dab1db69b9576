import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { FFMPEG_INSTALL_HINT } from '../camera/ffmpeg.js';
import { listReplayFiles } from '../camera/replay.js';
import { findOnPath, findRpicamProgram } from '../camera/rpicam.js';
import { edgeTpuDelegate } from '../inference/delegate.js';
import { redactUrl } from '../service/log.js';
import { parseSourceSpec } from '../camera/source-spec.js';
import { readLabelsFile } from '../inference/labels.js';
import { checkScoresOutput } from '../inference/postprocess.js';
import { customOpMessage } from '../inference/runner.js';
import { EDGETPU_CUSTOM_OP, readModelInfo } from '../inference/tflite-model.js';
import { checkImageInput } from '../preprocess/preprocess.js';
import type { ModelInfo } from '../inference/types.js';
import { validateBaseTopic } from '../mqtt/topics.js';
import { ConfigError } from './load.js';
import { sourceOptions } from './options.js';
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
 * `inference.delegate: edgetpu` and no CPU fallback the Edge TPU library
 * loads. Not checked here (they need the hardware or the network): that the
 * camera opens, that an Edge TPU is plugged in, that /sys/class/gpio is
 * writable, that the broker is up.
 * @throws ConfigError listing every problem, each starting with its key.
 */
export async function preflight(config: Config, file?: string): Promise<void> {
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
  if (fallback?.requires_edgetpu) {
    problems.push(`model.cpu_fallback: ${c.model.cpu_fallback} is compiled for the Edge TPU (it holds edgetpu-custom-op): expected a CPU model`);
  }
  if (main?.requires_edgetpu && c.inference.delegate === 'cpu' && !c.model.cpu_fallback) {
    problems.push(
      `model.path: ${c.model.path} is compiled for the Edge TPU and cannot run on the CPU: set inference.delegate to edgetpu, or use the model's CPU version`,
    );
  }
  // What the daemon would feed and read: one RGB image input, class scores out, no op this runtime lacks.
  for (const [key, info] of [['model.path', main], ['model.cpu_fallback', fallback]] as const) {
    if (!info) continue;
    try {
      if (info.inputs.length !== 1) throw new Error(`${info.path} has ${info.inputs.length} inputs: expected one image input`);
      checkImageInput(info.inputs[0]!);
      if (!info.outputs[0]) throw new Error(`${info.path} has no output tensor`);
      checkScoresOutput(info.outputs[0]);
      const missing = info.custom_ops.find((op) => !(op === EDGETPU_CUSTOM_OP && (info.requires_edgetpu || c.inference.delegate === 'edgetpu')));
      if (missing !== undefined) throw new Error(customOpMessage(missing, info.path));
    } catch (err) {
      problems.push(`${key}: ${(err as Error).message}`);
    }
  }
  const cpuModel = main?.requires_edgetpu ? fallback : main;
  const input = cpuModel?.inputs[0];
  if (cpuModel && input?.dtype === 'float32' && !cpuModel.metadata?.normalization && c.preprocess.mean === null && c.preprocess.std === null) {
    problems.push(
      `preprocess.mean: ${cpuModel.path} has a float32 input and no normalization in its metadata: set preprocess.mean and preprocess.std (e.g. 127.5 and 127.5 for inputs in [-1,1], 0 and 255 for [0,1])`,
    );
  }

  if (c.model.labels) {
    try {
      await readLabelsFile(c.model.labels);
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
      const code = (err as NodeJS.ErrnoException).code;
      problems.push(`mqtt.tls.${key}: cannot read ${path}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
    }
  }
  // The same check Node.js makes when it connects, so unusable PEM contents show here, not at run time.
  for (const key of ['ca', 'cert', 'key'] as const) {
    const text = pem[key];
    if (!text) continue;
    const marker = key === 'key' ? /-----BEGIN [A-Z ]*PRIVATE KEY-----/ : /-----BEGIN CERTIFICATE-----/;
    if (!marker.test(text.toString('latin1'))) {
      problems.push(`mqtt.tls.${key}: ${c.mqtt.tls[key]} holds no PEM ${key === 'key' ? 'private key' : 'certificate'}: expected a '${key === 'key' ? '-----BEGIN PRIVATE KEY-----' : '-----BEGIN CERTIFICATE-----'}' block`);
      continue;
    }
    try {
      createSecureContext({ [key]: pem[key], ...(key === 'cert' && pem.key ? { key: pem.key } : {}), ...(key === 'key' && pem.cert ? { cert: pem.cert } : {}) });
    } catch (err) {
      problems.push(`mqtt.tls.${key}: ${c.mqtt.tls[key]} is not a usable PEM ${key === 'key' ? 'private key' : 'certificate'} (${(err as Error).message})`);
    }
  }
  if ((pem.cert === undefined) !== (pem.key === undefined) && problems.every((p) => !p.startsWith('mqtt.tls.'))) {
    problems.push(`mqtt.tls.${pem.cert ? 'key' : 'cert'}: a client certificate needs both mqtt.tls.cert and mqtt.tls.key`);
  }

  try {
    const parsed = parseSourceSpec(c.source.spec, sourceOptions(c));
    if (parsed.kind === 'rpicam') findRpicamProgram();
    else if (parsed.kind === 'replay') await listReplayFiles(parsed.dir);
    else if (!findOnPath('ffmpeg')) throw new Error(`source ${redactUrl(c.source.spec)} is read through ffmpeg, which is not on PATH: ${FFMPEG_INSTALL_HINT}`);
  } catch (err) {
    problems.push(`source.spec: ${(err as Error).message}`);
  }
  if (c.inference.delegate === 'edgetpu' && !c.model.cpu_fallback) {
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
  if (problems.length > 0) throw new ConfigError(problems, file);
}
