#!/usr/bin/env node
// npm run bench: the project's figures from one run, printed as tables.
// Runs the built code (dist/) on real models and images: the test assets
// folder (EDGE_CLASSIFIER_ASSETS, default ../shared/assets) when present, else
// the default model and sample frames fetched by `npm start`.
//
//   1. decode + resize cost of a frame by size and format (sharp only)
//   2. per model: what `edge-classifier bench` prints (engines × threads and
//      the choice, inference p50, preprocessing per frame size, pipeline rate),
//      beside the independent C floor (scripts/tflite-floor.c, compiled here
//      when `cc` exists) timed interleaved with the daemon's own inference
//   3. worker thread against async FFI for the interpreter
//   4. frame paths into a 224x224 input tensor from a 640x480 camera: MJPEG
//      (split + decode + resize) against raw frames (split + convert), per frame
//   5. the daemon: replay at full speed into the default model with the
//      embedded broker: RSS after 500 and after 10,000 frames, where it goes
//
// Figures depend on the machine, and a shared machine is noisy: compare the
// ratios of things measured side by side, not absolute times across runs.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

const rssAtStart = process.memoryUsage().rss;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = (p) => import(path.join(root, 'dist', p));
const { benchModel } = await dist('service/bench.js');
const { Classifier } = await dist('inference/classifier.js');
const { InferenceSession, machineCores } = await dist('inference/session.js');
const { TfLiteLibrary, TfLiteInterpreter, bundledLibraryPath, XNNPACK_FLAG_QS8 } = await dist('inference/tflite-c.js');
const { liteRtVersion } = await dist('inference/engine-api.js');
const { Daemon } = await dist('service/daemon.js');
const { loadConfig } = await dist('config/load.js');
const { silentLogger } = await dist('core/log.js');
const { readModelInfo } = await dist('inference/tflite-model.js');
const { Preprocessor } = await dist('inference/preprocess/preprocess.js');
const { MjpegSplitter } = await dist('camera/mjpeg-splitter.js');
const { RawFrameSplitter } = await dist('camera/raw-splitter.js');
const { rpicamRawFormat } = await dist('camera/rpicam.js');
const rssModulesLoaded = process.memoryUsage().rss;

const assets = path.resolve(process.env.EDGE_CLASSIFIER_ASSETS ?? path.join(root, '..', 'shared', 'assets'));
const haveAssets = existsSync(path.join(assets, 'models'));
const modelFile = (name) => (haveAssets ? path.join(assets, 'models', name) : path.join(root, 'models', name));
const imageFile = (name) => (haveAssets ? path.join(assets, 'images', name) : path.join(root, 'samples', name));
const DEFAULT_MODEL = 'tf2_mobilenet_v2_1.0_224_ptq.tflite';

const mb = (bytes) => (bytes / 1048576).toFixed(1);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const f2 = (x) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(2));
function table(headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) =>
    cells
      .map((c, i) => String(c).padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  console.log(line(headers));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
  console.log();
}

const library = bundledLibraryPath();
const cores = machineCores();
if (!process.argv.includes('--daemon'))
  console.log(
    `edge-classifier benchmark — node ${process.version}, ${process.arch}, ${cores} cores, load average ${loadavg()[0].toFixed(1)}, ` +
      `TFLite ${TfLiteLibrary.load().version} (bundled), LiteRT.js ${liteRtVersion()}, assets ${haveAssets ? 'test assets' : 'fetched samples'}\n`,
  );

const daemonOnly = process.argv.includes('--daemon');

async function sections1to3() {
  // 1. Frame decode + resize (sharp), the cost the Pi pays before inference.
  {
    const cat = readFileSync(imageFile('cat_720p.jpg'));
    const frames = [
      ['JPEG 1280x720', cat],
      ['JPEG 640x480', await sharp(cat).resize(640, 480, { fit: 'fill' }).jpeg({ quality: 80 }).toBuffer()],
      ['JPEG 320x240', await sharp(cat).resize(320, 240, { fit: 'fill' }).jpeg({ quality: 80 }).toBuffer()],
      ['PNG 1280x720', await sharp(cat).png().toBuffer()],
    ];
    const rows = [];
    for (const [name, bytes] of frames) {
      const times = [];
      for (let i = 0; i < 40; i++) {
        const t0 = performance.now();
        await sharp(bytes).removeAlpha().resize(224, 224, { fit: 'fill' }).raw().toBuffer();
        if (i >= 5) times.push(performance.now() - t0);
      }
      rows.push([name, `${(bytes.length / 1024).toFixed(0)} KiB`, f2(pct(times, 50)), f2(pct(times, 95))]);
    }
    console.log('1. decode + resize to 224x224 RGB (sharp), ms');
    table(['frame', 'size', 'p50 ms', 'p95 ms'], rows);
  }

  // 2. Per model: the product's own bench, and the C floor interleaved with the daemon's inference.
  /** Compiles the C floor program; null without a C compiler. */
  function buildFloor() {
    if (spawnSync('cc', ['--version']).status !== 0) return null;
    const out = path.join(mkdtempSync(path.join(tmpdir(), 'tflite-floor-')), 'tflite-floor');
    execFileSync('cc', ['-O2', '-o', out, path.join(root, 'scripts', 'tflite-floor.c'), '-ldl']);
    return out;
  }
  /** One call of the C floor: median ms of `runs` TfLiteInterpreterInvoke, or null when the library refused. */
  function floor(program, modelPath, threads, flags, runs) {
    const r = spawnSync(program, [library, modelPath, String(runs), String(threads), String(flags)], { encoding: 'utf8', timeout: 300_000 });
    if (r.status !== 0) return null;
    return Number(r.stdout.trim().split(' ')[0]);
  }

  const floorProgram = buildFloor();
  const summary = [];
  {
    // Every asset model that is an image classifier the CPU can run; the float models without metadata get
    // the normalization SOURCES.md gives for them.
    const models = [
      ['tf2_mobilenet_v2_1.0_224_ptq.tflite', {}],
      ['mobilenet_v2_1.0_224_quant.tflite', {}],
      ['mobilenet_v1_0.25_128_quant.tflite', {}],
      ['mobilenet_v1_0.25_224_1_metadata_1.tflite', {}],
      ['mobilenet_v1_0.25_224_1_default_1.tflite', { normalization: { mean: [127.5, 127.5, 127.5], std: [127.5, 127.5, 127.5] } }],
      ['mobilenet_v1_0.25_224_float16.tflite', { normalization: { mean: [127.5, 127.5, 127.5], std: [127.5, 127.5, 127.5] } }],
      ['mobilenet_v1_0.25_224_dynamic_range.tflite', { normalization: { mean: [127.5, 127.5, 127.5], std: [127.5, 127.5, 127.5] } }],
      ['mobilenet_v1_0.25_224_full_int8.tflite', {}],
      ['automl_labeler_model.tflite', {}],
    ].filter(([name]) => existsSync(modelFile(name)));
    const frame = readFileSync(imageFile('cat_720p.jpg'));
    console.log(
      `2. per model: engines × threads (1 … ${cores}) and the choice; the daemon's inference beside the C floor${floorProgram ? '' : ' (no cc: no floor)'}\n`,
    );
    for (const [name, extra] of models) {
      const modelPath = modelFile(name);
      const base = { delegate: 'cpu', resize: 'stretch', topK: 3, threshold: 0, ...extra };
      let b;
      try {
        b = await benchModel(modelPath, { classifier: base, pipelineSeconds: 4 });
      } catch (err) {
        console.log(`${name}: ${err.message}\n`);
        continue;
      }
      console.log(`${name}: chosen ${b.engine}, ${b.threads} thread${b.threads > 1 ? 's' : ''} (${b.runtime})`);
      table(
        ['engine', 'threads', 'p50 ms', 'p25 ms', 'status', 'note'],
        b.engines.map((r) => [r.engine, r.threads, f2(r.p50_ms), f2(r.p25_ms), r.status, (r.reason ?? '').slice(0, 90)]),
      );
      // The daemon's inference and the floor, in alternating batches, so that load from elsewhere hits both alike.
      const classifier = new Classifier({ ...base, modelPath, engine: b.engine, threads: b.threads, cacheFile: null, log: silentLogger() });
      await classifier.start();
      for (let i = 0; i < 3; i++) await classifier.classify(frame);
      const ours = [];
      const floors = new Map();
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < 15; i++) ours.push((await classifier.classify(frame)).timings.inference_ms);
        if (!floorProgram) continue;
        for (let t = 1; t <= cores; t++) {
          for (const [kind, flags] of [
            ['default', -1],
            ['xnnpack-qs8', XNNPACK_FLAG_QS8],
          ]) {
            const ms = floor(floorProgram, modelPath, t, flags, 15);
            const key = `${kind}@${t}`;
            if (ms !== null) floors.set(key, [...(floors.get(key) ?? []), ms]);
          }
        }
      }
      await classifier.stop();
      const floorRows = [...floors].map(([k, v]) => [k, median(v)]);
      const best = (rows) => (rows.length ? rows.reduce((a, r) => (r[1] < a[1] ? r : a)) : null);
      const bestFloor = best(floorRows);
      // The floor with the daemon's own thread count: `threads: auto` leaves a core for the frames.
      const floorSameThreads = best(floorRows.filter(([k]) => k.endsWith(`@${b.threads}`)));
      const fastestEngine = Math.min(...b.engines.filter((r) => r.p50_ms !== undefined && (r.status === 'chosen' || r.status === 'ok')).map((r) => r.p50_ms));
      const daemonP50 = median(ours);
      if (floorRows.length) console.log(`  C floor, median ms: ${floorRows.map(([k, v]) => `${k} ${f2(v)}`).join(', ')}`);
      console.log(
        `  daemon inference p50 ${f2(daemonP50)} ms; preprocess p50 ${Object.entries(b.preprocess_p50_ms)
          .map(([k, v]) => `${k} ${v.toFixed(1)}`)
          .join(
            ', ',
          )} ms; pipeline raw ${b.pipeline_fps.toFixed(1)} fps (model alone ${b.model_fps.toFixed(1)}); pipeline JPEG 1280x720 ${b.pipeline_jpeg_fps.toFixed(1)} fps (model alone ${b.model_jpeg_fps.toFixed(1)})\n`,
      );
      summary.push({ name: name.replace('.tflite', ''), chosen: `${b.engine}@${b.threads}`, daemonP50, fastestEngine, bestFloor, floorSameThreads, b });
    }
    table(
      [
        'model',
        'chosen',
        'daemon p50 ms',
        'fastest engine p50 ms',
        'C floor best',
        'daemon / fastest engine',
        'daemon / C floor',
        'C floor, same threads',
        'daemon / that',
        'pipeline raw fps',
        '1000 / infer p50',
        'pipeline / model',
        'pipeline JPEG fps',
        'prep 1280x720 ms',
      ],
      summary.map((s) => [
        s.name,
        s.chosen,
        f2(s.daemonP50),
        f2(s.fastestEngine),
        s.bestFloor ? `${f2(s.bestFloor[1])} (${s.bestFloor[0]})` : '-',
        (s.daemonP50 / s.fastestEngine).toFixed(2),
        s.bestFloor ? (s.daemonP50 / s.bestFloor[1]).toFixed(2) : '-',
        s.floorSameThreads ? `${f2(s.floorSameThreads[1])} (${s.floorSameThreads[0]})` : '-',
        s.floorSameThreads ? (s.daemonP50 / s.floorSameThreads[1]).toFixed(2) : '-',
        s.b.pipeline_fps.toFixed(1),
        s.b.model_fps.toFixed(1),
        (s.b.pipeline_fps / s.b.model_fps).toFixed(2),
        s.b.pipeline_jpeg_fps.toFixed(1),
        f2(s.b.preprocess_p50_ms['1280x720']),
      ]),
    );
  }

  // 3. Where the interpreter runs: a worker thread (synchronous invoke there) or async FFI (libuv pool).
  {
    const bytes = readFileSync(modelFile(DEFAULT_MODEL));
    const session = await InferenceSession.open({ modelBytes: bytes, model: DEFAULT_MODEL, engine: 'tflite-xnnpack', threads: 1 });
    const input = new Uint8Array(session.inputs[0].bytes).fill(100);
    const it = TfLiteInterpreter.create(TfLiteLibrary.load(), bytes, { threads: 1, xnnpackFlags: XNNPACK_FLAG_QS8 });
    const ways = [
      ['worker thread (the daemon)', async () => void (await session.run([input]))],
      [
        'async FFI on the main thread',
        async () => {
          new Uint8Array(it.inputView(0)).set(input);
          await it.invokeAsync();
          new Uint8Array(it.outputView(0)).slice();
        },
      ],
    ];
    const results = new Map(ways.map(([label]) => [label, { times: [], delays: [] }]));
    // Alternating batches of 40, three each.
    for (let round = 0; round < 4; round++) {
      for (const [label, once] of ways) {
        const h = monitorEventLoopDelay({ resolution: 1 });
        h.enable();
        const times = [];
        for (let i = 0; i < 40; i++) {
          const t0 = performance.now();
          await once();
          times.push(performance.now() - t0);
        }
        h.disable();
        if (round === 0) continue; // warm-up
        results.get(label).times.push(...times);
        results.get(label).delays.push(h.percentile(99) / 1e6);
      }
    }
    it.delete();
    await session.close();
    console.log(`3. ${DEFAULT_MODEL}, tflite-xnnpack, 1 thread: where the interpreter runs (120 runs each, alternating)`);
    table(
      ['how', 'round trip p50 ms', 'p95 ms', 'event-loop delay p99 ms (worst batch)'],
      [...results].map(([label, r]) => [label, f2(pct(r.times, 50)), f2(pct(r.times, 95)), Math.max(...r.delays).toFixed(1)]),
    );
  }
}

async function daemonSection() {
  // 5. The daemon with the embedded broker, replaying three photos at full speed into the default model.
  {
    const dir = mkdtempSync(path.join(tmpdir(), 'ec-bench-'));
    for (const name of ['cat_720p.jpg', 'hot_dog.jpg', 'owl.jpg']) writeFileSync(path.join(dir, name), readFileSync(imageFile(name)));
    const config = loadConfig({ env: {}, overrides: { source: dir, model: modelFile(DEFAULT_MODEL) } });
    config.source.fps = 120;
    config.mqtt.embedded_port = 0;
    config.gpio.backend = 'virtual';
    config.inference.cache = path.join(dir, 'engine-choice.json');
    const daemon = new Daemon({ config, log: silentLogger() });
    const loopDelay = monitorEventLoopDelay({ resolution: 5 });
    const rssBeforeStart = process.memoryUsage().rss;
    await daemon.start();
    const rssStarted = process.memoryUsage().rss;
    loopDelay.enable();
    const target = Number(process.env.BENCH_FRAMES ?? 10_000);
    // A cap for a machine too busy to reach the target in reasonable time: the table then says how far it got.
    const maxSeconds = Number(process.env.BENCH_MAX_SECONDS ?? 900);
    const marks = new Map();
    const t0 = performance.now();
    let peak = 0;
    await new Promise((resolve) => {
      const timer = setInterval(() => {
        const s = daemon.stats();
        const rss = process.memoryUsage().rss;
        peak = Math.max(peak, rss);
        for (const n of [500, 2000, 5000, target])
          if (!marks.has(n) && s.classified >= n) marks.set(n, { rss, mem: process.memoryUsage(), at: performance.now() });
        if (s.classified >= target || performance.now() - t0 > maxSeconds * 1000) {
          clearInterval(timer);
          resolve();
        }
      }, 100);
    });
    loopDelay.disable();
    const elapsed = (performance.now() - t0) / 1000;
    const s = daemon.stats();
    await daemon.stop();
    const at500 = marks.get(500);
    const atEnd = marks.get(target) ?? { rss: process.memoryUsage().rss };
    console.log(`5. daemon: replay at 120 fps into ${DEFAULT_MODEL} (engine auto, embedded broker, virtual GPIO) until ${target} frames classified`);
    table(
      [
        'frames in',
        'classified',
        'dropped',
        'classified fps',
        'loop delay p50 ms',
        'loop delay p99 ms',
        'RSS at 500 MiB',
        `RSS at ${target} MiB`,
        'change',
        'peak MiB',
      ],
      [
        [
          s.framesIn,
          s.classified,
          s.dropped,
          (s.classified / elapsed).toFixed(1),
          (loopDelay.percentile(50) / 1e6).toFixed(1),
          (loopDelay.percentile(99) / 1e6).toFixed(1),
          mb(at500.rss),
          mb(atEnd.rss),
          `${(((atEnd.rss - at500.rss) / at500.rss) * 100).toFixed(1)} %`,
          mb(peak),
        ],
      ],
    );
    console.log('   where the memory goes (this process runs only the daemon), MiB');
    table(
      ['point', 'RSS', 'V8 heap used', 'external (Buffers, WASM)', 'array buffers'],
      [
        ['node started', mb(rssAtStart), '-', '-', '-'],
        ['modules loaded (sharp, mqtt, aedes, koffi, …)', mb(rssModulesLoaded), '-', '-', '-'],
        ['before the daemon starts', mb(rssBeforeStart), '-', '-', '-'],
        ['daemon started (model in the worker, broker)', mb(rssStarted), '-', '-', '-'],
        ...[...marks].map(([n, m]) => [`after ${n} frames`, mb(m.rss), mb(m.mem.heapUsed), mb(m.mem.external), mb(m.mem.arrayBuffers)]),
      ],
    );
  }
}

async function framePathsSection() {
  // 4. Frame paths: what each frame costs before inference, 640x480 camera into a 224x224 model.
  const cat = imageFile('cat_720p.jpg');
  const ffmpeg = (args) => {
    const r = spawnSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-i', cat, ...args, '-frames:v', '1', '-f', 'rawvideo', '-'], {
      maxBuffer: 1 << 26,
    });
    if (r.status !== 0) throw new Error(`ffmpeg: ${r.stderr}`);
    return r.stdout;
  };
  /** An I420 frame of the picture as rpicam-vid writes it at w x h: BT.601 full range, rows padded to 64 bytes. */
  const i420 = (w, h) => {
    const raw = rpicamRawFormat(w, h);
    const l = raw.layout;
    const plain = ffmpeg(['-vf', `scale=${w}:${h}:out_range=full:out_color_matrix=bt601,format=yuv420p`]);
    const out = Buffer.alloc(l.frameBytes);
    for (let y = 0; y < h; y++) plain.copy(out, y * l.yStride, y * w, y * w + w);
    for (let p = 0; p < 2; p++) {
      const src = w * h + p * l.chromaWidth * l.chromaHeight;
      const dst = p === 0 ? l.uOffset : l.vOffset;
      for (let y = 0; y < l.chromaHeight; y++) plain.copy(out, dst + y * l.cStride, src + y * l.chromaWidth, src + (y + 1) * l.chromaWidth);
    }
    return { raw, frame: out };
  };
  const jpeg640 = await sharp(cat).resize(640, 480, { fit: 'fill' }).jpeg({ quality: 80 }).toBuffer();
  const rgb224 = ffmpeg(['-vf', 'scale=224:224,format=rgb24']);
  /** Pipe-sized chunks of a stream of `n` copies of `frame`, as a camera process writes them. */
  const stream = (frame, n = 8) => {
    const all = Buffer.concat(Array(n).fill(frame));
    const chunks = [];
    for (let i = 0; i < all.length; i += 65536) chunks.push(all.subarray(i, i + 65536));
    return chunks;
  };
  const models = [
    ['mobilenet_v2_1.0_224_quant.tflite', {}],
    ['mobilenet_v1_0.25_224_full_int8.tflite', {}],
  ].filter(([name]) => existsSync(modelFile(name)));
  for (const [name, extra] of models) {
    const input = (await readModelInfo(modelFile(name))).inputs[0];
    const paths = [];
    const add = (label, what, frame, raw, resize = 'stretch') => {
      const pre = new Preprocessor(input, { resize, ...extra });
      const into =
        pre.mapping.dtype === 'uint8' ? new Uint8Array(pre.length) : pre.mapping.dtype === 'int8' ? new Int8Array(pre.length) : new Float32Array(pre.length);
      const chunks = stream(frame);
      const run = async () => {
        const splitter = raw ? new RawFrameSplitter(frame.length) : new MjpegSplitter();
        let n = 0;
        for (const c of chunks) {
          for (const f of splitter.push(c)) {
            await pre.prepare(f, 'frame', into, raw);
            n++;
          }
        }
        return n;
      };
      paths.push({ label, what, run, times: [] });
    };
    add('MJPEG 640x480', 'split + decode + resize (sharp)', jpeg640);
    const r288 = i420(288, 224);
    add('rpicam I420 288x224', 'split + convert, 4:3 stretched (default)', r288.frame, r288.raw);
    const r224 = i420(224, 224);
    add('rpicam I420 224x224', 'split + convert, resize crop (ISP)', r224.frame, r224.raw, 'crop');
    const r640 = i420(640, 480);
    add('rpicam I420 640x480', 'split + convert + bilinear scale', r640.frame, r640.raw);
    add('ffmpeg RGB24 224x224', 'split + map', rgb224, { format: 'rgb24', width: 224, height: 224 });
    for (let round = 0; round < 25; round++) {
      for (const p of paths) {
        const t0 = performance.now();
        const n = await p.run();
        if (round >= 5) p.times.push((performance.now() - t0) / n);
      }
    }
    const base = pct(paths[0].times, 50);
    console.log(
      `4. frame paths into ${name.replace('.tflite', '')} (${input.shape.slice(1, 3).join('x')} ${input.dtype}), ms per frame (20 rounds of 8 frames, interleaved)`,
    );
    table(
      ['frames', 'work', 'p50 ms', 'p95 ms', 'vs MJPEG'],
      paths.map((p) => [p.label, p.what, f2(pct(p.times, 50)), f2(pct(p.times, 95)), `${(base / pct(p.times, 50)).toFixed(1)}x less`]),
    );
  }
}

if (daemonOnly) {
  await daemonSection();
} else {
  await sections1to3();
  await framePathsSection();
  // In a process of its own, so that its RSS is the daemon's alone (sections 1-3 load and drop many models).
  // With the V8 flag and the malloc arena limit the systemd unit gives the daemon (a 1 MiB young generation, 2 arenas).
  spawnSync(process.execPath, ['--max-semi-space-size=1', fileURLToPath(import.meta.url), '--daemon'], {
    stdio: 'inherit',
    env: { ...process.env, MALLOC_ARENA_MAX: '2' },
  });
}
process.exit(0);
