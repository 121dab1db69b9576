/**
 * The worker thread that owns one inference engine (see `session.ts`), or
 * the child process that measures several (`mode: 'measure'`, see
 * `measureCandidates`) and exits.
 *
 * Serve protocol (plain objects):
 * - workerData `{mode: 'serve', engine, load: EngineLoadOptions, slots}`;
 * - worker → main `{type: 'ready', inputs, outputs, runtime, notes, slots}` where
 *   `slots[k] = {inputs: SharedArrayBuffer[], outputs: SharedArrayBuffer[]}`, one
 *   buffer per tensor, or `{type: 'load-error', message, engine}`;
 * - main → worker `{type: 'run', id, slot}`: the inputs of slot `slot` are copied
 *   into the engine, it runs, the outputs are copied into the slot;
 * - worker → main `{type: 'done', id, slot, inference_ms}` or `{type: 'run-error', id, slot, message}`.
 * Runs are handled in arrival order, one at a time: a second `run` sent while
 * the first computes starts as soon as it ends, without a round trip.
 *
 * Measure protocol (child process, advanced serialization): the parent sends
 * `{mode: 'measure', load, candidates, deadline, probe, maxRounds?}`; the
 * child answers `{type: 'measured', results}` (see `MeasureResult`) and exits.
 */
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { EngineLoadError, type EngineLoadOptions, type EngineName, type LoadedEngine } from './engine-api.js';
import { loadEngine } from './engines.js';

/** One engine × threads to time. */
export interface Candidate {
  readonly engine: EngineName;
  readonly threads: number;
}

/** What measuring one candidate gave. */
export interface MeasureResult extends Candidate {
  /** Why it could not run; absent when it ran. */
  readonly error?: string;
  /** Median time of one run, ms. */
  readonly p50_ms?: number;
  /** Lower quartile of the run times, ms: what the choice compares, since a busy moment only adds time. */
  readonly p25_ms?: number;
  readonly runs?: number;
  /** Every output after running the probe input, as bytes (for the agreement check). */
  readonly outputs?: ArrayBuffer[];
  readonly notes?: readonly string[];
}

interface ServeInit {
  readonly mode: 'serve';
  readonly engine: EngineName;
  readonly load: EngineLoadOptions;
  readonly slots: number;
}

interface MeasureInit {
  readonly mode: 'measure';
  readonly load: EngineLoadOptions;
  readonly candidates: readonly Candidate[];
  /** Date.now() by which measuring ends (the main thread counts the worker's start-up in). */
  readonly deadline: number;
  /** Most timed rounds (default 500). */
  readonly maxRounds?: number;
  /** Bytes of each input tensor, the same for every candidate. */
  readonly probe: readonly ArrayBuffer[];
}

const port = parentPort;

const asBytes = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

async function serve(options: ServeInit): Promise<void> {
  let engine: LoadedEngine;
  try {
    engine = await loadEngine(options.engine, options.load);
  } catch (err) {
    port!.postMessage({ type: 'load-error', message: (err as Error).message, engine: options.engine, kind: (err as Error).name });
    port!.close();
    return;
  }
  const slots = Array.from({ length: options.slots }, () => ({
    inputs: engine.inputs.map((t) => new SharedArrayBuffer(t.bytes)),
    outputs: engine.outputs.map((t) => new SharedArrayBuffer(t.bytes)),
  }));
  port!.postMessage({ type: 'ready', inputs: engine.inputs, outputs: engine.outputs, runtime: engine.runtime, notes: engine.notes, slots });
  const queue: Array<{ id: number; slot: number }> = [];
  let running = false;
  let closing = false;
  // The engine is deleted here, in its own thread, after the invocation in flight: a worker terminated with a
  // live interpreter leaves XNNPACK's thread pool behind, and the process crashed (SIGSEGV) at exit.
  const finish = (): void => {
    engine.close();
    port!.close();
  };
  const drain = async (): Promise<void> => {
    if (running) return;
    running = true;
    while (queue.length > 0) {
      const { id, slot } = queue.shift()!;
      const s = slots[slot]!;
      try {
        for (let i = 0; i < s.inputs.length; i++) asBytes(engine.input(i)).set(new Uint8Array(s.inputs[i]!));
        const t0 = performance.now();
        const pending = engine.run();
        if (pending) await pending;
        const ms = performance.now() - t0;
        for (let i = 0; i < s.outputs.length; i++) {
          const out = asBytes(engine.output(i));
          new Uint8Array(s.outputs[i]!).set(out.subarray(0, s.outputs[i]!.byteLength));
        }
        port!.postMessage({ type: 'done', id, slot, inference_ms: ms });
      } catch (err) {
        port!.postMessage({ type: 'run-error', id, slot, message: (err as Error).message });
      }
    }
    running = false;
    if (closing) finish();
  };
  port!.on('message', (msg: { type: string; id: number; slot: number }) => {
    if (msg.type === 'run' && !closing) {
      queue.push({ id: msg.id, slot: msg.slot });
      void drain();
    } else if (msg.type === 'close') {
      closing = true;
      queue.length = 0;
      if (!running) finish();
    }
  });
}

async function measure(options: MeasureInit): Promise<MeasureResult[]> {
  const loaded: Array<{ c: Candidate; engine: LoadedEngine; times: number[] }> = [];
  const results = new Map<Candidate, MeasureResult>();
  const deadline = performance.now() + (options.deadline - Date.now());
  for (const c of options.candidates) {
    if (loaded.length > 0 && performance.now() >= deadline) {
      results.set(c, { ...c, error: 'not measured: the time for measuring ran out before it was loaded' });
      continue;
    }
    try {
      const engine = await loadEngine(c.engine, { ...options.load, threads: c.threads });
      for (let i = 0; i < engine.inputs.length; i++) asBytes(engine.input(i)).set(new Uint8Array(options.probe[i]!).subarray(0, engine.inputs[i]!.bytes));
      // Two warm-up runs (XNNPACK packs its weights on the first; V8 tiers WebAssembly up over the first
      // few); the first run's output is the one compared with the reference.
      const t0 = performance.now();
      let pending = engine.run();
      if (pending) await pending;
      const outputs = engine.outputs.map((_, i) => asBytes(engine.output(i)).slice().buffer);
      // The second warm-up only where it is cheap: a slow engine would spend the budget on it.
      if (performance.now() - t0 < 100) {
        pending = engine.run();
        if (pending) await pending;
      }
      results.set(c, { ...c, outputs, notes: engine.notes });
      loaded.push({ c, engine, times: [] });
    } catch (err) {
      const message = err instanceof EngineLoadError || err instanceof Error ? err.message : String(err);
      results.set(c, { ...c, error: message });
    }
  }
  // Interleaved rounds, so that load from elsewhere on the machine hits every candidate alike.
  // From the third round on, a candidate whose median is over PRUNE_FACTOR times the best one's cannot
  // win: it stops running, to give the budget to those that can.
  const PRUNE_FACTOR = 2.5;
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  let active = [...loaded];
  for (let round = 0; active.length > 0 && round < (options.maxRounds ?? 500); round++) {
    if (round >= 1 && performance.now() >= deadline) break;
    for (const l of active) {
      const t0 = performance.now();
      const pending = l.engine.run();
      if (pending) await pending;
      l.times.push(performance.now() - t0);
    }
    if (round >= 2) {
      const best = Math.min(...active.map((l) => median(l.times)));
      active = active.filter((l) => median(l.times) <= PRUNE_FACTOR * best);
    }
  }
  for (const l of loaded) {
    const sorted = [...l.times].sort((a, b) => a - b);
    const prev = results.get(l.c)!;
    results.set(l.c, { ...prev, p50_ms: sorted[Math.floor(sorted.length / 2)]!, p25_ms: sorted[Math.floor(sorted.length / 4)]!, runs: sorted.length });
    l.engine.close();
  }
  const list = options.candidates.map((c) => results.get(c)!);
  return list;
}

if (port) {
  // A worker thread: serve one engine, or measure (tests, and where a child process is not wanted).
  const init = workerData as ServeInit | MeasureInit;
  if (init.mode === 'serve') void serve(init);
  else
    void measure(init).then((list) =>
      port.postMessage(
        { type: 'measured', results: list },
        list.flatMap((r) => r.outputs ?? []),
      ),
    );
} else if (process.send) {
  // A child process (`measureCandidates`): measure, answer, exit — its memory goes back to the system.
  process.once('message', (init: MeasureInit) => {
    void measure(init).then(
      (list) => process.send!({ type: 'measured', results: list }, () => process.exit(0)),
      (err: unknown) => process.send!({ type: 'measure-error', message: (err as Error).message }, () => process.exit(1)),
    );
  });
} else {
  throw new Error('inference-worker runs as a worker thread or a child process (started by InferenceSession or measureCandidates)');
}
