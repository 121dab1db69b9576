#!/usr/bin/env node
// npm run bench: per-stage timings, frame rates and memory, printed as tables.
// Runs the built code (dist/) on real models and images: the test assets
// folder (EDGE_CLASSIFIER_ASSETS, default ../shared/assets) when present, else
// the default model and sample frames fetched by `npm start`.
//
//   1. decode + resize cost of a frame by size and format (sharp only)
//   2. per model: preprocess, infer() in the worker, whole classify(), p50/p95
//   3. the daemon's pipeline from a replay folder at 30 fps for 10 s: frames
//      in, classified, dropped, main-thread event-loop delay, memory
//   4. frame paths into a 224x224 input tensor from a 640x480 camera: MJPEG
//      (split + decode + resize) against raw frames (split + convert), per frame
//
// Figures depend on the machine; this prints them, it asserts nothing.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { Classifier } = await import(path.join(root, 'dist', 'inference', 'classifier.js'));
const { Daemon } = await import(path.join(root, 'dist', 'service', 'daemon.js'));
const { loadConfig } = await import(path.join(root, 'dist', 'config', 'load.js'));
const { silentLogger } = await import(path.join(root, 'dist', 'core', 'log.js'));
const { readModelInfo } = await import(path.join(root, 'dist', 'inference', 'tflite-model.js'));
const { Preprocessor } = await import(path.join(root, 'dist', 'inference', 'preprocess', 'preprocess.js'));
const { MjpegSplitter } = await import(path.join(root, 'dist', 'camera', 'mjpeg-splitter.js'));
const { RawFrameSplitter } = await import(path.join(root, 'dist', 'camera', 'raw-splitter.js'));
const { rpicamRawFormat } = await import(path.join(root, 'dist', 'camera', 'rpicam.js'));

const assets = path.resolve(process.env.EDGE_CLASSIFIER_ASSETS ?? path.join(root, '..', 'shared', 'assets'));
const haveAssets = existsSync(path.join(assets, 'models'));
const modelFile = (name) => (haveAssets ? path.join(assets, 'models', name) : path.join(root, 'models', name));
const imageFile = (name) => (haveAssets ? path.join(assets, 'images', name) : path.join(root, 'samples', name));
const threads = Number(process.env.BENCH_THREADS ?? 2);

const mb = (bytes) => (bytes / 1048576).toFixed(1);
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const fmt = (x) => x.toFixed(2).padStart(8);
function table(headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => String(c).padEnd(widths[i])).join('  ');
  console.log(line(headers));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
  console.log();
}

console.log(
  `edge-classifier benchmark — node ${process.version}, ${process.arch}, interpreter threads ${threads}, assets ${haveAssets ? 'test assets' : 'fetched samples'}\n`,
);

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
    rows.push([name, `${(bytes.length / 1024).toFixed(0)} KiB`, fmt(pct(times, 50)), fmt(pct(times, 95))]);
  }
  console.log('1. decode + resize to 224x224 RGB (sharp), ms');
  table(['frame', 'size', 'p50 ms', 'p95 ms'], rows);
}

// 2. Per model: preprocess, infer() in the worker thread, whole classify().
{
  const models = [
    ['mobilenet_v2_1.0_224_quant.tflite', {}],
    ['mobilenet_v1_0.25_128_quant.tflite', {}],
    ['tf2_mobilenet_v2_1.0_224_ptq.tflite', {}],
    ['mobilenet_v1_0.25_224_1_metadata_1.tflite', {}],
    ['automl_labeler_model.tflite', {}],
  ].filter(([name]) => existsSync(modelFile(name)));
  const image = readFileSync(imageFile('cat_720p.jpg'));
  const rows = [];
  for (const [name, extra] of models) {
    const rssBefore = process.memoryUsage().rss;
    const classifier = new Classifier({
      modelPath: modelFile(name),
      threads,
      delegate: 'cpu',
      resize: 'stretch',
      topK: 3,
      threshold: 0.1,
      log: silentLogger(),
      ...extra,
    });
    await classifier.start();
    const pre = [];
    const inf = [];
    const total = [];
    let top = '';
    for (let i = 0; i < 35; i++) {
      const t0 = performance.now();
      const r = await classifier.classify(image);
      const ms = performance.now() - t0;
      if (i >= 5) {
        pre.push(r.timings.preprocess_ms);
        inf.push(r.timings.inference_ms);
        total.push(ms);
      }
      top = r.classes[0] ? `${r.classes[0].label.split(',')[0]} ${r.classes[0].score.toFixed(2)}` : '-';
    }
    const rss = process.memoryUsage().rss;
    await classifier.stop();
    const input = (await readModelInfo(modelFile(name))).inputs[0];
    rows.push([
      name.replace('.tflite', ''),
      `${input.shape.slice(1, 3).join('x')} ${input.dtype}`,
      fmt(pct(pre, 50)),
      fmt(pct(inf, 50)),
      fmt(pct(inf, 95)),
      fmt(pct(total, 50)),
      (1000 / pct(total, 50)).toFixed(1).padStart(6),
      `+${mb(rss - rssBefore)}`,
      top,
    ]);
  }
  console.log(`2. classify() of a 1280x720 JPEG, ${threads} threads (30 runs after 5 warm-up), ms`);
  table(['model', 'input', 'prep p50', 'infer p50', 'infer p95', 'total p50', 'fps', 'RSS MiB', 'top-1'], rows);
}

// 3. The daemon pipeline: replay at 30 fps for 10 s into the default model.
{
  const dir = mkdtempSync(path.join(tmpdir(), 'ec-bench-'));
  for (const name of ['cat_720p.jpg', 'hot_dog.jpg', 'owl.jpg']) writeFileSync(path.join(dir, name), readFileSync(imageFile(name)));
  const config = loadConfig({
    env: {},
    overrides: { source: dir, model: modelFile('mobilenet_v2_1.0_224_quant.tflite'), threads },
  });
  config.source.fps = 30;
  config.mqtt.embedded_port = 0;
  config.gpio.backend = 'virtual';
  const daemon = new Daemon({ config, log: silentLogger() });
  const loopDelay = monitorEventLoopDelay({ resolution: 5 });
  const rss = [];
  await daemon.start();
  loopDelay.enable();
  const seconds = Number(process.env.BENCH_SECONDS ?? 10);
  const t0 = performance.now();
  const sampler = setInterval(() => rss.push(process.memoryUsage().rss), 250);
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  clearInterval(sampler);
  loopDelay.disable();
  const elapsed = (performance.now() - t0) / 1000;
  const s = daemon.stats();
  await daemon.stop();
  console.log(`3. daemon: replay at 30 fps into mobilenet_v2_1.0_224_quant for ${seconds} s (embedded broker, virtual GPIO)`);
  table(
    ['frames in', 'classified', 'dropped', 'classified fps', 'loop delay p50 ms', 'loop delay p99 ms', 'RSS min MiB', 'RSS max MiB'],
    [
      [
        s.framesIn,
        s.classified,
        s.dropped,
        (s.classified / elapsed).toFixed(1),
        (loopDelay.percentile(50) / 1e6).toFixed(1),
        (loopDelay.percentile(99) / 1e6).toFixed(1),
        mb(Math.min(...rss)),
        mb(Math.max(...rss)),
      ],
    ],
  );
}
// 4. Frame paths: what each frame costs before inference, 640x480 camera into a 224x224 model.
{
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
      paths.map((p) => [p.label, p.what, fmt(pct(p.times, 50)), fmt(pct(p.times, 95)), `${(base / pct(p.times, 50)).toFixed(1)}x less`]),
    );
  }
}
process.exit(0);
