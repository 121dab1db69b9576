import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { type ChooseOptions, candidatesFor, chooseEngine, correlation, disagreement, formatTable, maxAutoThreads } from '../../src/inference/engine-choice.js';
import type { Candidate, MeasureResult } from '../../src/inference/inference-worker.js';
import { measureCandidates } from '../../src/inference/session.js';
import { model } from '../helpers/assets.js';

t.test('candidates: every engine × 1 … cores − 1 for auto, LiteRT.js single-threaded', async (t) => {
  t.same(
    [1, 2, 3, 4].map((cores) => maxAutoThreads(cores)),
    [1, 1, 2, 3],
    'one core is left for the frames',
  );
  t.same(candidatesFor('auto', 'auto', 2, true), [
    { engine: 'tflite', threads: 1 },
    { engine: 'tflite-xnnpack', threads: 1 },
    { engine: 'litert-wasm', threads: 1 },
  ]);
  t.same(candidatesFor('auto', 'auto', 3, true), [
    { engine: 'tflite', threads: 1 },
    { engine: 'tflite-xnnpack', threads: 1 },
    { engine: 'litert-wasm', threads: 1 },
    { engine: 'tflite', threads: 2 },
    { engine: 'tflite-xnnpack', threads: 2 },
  ]);
  t.same(
    candidatesFor('tflite-xnnpack', 'auto', 4, true),
    [1, 2, 3].map((n) => ({ engine: 'tflite-xnnpack', threads: n })),
  );
  t.same(candidatesFor('auto', 2, 4, false), [
    { engine: 'tflite', threads: 2 },
    { engine: 'tflite-xnnpack', threads: 2 },
  ]);
});

t.test("agreement: top-1 within each other's top 5, and correlated scores", async (t) => {
  // 30 classes: a clear class 3, the rest a slope.
  const ref = Array.from({ length: 30 }, (_, i) => (i === 3 ? 0.6 : 0.01 + i / 3000));
  const close = ref.map((x, i) => x + (i % 2 ? 0.02 : -0.01)); // off by several steps everywhere, same shape
  t.equal(disagreement(ref, close, 1 / 256), null, 'quantization-sized differences agree');
  const swapped = ref.slice();
  [swapped[3], swapped[10]] = [swapped[10]!, swapped[3]!];
  t.equal(disagreement(ref, swapped, 1 / 256), "its top-1 is class 10 (0.6), the reference's class 3 (0.6)");
  const shuffled = ref.map((_, i) => ref[(i * 7 + 3) % 30]!);
  t.match(disagreement(ref, shuffled, 1 / 256), /^its top-1 is class|^its scores correlate with the reference's by r = /);
  const secondPlace = ref.slice();
  secondPlace[5] = 0.61; // class 5 first: it is not in the reference's top 5
  t.equal(disagreement(ref, secondPlace, 1 / 256), "its top-1 is class 5 (0.61), the reference's class 3 (0.6)");
  t.equal(
    disagreement(
      ref,
      ref.map(() => 1 / 30),
      1 / 256,
    ),
    "its top-1 is class 0 (0.03333), the reference's class 3 (0.6)",
    'constant scores',
  );
  // Same top-1, everything else reversed: the top-1 check passes, the correlation does not.
  const slope = Array.from({ length: 30 }, (_, i) => i / 100);
  const reversed = slope.map((x, i) => (i === 29 ? x : 0.28 - x));
  t.match(disagreement(slope, reversed, 1 / 256), /^its scores correlate with the reference's by r = -?0\.\d+ \(at least 0\.9 expected\)$/);
  t.equal(disagreement([0.45, 0.46, 0.09], [0.46, 0.45, 0.09], 0.01), null, 'a top-1 tied within two steps in the reference is not a disagreement');
  t.equal(
    disagreement([0.2, 0.7, 0.1], [0.7, 0.2, 0.1], 0.01),
    "its top-1 is class 0 (0.7), the reference's class 1 (0.7)",
    'with few classes the top-1 must match',
  );
  t.equal(disagreement([1, 2], [1, 2, 3], 1), 'it gives 3 scores, the reference 2');
  t.equal(disagreement([0, 1], [NaN, 1], 1), 'its score of class 0 is NaN');
  t.equal(correlation([1, 2, 3], [2, 4, 6]), 1);
});

/** A stand-in measurement: engine → [p50 ms, scores]; `wrong` returns other scores; `broken` fails to load. */
function standIn(times: Record<string, number>, calls: Candidate[][]): typeof measureCandidates {
  const good = Uint8Array.from([10, 200, 30, 16]);
  const wrong = Uint8Array.from([200, 10, 30, 16]);
  return async (_load, candidates) => {
    calls.push([...candidates]);
    return candidates.map((c): MeasureResult => {
      const key = `${c.engine}@${c.threads}`;
      if (c.engine === 'litert-wasm') return { ...c, error: 'litert-wasm cannot run m.tflite: Element type INT8 is not supported.' };
      const scores = c.engine === 'tflite-xnnpack' && c.threads === 2 ? wrong : good;
      return { ...c, p50_ms: times[key] ?? 50, runs: 10, outputs: [scores.slice().buffer] };
    });
  };
}

function options(dir: string, bytes: Uint8Array, measure: typeof measureCandidates, extra: Partial<ChooseOptions> = {}): ChooseOptions {
  return {
    load: { modelBytes: bytes, model: 'm.tflite', threads: 1 },
    engine: 'auto',
    threads: 'auto',
    probe: [new Uint8Array(4)],
    scores: { index: 0, dtype: 'uint8', scale: 1 / 256, zero_point: 0 },
    cacheFile: path.join(dir, 'engine-choice.json'),
    measure,
    machine: 'test machine x2',
    cores: 3,
    ...extra,
  };
}

t.test('auto picks the fastest engine that agrees, skips one that returns wrong scores, and caches the choice', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'choice-'));
  const calls: Candidate[][] = [];
  // tflite-xnnpack with 2 threads is the fastest but returns wrong scores (a stand-in for a broken engine).
  const measure = standIn({ 'tflite@1': 50, 'tflite@2': 60, 'tflite-xnnpack@1': 6, 'tflite-xnnpack@2': 3 }, calls);
  const bytes = Uint8Array.from([1, 2, 3]);
  const choice = await chooseEngine(options(dir, bytes, measure));
  t.equal(choice.engine, 'tflite-xnnpack');
  t.equal(choice.threads, 1);
  t.equal(choice.cached, false);
  t.same(
    choice.table.map((r) => [r.engine, r.threads, r.status]),
    [
      ['tflite', 1, 'ok'],
      ['tflite-xnnpack', 1, 'chosen'],
      ['litert-wasm', 1, 'failed'],
      ['tflite', 2, 'ok'],
      ['tflite-xnnpack', 2, 'disagrees'],
    ],
  );
  t.match(choice.warnings, [
    /^engine litert-wasm \(1 thread\) skipped: litert-wasm cannot run m\.tflite: Element type INT8/,
    /^engine tflite-xnnpack \(2 threads\) skipped: its output disagrees with tflite: its top-1 is class 0/,
  ]);
  t.match(formatTable(choice.table), /tflite-xnnpack\s+1\s+6\.00\s+-\s+chosen/);

  const again = await chooseEngine(options(dir, bytes, measure));
  t.equal(calls.length, 1, 'a restart does not measure again');
  t.same([again.engine, again.threads, again.cached], ['tflite-xnnpack', 1, true]);

  const changed = await chooseEngine(options(dir, Uint8Array.from([1, 2, 4]), measure));
  t.equal(calls.length, 2, 'a changed model is measured again');
  t.equal(changed.cached, false);
  const cache = JSON.parse(readFileSync(path.join(dir, 'engine-choice.json'), 'utf8'));
  t.equal(Object.keys(cache.entries).length, 2, 'both models are in the cache');
  t.match(
    Object.keys(cache.entries)[0],
    /^model [0-9a-f]{64}; library libtensorflowlite_c\.so [0-9a-f]{16}; litert 2\.5\.3; machine test machine x2; engine auto threads auto \(1-2\)$/,
  );

  const otherMachine = await chooseEngine(options(dir, bytes, measure, { machine: 'another machine x4' }));
  t.equal(otherMachine.cached, false, 'another machine measures again');
  t.equal(calls.length, 3);
});

t.test('a corrupt cache file is ignored with a warning and rewritten', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'choice-'));
  const file = path.join(dir, 'engine-choice.json');
  const calls: Candidate[][] = [];
  const measure = standIn({}, calls);
  for (const content of ['{not json', JSON.stringify({ version: 0, entries: {} }), JSON.stringify({ version: 1, entries: { k: { engine: 'tflite' } } })]) {
    writeFileSync(file, content);
    const choice = await chooseEngine(options(dir, Uint8Array.from([9]), measure));
    t.match(
      choice.warnings[0],
      new RegExp(`^the engine choice cache ${file} is corrupt or from another version \\(.*\\): ignored, engines are measured again and the file rewritten$`),
    );
    t.equal(JSON.parse(readFileSync(file, 'utf8')).version, 1, 'rewritten');
  }
  t.equal(calls.length, 3);
});

t.test('no engine can run the model: one error with every reason', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'choice-'));
  const measure: typeof measureCandidates = async (_l, cs) => cs.map((c) => ({ ...c, error: `${c.engine} cannot run m.tflite: nope` }));
  await t.rejects(chooseEngine(options(dir, Uint8Array.from([1]), measure, { threads: 1 })), {
    message:
      'no inference engine can run m.tflite (tflite: tflite cannot run m.tflite: nope; tflite-xnnpack: tflite-xnnpack cannot run m.tflite: nope; litert-wasm: litert-wasm cannot run m.tflite: nope)',
  });
});

t.test('fixed settings are returned as given, without measuring', async (t) => {
  const choice = await chooseEngine(options('/nonexistent', Uint8Array.from([1]), async () => t.fail('measured') as never, { engine: 'tflite', threads: 1 }));
  t.same([choice.engine, choice.threads, choice.table], ['tflite', 1, []]);
});

t.test('real measurement: every candidate loaded, timed and its outputs returned, in one worker', async (t) => {
  const bytes = readFileSync(model('mobilenet_v1_0.25_128_quant.tflite'));
  const results = await measureCandidates(
    { modelBytes: bytes, model: 'v1.tflite', threads: 1 },
    candidatesFor('auto', 'auto', 3, true),
    [new Uint8Array(49152).fill(120)],
    60_000,
    5,
  );
  t.same(
    results.map((r) => `${r.engine}@${r.threads}`),
    ['tflite@1', 'tflite-xnnpack@1', 'litert-wasm@1', 'tflite@2', 'tflite-xnnpack@2'],
  );
  for (const r of results) {
    t.notOk(r.error, `${r.engine}@${r.threads} loaded`);
    // A candidate over 2.5× the best median stops early: it cannot win.
    t.ok(r.p50_ms! > 0 && r.runs! >= 1, `${r.engine}@${r.threads}: ${r.runs} runs, p50 ${r.p50_ms} ms`);
    t.equal(r.outputs?.[0]?.byteLength, 1001);
  }
});

t.test('measuring is bounded: once the time is up, the remaining candidates are not loaded', async (t) => {
  const bytes = readFileSync(model('mobilenet_v1_0.25_128_quant.tflite'));
  const results = await measureCandidates(
    { modelBytes: bytes, model: 'v1.tflite', threads: 1 },
    candidatesFor('auto', 'auto', 3, true),
    [new Uint8Array(49152)],
    1,
  );
  t.notOk(results[0]!.error, 'the first candidate (the reference) is always measured');
  t.ok(results[0]!.runs! >= 1);
  for (const r of results.slice(1)) t.equal(r.error, 'not measured: the time for measuring ran out before it was loaded', `${r.engine}@${r.threads}`);
});

t.test('openModel: any model on the configured engine, chosen by measurement; run arbitrary tensors', async (t) => {
  const { openModel } = await import('../../src/inference/open-model.js');
  const opened = await openModel({ modelPath: model('dense_2x_minus_1.tflite'), cacheFile: null });
  t.teardown(() => opened.session.close());
  t.same(
    opened.info.inputs.map((i) => [i.name, i.shape, i.dtype]),
    [['dense_input', [1, 1], 'float32']],
  );
  t.same(opened.session.inputs[0]!.shape, [1, 1]);
  t.ok(['tflite', 'tflite-xnnpack'].includes(opened.choice.engine), `chosen ${opened.choice.engine}`);
  const litert = opened.choice.table.find((r) => r.engine === 'litert-wasm');
  t.equal(litert?.status, 'failed', 'LiteRT.js refuses this model');
  const { outputs } = await opened.session.run([Float32Array.of(10)]);
  // The walkthrough's neuron: w = 1.9974765, b = -0.99217343 (SOURCES.md): 10 → 18.9826.
  t.ok(Math.abs((outputs[0] as Float32Array)[0]! - (1.9974765 * 10 - 0.99217343)) < 1e-4, `10 → ${(outputs[0] as Float32Array)[0]}`);
  t.equal(disagreement([18.98], [18.99], 0), null, 'one value: close values agree');
  t.equal(disagreement([18.98], [12], 0), "its outputs differ from the reference's by 6.98 (allowed 0.1898)");
});
