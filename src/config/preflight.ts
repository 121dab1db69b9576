import { access, constants } from 'node:fs/promises';
import { parseSourceSpec } from '../camera/source-spec.js';
import { readLabelsFile } from '../inference/labels.js';
import { readModelInfo } from '../inference/tflite-model.js';
import type { ModelInfo } from '../inference/types.js';
import { validateBaseTopic } from '../mqtt/topics.js';
import { ConfigError } from './load.js';
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
 * Not checked here (they need the hardware): that the camera opens, that the
 * Edge TPU answers, that /sys/class/gpio is writable, that the broker is up.
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
  for (const key of ['ca', 'cert', 'key'] as const) {
    const path = c.mqtt.tls[key];
    if (!path) continue;
    try {
      await access(path, constants.R_OK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      problems.push(`mqtt.tls.${key}: cannot read ${path}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
    }
  }

  try {
    const s = c.source;
    parseSourceSpec(s.spec, { width: s.width, height: s.height, fps: s.fps, rotation: s.rotation, hflip: s.hflip, vflip: s.vflip, loop: s.loop, jpegQuality: s.jpeg_quality });
  } catch (err) {
    problems.push(`source.spec: ${(err as Error).message}`);
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
