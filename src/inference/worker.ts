/**
 * The worker thread that owns the TFLite interpreter (see `runner.ts`).
 *
 * It is the only JavaScript realm that loads tfjs-tflite-node's N-API addon
 * (whose TensorInfo class keeps one static constructor reference, so it must
 * live in exactly one realm), and it loads the `.node` file directly rather
 * than the package index, which would also load @tensorflow/tfjs-core (about
 * 80 MB on disk, about 19 MB of extra RSS measured here). `infer()` is
 * synchronous and blocks this thread for the length of one inference, which
 * is why it is not the main thread.
 *
 * Protocol (messages are plain objects):
 * - workerData `{addon, model, threads, delegate?}`: addon path, model bytes
 *   (an ArrayBuffer, transferred), interpreter threads, external delegate;
 * - worker → main `{type: 'ready', inputs, outputs}` with each tensor's
 *   `{id, name, shape: number[], dtype}`, or `{type: 'load-error', message}`;
 * - main → worker `{type: 'infer', id, input}`: input is a typed array of the
 *   first input tensor's type and element count (transferred);
 * - worker → main `{type: 'result', id, outputs, inference_ms, input}`: copies
 *   of every output tensor, the time spent in `infer()` (ms, performance.now),
 *   and the input array handed back for reuse (both transferred); or
 *   `{type: 'infer-error', id, message, input}`.
 */
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';

interface AddonTensor {
  readonly id: number;
  readonly name: string;
  readonly shape: string;
  readonly dataType: string;
  data(): ArrayLike<number> & { set(a: ArrayLike<number>): void; slice(): { buffer: ArrayBuffer }; length: number };
}

interface AddonInterpreter {
  getInputs(): AddonTensor[];
  getOutputs(): AddonTensor[];
  infer(): boolean;
}

interface WorkerInit {
  readonly addon: string;
  readonly model: ArrayBuffer;
  readonly threads: number;
  readonly delegate?: { path: string; options: Array<[string, string]> };
}

const port = parentPort;
if (!port) throw new Error('worker.ts runs only as a worker thread (started by InterpreterRunner)');

const init = workerData as WorkerInit;
const describe = (t: AddonTensor) => ({
  id: t.id,
  name: t.name,
  shape: t.shape === '' ? [] : t.shape.split(',').map(Number),
  dtype: t.dataType,
});

function load(): AddonInterpreter | null {
  try {
    const addon = createRequire(import.meta.url)(init.addon) as {
      Interpreter: new (model: ArrayBuffer, options: object) => AddonInterpreter;
    };
    return new addon.Interpreter(init.model, {
      threads: init.threads,
      ...(init.delegate ? { delegate: init.delegate } : {}),
    });
  } catch (err) {
    port!.postMessage({ type: 'load-error', message: String((err as Error)?.message ?? err) });
    port!.close(); // nothing else keeps the thread alive: it exits with code 0
    return null;
  }
}

function serve(interpreter: AddonInterpreter): void {
  const inputs = interpreter.getInputs();
  const outputs = interpreter.getOutputs();
  const inputData = inputs[0]?.data();
  port!.postMessage({ type: 'ready', inputs: inputs.map(describe), outputs: outputs.map(describe) });

  port!.on('message', (msg: { type: string; id: number; input: ArrayLike<number> & { buffer: ArrayBuffer } }) => {
    if (msg.type !== 'infer') return;
    try {
      if (inputData) inputData.set(msg.input);
      const t0 = performance.now();
      interpreter.infer();
      const inferenceMs = performance.now() - t0;
      const copies = outputs.map((t) => t.data().slice());
      port!.postMessage({ type: 'result', id: msg.id, outputs: copies, inference_ms: inferenceMs, input: msg.input }, [
        ...copies.map((c) => c.buffer),
        msg.input.buffer,
      ]);
    } catch (err) {
      port!.postMessage({ type: 'infer-error', id: msg.id, message: String((err as Error)?.message ?? err), input: msg.input });
    }
  });
}

const interpreter = load();
if (interpreter) serve(interpreter);
