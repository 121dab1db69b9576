import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import type { ExternalDelegate } from './engines.js';
import { bundledLibraryPath } from './tflite-c.js';

/**
 * The child-process side of `probeExternalDelegate`, a CommonJS script for
 * `node -e` (so it runs the same from the TypeScript sources and the built
 * code): argv = koffi's path, the TFLite library, the model, the delegate
 * as JSON. Exit 0 when the interpreter was created and allocated with the
 * delegate; 3 with the reason on stderr when TFLite or the plugin refused.
 * A crash (SIGSEGV) shows as the child's signal.
 */
const CHILD = `
process.on('uncaughtException', (e) => { process.stderr.write(String(e && e.message || e)); process.exit(3); });
const [koffiPath, libPath, modelPath, delegateJson] = process.argv.slice(1);
const koffi = require(koffiPath);
const fs = require('fs');
const d = JSON.parse(delegateJson);
const lib = koffi.load(libPath);
const f = (s) => lib.func(s);
const modelCreate = f('void *TfLiteModelCreate(const void *data, size_t size)');
const optionsCreate = f('void *TfLiteInterpreterOptionsCreate(void)');
const addDelegate = f('void TfLiteInterpreterOptionsAddDelegate(void *o, void *d)');
const create = f('void *TfLiteInterpreterCreate(void *m, void *o)');
const allocate = f('int TfLiteInterpreterAllocateTensors(void *i)');
const plugin = koffi.load(d.path);
const createDelegate = plugin.func('void *tflite_plugin_create_delegate(const char **keys, const char **values, size_t n, void *report)');
const bytes = fs.readFileSync(modelPath);
const model = modelCreate(bytes, bytes.length);
if (!model) { process.stderr.write('TFLite could not read the model'); process.exit(3); }
const delegate = createDelegate(d.options.map((o) => o[0]), d.options.map((o) => o[1]), d.options.length, null);
if (!delegate) { process.stderr.write('the plugin returned no delegate'); process.exit(3); }
const options = optionsCreate();
addDelegate(options, delegate);
const interpreter = create(model, options);
if (!interpreter) { process.stderr.write('TFLite could not create the interpreter with the delegate'); process.exit(3); }
if (allocate(interpreter) !== 0) { process.stderr.write('TFLite could not allocate the tensors with the delegate'); process.exit(3); }
`;

/** Why the probe failed: `message` names the delegate, the model and what happened. */
export class DelegateProbeError extends Error {
  override readonly name = 'DelegateProbeError';
}

/**
 * Loads `modelPath` with the external delegate in a child Node.js process,
 * through the same TFLite C library, so that a delegate that crashes the
 * interpreter (libedgetpu with no Edge TPU attached, a library that is not a
 * delegate: SIGSEGV) kills the child, not the daemon. Resolves when it
 * worked; rejects with DelegateProbeError saying what happened (crashed with
 * a signal, returned no delegate, refused the model, or timed out).
 */
export async function probeExternalDelegate(modelPath: string, delegate: ExternalDelegate, library?: string, timeoutMs = 30_000): Promise<void> {
  const koffiPath = createRequire(import.meta.url).resolve('koffi');
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const device = delegate.options.find(([k]) => k === 'device')?.[1];
  const what = `the Edge TPU delegate ${delegate.path}${device ? ` (device ${device})` : ''}`;
  const args = ['-e', CHILD, koffiPath, library ?? bundledLibraryPath(), modelPath, JSON.stringify(delegate)];
  await new Promise<void>((resolve, reject) => {
    execFile(process.execPath, args, { env, timeout: timeoutMs, maxBuffer: 1024 * 1024 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const e = err as Error & { killed?: boolean; signal?: string | null };
      if (e.killed) return reject(new DelegateProbeError(`${what} did not load ${modelPath} within ${timeoutMs} ms`));
      if (e.signal) {
        return reject(
          new DelegateProbeError(
            `${what} crashed the TFLite interpreter while loading ${modelPath} (${e.signal}): is an Edge TPU attached${device ? ` as ${device}` : ''}, and is it the Edge TPU runtime?`,
          ),
        );
      }
      const reason = (stderr.trim().split('\n').filter((l) => !/^INFO:/.test(l))[0] || e.message).replace(/^ERROR:\s*/, '');
      let message = `${what} could not load ${modelPath}: ${reason}`;
      if (/returned no delegate/.test(reason)) message += ' (is an Edge TPU attached, and is the library the Edge TPU runtime?)';
      reject(new DelegateProbeError(message));
    });
  });
}
