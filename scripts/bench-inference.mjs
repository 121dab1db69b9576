// Inference figures for `npm run bench`: per model, the engine × threads
// table and the choice, the independent C floor (scripts/tflite-floor.c,
// compiled here when `cc` exists), the session's own inference p50 on the
// chosen engine, worker thread against async FFI, and the pipeline rate.
// Runs the built code (dist/). Everything is measured in this one run, side
// by side, and compared as ratios: the machine may be shared and noisy.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = (p) => path.join(root, 'dist', p);
const { InferenceSession, machineCores } = await import(dist('inference/session.js'));
const { chooseEngine, formatTable } = await import(dist('inference/engine-choice.js'));
const { FramePipeline } = await import(dist('inference/pipeline.js'));
const { TfLiteLibrary, TfLiteInterpreter, bundledLibraryPath } = await import(dist('inference/tflite-c.js'));
const { parseModel } = await import(dist('inference/tflite-model.js'));

export const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const f2 = (x) => (x === undefined ? '-' : x.toFixed(2));

export function table(headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => String(c).padEnd(widths[i])).join('  ').trimEnd();
  console.log(line(headers));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
  console.log();
}

/** Compiles the C floor program into a temporary folder; null without a C compiler. */
export function buildFloor() {
  if (spawnSync('cc', ['--version']).status !== 0) return null;
  const out = path.join(mkdtempSync(path.join(tmpdir(), 'tflite-floor-')), 'tflite-floor');
  execFileSync('cc', ['-O2', '-o', out, path.join(root, 'scripts', 'tflite-floor.c'), '-ldl']);
  return out;
}

/** Median ms of TfLiteInterpreterInvoke from the C program, or an error string. */
export function floor(program, library, modelPath, threads, flags, runs = 15) {
  const r = spawnSync(program, [library, modelPath, String(runs), String(threads), String(flags)], { encoding: 'utf8', timeout: 120_000 });
  const out = (r.stdout ?? '').trim();
  if (r.status !== 0) return { error: out.replace(/^error: /, '') || `exit ${r.status}` };
  const [p50, min] = out.split(' ').map(Number);
  return { p50, min };
}

/** The model's input tensor for a real image: stretched to H×W; uint8 as is, int8 − 128, float (x − 127.5) / 127.5. */
export async function inputFor(file, info) {
  const t = info.inputs[0];
  const [, h, w] = t.shape;
  const rgb = await sharp(file).removeAlpha().resize(w, h, { fit: 'fill' }).raw().toBuffer();
  if (t.dtype === 'uint8') return new Uint8Array(rgb);
  if (t.dtype === 'int8') return Int8Array.from(rgb, (p) => p - 128);
  return Float32Array.from(rgb, (p) => (p - 127.5) / 127.5);
}

/**
 * Per model: engine table (budget `budgetMs`), choice, the session's p50 on
 * the choice, and the C floor. Returns one summary row per model.
 */
export async function benchModels(models, { image, budgetMs = 3000, runs = 30, floorProgram = null, log = console.log } = {}) {
  const library = bundledLibraryPath();
  const cores = machineCores();
  const summary = [];
  for (const modelPath of models) {
    const name = path.basename(modelPath, '.tflite');
    const bytes = readFileSync(modelPath);
    const info = await parseModel(bytes, modelPath);
    if (info.custom_ops.length > 0) {
      log(`${name}: skipped (custom op ${info.custom_ops.join(', ')})\n`);
      continue;
    }
    const out = info.outputs[0];
    const probe = await inputFor(image, info);
    let choice;
    try {
      choice = await chooseEngine({
        load: { modelBytes: bytes, model: name, threads: 1 },
        engine: 'auto',
        threads: 'auto',
        probe: [probe],
        scores: { index: 0, dtype: out.dtype, scale: out.quantization[0], zero_point: out.quantization[1] },
        cacheFile: null,
        budgetMs,
      });
    } catch (err) {
      log(`${name}: ${err.message}\n`);
      continue;
    }
    log(`${name} (${info.inputs[0].shape.join('x')} ${info.inputs[0].dtype}): engines × threads, ${budgetMs} ms budget`);
    log(formatTable(choice.table));
    const session = await InferenceSession.open({ modelBytes: bytes, model: name, engine: choice.engine, threads: choice.threads });
    const times = [];
    for (let i = 0; i < runs + 3; i++) {
      const r = await session.run([probe]);
      if (i >= 3) times.push(r.inference_ms);
    }
    await session.close();
    const ours = pct(times, 50);
    const fastest = Math.min(...choice.table.filter((r) => r.p50_ms !== undefined && (r.status === 'chosen' || r.status === 'ok')).map((r) => r.p50_ms));
    const floors = [];
    if (floorProgram) {
      for (let t = 1; t <= cores; t++) {
        floors.push({ kind: 'default', threads: t, ...floor(floorProgram, library, modelPath, t, -1) });
        floors.push({ kind: 'xnnpack-qs8', threads: t, ...floor(floorProgram, library, modelPath, t, 1) });
      }
      log(`  C floor (${path.basename(library)}): ` + floors.map((f) => `${f.kind}@${f.threads} ${f.error ? `(${f.error})` : f2(f.p50)}`).join(', '));
    }
    const okFloors = floors.filter((f) => !f.error).map((f) => f.p50);
    const bestFloor = okFloors.length ? Math.min(...okFloors) : undefined;
    log(`  chosen ${choice.engine}@${choice.threads}; the session on it: p50 ${f2(ours)} ms over ${runs} runs\n`);
    summary.push({ name, engine: `${choice.engine}@${choice.threads}`, ours, fastest, bestFloor });
  }
  return summary;
}

/** Worker thread (session.run round trip) against async FFI (invokeAsync on the main thread): p50 ms and event-loop delay p99. */
export async function workerVersusAsync(modelPath, runs = 100) {
  const bytes = readFileSync(modelPath);
  const session = await InferenceSession.open({ modelBytes: bytes, model: 'm', engine: 'tflite-xnnpack', threads: 1 });
  const input = new Uint8Array(session.inputs[0].bytes).fill(100);
  const lib = TfLiteLibrary.load();
  const it = TfLiteInterpreter.create(lib, bytes, { threads: 1, xnnpackFlags: 1 });
  const rows = [];
  for (let round = 0; round < 2; round++) {
    for (const [label, once] of [
      ['worker thread', async () => void (await session.run([input]))],
      ['async FFI (libuv pool)', async () => {
        new Uint8Array(it.inputView(0)).set(input);
        await it.invokeAsync();
        new Uint8Array(it.outputView(0)).slice();
      }],
    ]) {
      const h = monitorEventLoopDelay({ resolution: 1 });
      h.enable();
      const times = [];
      for (let i = 0; i < runs; i++) {
        const t0 = performance.now();
        await once();
        times.push(performance.now() - t0);
      }
      h.disable();
      if (round === 1) rows.push([label, f2(pct(times, 50)), f2(pct(times, 95)), (h.percentile(99) / 1e6).toFixed(1)]);
    }
  }
  it.delete();
  await session.close();
  return rows;
}

/** The pipeline fed faster than the model for `seconds`: classified rate against 1000 / inference p50. */
export async function pipelineRate(modelPath, engine, threads, jpeg, seconds = 5) {
  const bytes = readFileSync(modelPath);
  const info = await parseModel(bytes, modelPath);
  const [, h, w] = info.inputs[0].shape;
  const session = await InferenceSession.open({ modelBytes: bytes, model: 'm', engine, threads });
  const inf = [];
  const pre = [];
  const p = new FramePipeline(
    {
      tryAcquire: () => session.tryAcquire(),
      release: (s) => session.release(s),
      prepare: async (frame, slot) => {
        const t0 = performance.now();
        const rgb = await sharp(frame).resize(w, h, { fit: 'fill' }).raw().toBuffer();
        slot.inputs[0].set(rgb);
        pre.push(performance.now() - t0);
      },
      invoke: (slot) => session.invoke(slot),
      finish: (_f, _s, ms) => inf.push(ms),
    },
    () => {},
    (_f, e) => console.error(e),
  );
  const t0 = performance.now();
  const feeder = setInterval(() => p.offer(jpeg), 1);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  clearInterval(feeder);
  const elapsed = (performance.now() - t0) / 1000;
  const s = p.stats();
  await p.close();
  await session.close();
  return { classified: s.completed, dropped: s.dropped, rate: s.completed / elapsed, inferP50: pct(inf, 50), preP50: pct(pre, 50), maxInFlight: s.maxInFlight };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const assets = path.resolve(process.env.EDGE_CLASSIFIER_ASSETS ?? path.join(root, '..', 'shared', 'assets'));
  const models = ['mobilenet_v2_1.0_224_quant', 'tf2_mobilenet_v2_1.0_224_ptq', 'mobilenet_v1_0.25_128_quant', 'mobilenet_v1_0.25_224_1_metadata_1', 'automl_labeler_model']
    .map((n) => path.join(assets, 'models', `${n}.tflite`))
    .filter((p) => existsSync(p));
  const floorProgram = buildFloor();
  const summary = await benchModels(models, { image: path.join(assets, 'images', 'cat.png'), floorProgram });
  table(['model', 'chosen', 'session p50 ms', 'fastest engine p50 ms', 'C floor best ms', 'session / fastest', 'session / floor'],
    summary.map((s) => [s.name, s.engine, f2(s.ours), f2(s.fastest), f2(s.bestFloor), (s.ours / s.fastest).toFixed(2), s.bestFloor ? (s.ours / s.bestFloor).toFixed(2) : '-']));
  console.log('worker thread against async FFI (tf2_mobilenet_v2_1.0_224_ptq, tflite-xnnpack, 1 thread, 100 runs)');
  table(['how', 'round trip p50 ms', 'p95 ms', 'event-loop delay p99 ms'], await workerVersusAsync(path.join(assets, 'models', 'tf2_mobilenet_v2_1.0_224_ptq.tflite')));
  const jpeg = readFileSync(path.join(assets, 'images', 'cat_720p.jpg'));
  const rows = [];
  for (const [n, e, th] of [['mobilenet_v2_1.0_224_quant', 'litert-wasm', 1], ['tf2_mobilenet_v2_1.0_224_ptq', 'tflite-xnnpack', 1]]) {
    const r = await pipelineRate(path.join(assets, 'models', `${n}.tflite`), e, th, jpeg);
    rows.push([n, `${e}@${th}`, f2(r.preP50), f2(r.inferP50), r.rate.toFixed(1), (1000 / r.inferP50).toFixed(1), (r.rate / (1000 / Math.max(r.inferP50, r.preP50))).toFixed(2), r.dropped, r.maxInFlight]);
  }
  console.log('pipeline: 1280x720 JPEG offered every ms for 5 s');
  table(['model', 'engine', 'prep p50 ms', 'infer p50 ms', 'classified fps', '1000/infer', 'rate / 1000/max(prep,infer)', 'dropped', 'max in flight'], rows);
  process.exit(0);
}
