import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { Classifier, type ClassifierOptions } from '../../src/inference/classifier.js';
import { FrameDecodeError } from '../../src/inference/preprocess/preprocess.js';
import { image, labels, model } from '../helpers/assets.js';
import { buildFakeDelegates } from './fixtures/fake-delegate.js';

// Many classifiers are started here, each with its engine in a worker (and Edge TPU probes in child
// processes): on a busy shared machine this file needs more than the default time.
t.setTimeout(300_000);

const dir = mkdtempSync(path.join(tmpdir(), 'classifier-'));

/** A logger that keeps warn-and-above entries in memory. */
const recorder = () => {
  const entries: { level: number; msg: string }[] = [];
  const log = pino({ level: 'warn', base: undefined }, { write: (line: string) => void entries.push(JSON.parse(line)) });
  return { log, entries };
};

/** The options these tests leave out: the TFLite engine with 1 thread (no measuring), the CPU, top 5, no threshold, stretch. */
const withDefaults = (options: Partial<ClassifierOptions> & { modelPath: string }): ClassifierOptions => ({
  engine: 'tflite',
  threads: 1,
  cacheFile: null,
  delegate: 'cpu',
  topK: 5,
  threshold: 0,
  resize: 'stretch',
  ...options,
});
/** A started classifier; stopped again when its start fails. */
const started = async (options: Partial<ClassifierOptions> & { modelPath: string }) => {
  const c = new Classifier(withDefaults(options));
  try {
    await c.start();
  } catch (err) {
    await c.stop();
    throw err;
  }
  return c;
};
const open = async (t: { teardown(fn: () => unknown): void }, options: Partial<ClassifierOptions> & { modelPath: string }) => {
  const c = await started(options);
  t.teardown(() => c.stop());
  return c;
};
const top1 = async (c: Classifier, file: string) => (await c.classify(readFileSync(image(file)), file)).classes[0]!;

// SOURCES.md: MobileNet V2 1.0 224 quant, stretched to 224x224.
const EXPECTED: [string, RegExp, number][] = [
  ['cat.png', /^Egyptian cat$/, 0.75],
  ['cat_720p.jpg', /^Egyptian cat$/, 0.77],
  ['grace_hopper.png', /^military uniform$/, 0.91],
  ['bird.png', /^chickadee$/, 0.98],
  ['dragonfly.png', /^dragonfly\b/, 0.99],
  ['hot_dog.jpg', /^hotdog\b/, 0.93],
];

t.test('MobileNet V2 quant: the reference top-1 results', async (t) => {
  const c = await open(t, { modelPath: model('mobilenet_v2_1.0_224_quant.tflite') });
  t.equal(c.backend, 'cpu');
  t.equal(c.labels.length, 1001, 'labels from the model metadata');
  t.same(c.warnings, []);
  for (const [file, label, score] of EXPECTED) {
    const r = await c.classify(readFileSync(image(file)), file);
    t.match(r.classes[0]!.label, label, `${file}: ${r.classes[0]!.label}`);
    t.ok(Math.abs(r.classes[0]!.score - score) < 0.03, `${file}: score ${r.classes[0]!.score} ≈ ${score}`);
    t.equal(r.classes.length, 5, 'top-5 by default');
    t.ok(
      r.classes.every((x, i) => i === 0 || x.score <= r.classes[i - 1]!.score),
      'highest first',
    );
    t.ok(r.timings.inference_ms > 0 && r.timings.preprocess_ms > 0 && r.timings.total_ms >= r.timings.inference_ms, 'timings filled');
  }
});

t.test('fed through its metadata normalization or as raw bytes, MobileNet V2 quant gives the same top-1', async (t) => {
  const viaMetadata = await open(t, { modelPath: model('mobilenet_v2_1.0_224_quant.tflite'), topK: 1 });
  // mean 128, std 128 on scale 1/128, zero point 128 maps every pixel to itself: the raw bytes.
  const raw = await open(t, { modelPath: model('mobilenet_v2_1.0_224_quant.tflite'), topK: 1, normalization: { mean: [128], std: [128] } });
  for (const [file] of EXPECTED) {
    t.equal((await top1(viaMetadata, file)).index, (await top1(raw, file)).index, file);
  }
});

t.test('float32 model with metadata, and the same model without it', async (t) => {
  const c = await open(t, { modelPath: model('mobilenet_v1_0.25_224_1_metadata_1.tflite'), topK: 3 });
  const cat = await top1(c, 'cat.png');
  t.equal(cat.label, 'Egyptian cat');
  t.ok(Math.abs(cat.score - 0.48) < 0.03, `score ${cat.score}`);
  t.equal((await top1(c, 'bird.png')).label, 'chickadee');
  const bare = model('mobilenet_v1_0.25_224_1_default_1.tflite');
  await t.rejects(started({ modelPath: bare }), {
    message: `${bare} has a float32 input and no normalization in its metadata: set preprocess.mean and preprocess.std (e.g. 127.5 and 127.5 for inputs in [-1,1], 0 and 255 for [0,1])`,
  });
  const configured = await open(t, {
    modelPath: bare,
    normalization: { mean: [127.5], std: [127.5] },
    labelsPath: labels('imagenet_labels.txt'),
  });
  const same = await top1(configured, 'cat.png');
  t.equal(same.label, 'Egyptian cat');
  t.ok(Math.abs(same.score - cat.score) < 1e-6, 'config normalization = metadata normalization');
});

t.test('5-class flowers model: sunflower.png is sunflowers, metadata normalization replaced', async (t) => {
  const { log, entries } = recorder();
  const c = await open(t, { modelPath: model('automl_labeler_model.tflite'), log });
  t.same(c.labels, ['daisy', 'dandelion', 'roses', 'sunflowers', 'tulips']);
  const r = await top1(c, 'sunflower.png');
  t.equal(r.label, 'sunflowers');
  t.ok(r.score > 0.85, `score ${r.score}`);
  t.equal(entries.length, 1);
  t.match(entries[0]!.msg, /metadata normalization \(mean 0,0,0, std 1,1,1\).*762 of 768 channel values would saturate/);
});

t.test('TF2 post-training quantized model', async (t) => {
  const c = await open(t, { modelPath: model('tf2_mobilenet_v2_1.0_224_ptq.tflite') });
  const g = await top1(c, 'grace_hopper.png');
  t.equal(g.label, 'military uniform');
  t.ok(Math.abs(g.score - 0.8) < 0.05, `score ${g.score}`);
  t.match((await top1(c, 'dragonfly.png')).label, /^dragonfly\b/);
});

t.test('models that cannot run are refused with a sentence', async (t) => {
  const edgetpu = model('mobilenet_v1_0.25_128_quant_edgetpu.tflite');
  await t.rejects(started({ modelPath: edgetpu }), {
    message: `${edgetpu} is compiled for the Edge TPU and cannot run on the CPU (it holds the custom op edgetpu-custom-op): set inference.delegate to edgetpu, or use the model's CPU version (the .tflite before edgetpu_compiler, usually the same name without _edgetpu)`,
  });
  const broken = model('model_invoking_error.tflite');
  await t.rejects(started({ modelPath: broken }), {
    message: `${broken} uses the custom op 'fake-op-double', which this TFLite runtime does not provide (only builtin ops are available): re-convert the model without custom ops`,
  });
  const text = path.join(dir, 'readme.tflite');
  writeFileSync(text, 'not a model, just words');
  await t.rejects(started({ modelPath: text }), { message: `${text} is not a TFLite model: expected the identifier TFL3 at byte 4, found "a mo"` });
  const cpu = await open(t, { modelPath: edgetpu, cpuModelPath: model('mobilenet_v1_0.25_128_quant.tflite') });
  t.equal(cpu.modelPath, model('mobilenet_v1_0.25_128_quant.tflite'), 'the CPU version named by cpuModelPath is used');
  t.equal(cpu.backend, 'cpu');
});

t.test('frames that cannot be decoded reject by kind; the next frame still classifies', async (t) => {
  const c = await open(t, { modelPath: model('mobilenet_v1_0.25_128_quant.tflite') });
  await t.rejects(c.classify(readFileSync(image('rgb6X4.bmp')), 'rgb6X4.bmp'), { name: 'FrameDecodeError', kind: 'unsupported-format' });
  const jpeg = readFileSync(image('hot_dog.jpg'));
  const err = await c.classify(jpeg.subarray(0, jpeg.length >> 1), 'frame 2').catch((e: unknown) => e);
  t.ok(err instanceof FrameDecodeError && err.kind === 'corrupt', 'truncated JPEG: corrupt');
  const junk = await c.classify(Buffer.from('random bytes, not a picture'), 'frame 3').catch((e: unknown) => e);
  t.equal((junk as FrameDecodeError).kind, 'not-an-image');
  t.equal((await top1(c, 'bird.png')).label, 'chickadee');
  // Two at once share the two input buffers: the second image is decoded while the first is in inference.
  const [cat, bird] = await Promise.all([c.classify(readFileSync(image('cat.png'))), c.classify(readFileSync(image('bird.png')))]);
  t.equal(cat.classes[0]!.label, 'tiger cat');
  t.equal(bird.classes[0]!.label, 'chickadee');
});

t.test('threshold, top-k and a labels file that overrides the metadata', async (t) => {
  const lines = readFileSync(labels('imagenet_labels.txt'), 'utf8').split('\n').slice(1).join('\n'); // 1000 labels, no background
  const short = path.join(dir, 'labels-1000.txt');
  writeFileSync(short, lines);
  const { log, entries } = recorder();
  const c = await open(t, { modelPath: model('mobilenet_v2_1.0_224_quant.tflite'), labelsPath: short, topK: 3, threshold: 0.5, log });
  t.equal(entries.length, 1);
  t.match(
    entries[0]!.msg,
    /labels-1000\.txt has 1000 labels but output 'MobilenetV2\/Predictions\/Softmax' of .* has 1001 classes: .*"background" label at index 0/,
  );
  const r = await c.classify(readFileSync(image('bird.png')));
  t.equal(r.classes.length, 1, 'only classes at or above 0.5');
  t.equal(r.classes[0]!.index, 20);
  t.equal(r.classes[0]!.label, 'water ouzel, dipper', 'the shifted file names class 20 (chickadee) after class 21, as the warning says');
});

t.test('Edge TPU: missing runtime, fallback to the CPU model, and a working delegate', async (t) => {
  const edgetpu = model('mobilenet_v1_0.25_128_quant_edgetpu.tflite');
  const cpuModel = model('mobilenet_v1_0.25_128_quant.tflite');
  const missing = path.join(dir, 'no', 'libedgetpu.so.1');
  await t.rejects(started({ modelPath: edgetpu, delegate: 'edgetpu' }), {
    name: 'EdgeTpuUnavailableError',
    message:
      "libedgetpu.so.1 not found: install the Edge TPU runtime (sudo apt install libedgetpu1-std from Coral's apt repository, https://coral.ai/docs/accelerator/get-started/) or set inference.delegate to cpu",
  });

  const { log, entries } = recorder();
  const c = await open(t, { modelPath: edgetpu, delegate: 'edgetpu', edgetpuLibrary: missing, cpuModelPath: cpuModel, log });
  t.equal(c.backend, 'cpu');
  t.equal(c.modelPath, cpuModel);
  t.equal(entries.length, 1, 'warned once');
  t.match(entries[0]!.msg, /not found: install the Edge TPU runtime .* Running the CPU model .*mobilenet_v1_0\.25_128_quant\.tflite instead$/);
  t.equal((await top1(c, 'bird.png')).label, 'chickadee');
  t.equal(entries.length, 1, 'no warning per frame');

  const fakes = buildFakeDelegates();
  const crash = recorder();
  const fellBack = await open(t, { modelPath: edgetpu, delegate: 'edgetpu', edgetpuLibrary: fakes.nullDelegate, cpuModelPath: cpuModel, log: crash.log });
  t.equal(fellBack.backend, 'cpu', 'a delegate that returns no delegate is caught in a child process');
  t.match(
    crash.entries[0]!.msg,
    /^the Edge TPU delegate .*libfake-null\.so could not load .*edgetpu\.tflite: the plugin returned no delegate \(is an Edge TPU attached.*\)\. Running the CPU model/,
  );
  const segv = recorder();
  // (Its Prepare runs only when TFLite resolved every op: the CPU model, here.)
  const crashed = await open(t, { modelPath: cpuModel, delegate: 'edgetpu', edgetpuLibrary: fakes.crash, cpuModelPath: cpuModel, log: segv.log });
  t.equal(crashed.backend, 'cpu', 'a delegate that crashes the interpreter kills the probe child, not this process');
  t.match(
    segv.entries[0]!.msg,
    /^the Edge TPU delegate .*libfake-crash\.so crashed the TFLite interpreter while loading .*_quant\.tflite \(SIGSEGV\): is an Edge TPU attached.*Running the CPU model/,
  );

  const logFile = path.join(fakes.dir, 'classifier.log');
  process.env.FAKE_DELEGATE_LOG = logFile;
  t.teardown(() => {
    delete process.env.FAKE_DELEGATE_LOG;
  });
  const delegated = recorder();
  const d = await open(t, { modelPath: cpuModel, delegate: 'edgetpu', edgetpuLibrary: fakes.good, edgetpuDevice: 'usb:0', log: delegated.log });
  t.equal(d.backend, 'edgetpu');
  t.equal(d.engine, 'edgetpu');
  t.equal(
    readFileSync(logFile, 'utf8'),
    'create device=usb:0\ncreate device=usb:0\n',
    'probe child, then the worker, created the delegate with the device option',
  );
  t.match(delegated.entries[0]!.msg, /was not compiled with edgetpu_compiler/);
  t.equal((await top1(d, 'bird.png')).label, 'chickadee', 'the delegate claimed no ops; TFLite ran them on the CPU');
});
