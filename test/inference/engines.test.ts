import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { ENGINE_NAMES, EngineLoadError, type EngineName, type LoadedEngine } from '../../src/inference/engine-api.js';
import { disagreement } from '../../src/inference/engine-choice.js';
import { loadEngine } from '../../src/inference/engines.js';
import { InferenceSession, SessionLoadError } from '../../src/inference/session.js';
import { bundledLibraryPath, TfLiteInterpreter, TfLiteLibrary, TfLiteLibraryError } from '../../src/inference/tflite-c.js';
import { parseModel } from '../../src/inference/tflite-model.js';
import { image, model } from '../helpers/assets.js';
import { buildFakeDelegates } from './fixtures/fake-delegate.js';

/** The input tensor for `file`, computed here without the daemon's preprocessing: stretch to H×W, then the model's mapping. */
async function inputFor(file: string, shape: number[], dtype: string): Promise<Uint8Array | Int8Array | Float32Array> {
  const [, h, w] = shape;
  const rgb = await sharp(file).removeAlpha().resize(w!, h!, { fit: 'fill' }).raw().toBuffer();
  if (dtype === 'uint8') return new Uint8Array(rgb);
  if (dtype === 'int8') return Int8Array.from(rgb, (p) => p - 128); // the int8 asset: scale 1/127.5, zero point -1 → q ≈ p − 128
  return Float32Array.from(rgb, (p) => (p - 127.5) / 127.5); // MobileNet normalization given in the assets' SOURCES
}

const top1 = (scores: ArrayLike<number>): number => {
  let best = 0;
  for (let i = 1; i < scores.length; i++) if (scores[i]! > scores[best]!) best = i;
  return best;
};

// ImageNet class 286 is "Egyptian cat" in the 1001-label file (0 = background); 283 "tiger cat", 282 "tabby".
const CAT_CLASSES = new Set([282, 283, 286]);

t.test('the bundled library is TFLite 2.9.0 with XNNPACK', async (t) => {
  const lib = TfLiteLibrary.load();
  t.equal(lib.version, '2.9.0');
  t.equal(lib.hasXnnpack, true);
  t.equal(lib.path, bundledLibraryPath());
  t.equal(TfLiteLibrary.load(bundledLibraryPath()), lib, 'loaded once per file');
});

t.test('a file that is not a TFLite C library is refused with its name and the key to fix', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'lib-'));
  const text = path.join(dir, 'libtensorflowlite_c.so');
  writeFileSync(text, 'not a library');
  t.throws(() => TfLiteLibrary.load(text), {
    name: 'TfLiteLibraryError',
    message: new RegExp(`^${text} cannot be loaded as a shared library .*inference\\.library`),
  });
  t.throws(() => TfLiteLibrary.load(path.join(dir, 'missing.so')), { message: /does not exist: fix inference\.library/ });
  const { good } = buildFakeDelegates(); // a real shared library, but not TFLite
  t.throws(
    () => TfLiteLibrary.load(good),
    new TfLiteLibraryError(
      `${good} is not a TensorFlow Lite C library (it does not export TfLiteVersion, TfLiteModelCreate, TfLiteInterpreterCreate, TfLiteInterpreterInvoke): point inference.library at a libtensorflowlite_c.so, or remove the key to use the bundled TFLite 2.9`,
    ),
  );
});

t.test('runtime tensor details agree with the flatbuffer for every CPU asset model', async (t) => {
  const lib = TfLiteLibrary.load();
  for (const name of [
    'mobilenet_v2_1.0_224_quant.tflite',
    'mobilenet_v1_0.25_128_quant.tflite',
    'tf2_mobilenet_v2_1.0_224_ptq.tflite',
    'mobilenet_v1_0.25_224_1_metadata_1.tflite',
    'automl_labeler_model.tflite',
    'mobilenet_v1_0.25_224_float16.tflite',
    'mobilenet_v1_0.25_224_dynamic_range.tflite',
    'mobilenet_v1_0.25_224_full_int8.tflite',
    'dense_2x_minus_1.tflite',
  ]) {
    const bytes = readFileSync(model(name));
    const info = await parseModel(bytes, name);
    const it = TfLiteInterpreter.create(lib, bytes, { threads: 1 });
    const pairs = [...info.inputs.map((d, i) => [d, it.inputs[i]!] as const), ...info.outputs.map((d, i) => [d, it.outputs[i]!] as const)];
    for (const [file, rt] of pairs) {
      t.equal(rt.name, file.name, `${name}: name of ${file.name}`);
      t.same(rt.shape, file.shape, `${name}: shape of ${file.name}`);
      t.equal(rt.dtype, file.dtype, `${name}: dtype of ${file.name}`);
      t.equal(Math.fround(rt.quantization.scale), Math.fround(file.quantization[0]), `${name}: scale of ${file.name}`);
      t.equal(rt.quantization.zero_point, file.quantization[1], `${name}: zero point of ${file.name}`);
    }
    it.delete();
  }
});

t.test('every engine that loads a model classifies the cat as a cat, with scores close to the reference', async (t) => {
  const models = [
    'mobilenet_v2_1.0_224_quant.tflite',
    'tf2_mobilenet_v2_1.0_224_ptq.tflite',
    'mobilenet_v1_0.25_224_1_default_1.tflite',
    'mobilenet_v1_0.25_224_full_int8.tflite',
  ];
  const cpuEngines = ENGINE_NAMES.filter((e) => e !== 'edgetpu');
  for (const name of models) {
    const bytes = readFileSync(model(name));
    const info = await parseModel(bytes, name);
    const input = await inputFor(image('cat.png'), info.inputs[0]!.shape, info.inputs[0]!.dtype);
    const [scale, zp] = info.outputs[0]!.quantization;
    const real = (o: ArrayLike<number>): number[] => Array.from(o, (q) => (scale > 0 ? (q - zp) * scale : q));
    let reference: number[] | null = null;
    for (const engine of cpuEngines) {
      let e: LoadedEngine;
      try {
        e = await loadEngine(engine, { modelBytes: bytes, model: name, threads: 1 });
      } catch (err) {
        // LiteRT.js refuses int8 tensors: the only refusal expected among these.
        t.ok(err instanceof EngineLoadError && engine === 'litert-wasm' && name.includes('int8'), `${engine} on ${name}: ${(err as Error).message}`);
        t.match((err as Error).message, /^litert-wasm cannot run .*: Element type INT8 is not supported/);
        continue;
      }
      e.input(0).set(input as never);
      await e.run();
      const scores = real(e.output(0) as ArrayLike<number>);
      t.ok(CAT_CLASSES.has(top1(scores)), `${engine} on ${name}: top-1 ${top1(scores)} is a cat`);
      if (name === 'mobilenet_v2_1.0_224_quant.tflite') t.ok(Math.abs(scores[286]! - 0.75) < 0.06, `${engine}: Egyptian cat ≈ 0.75 (${scores[286]})`);
      if (reference === null) reference = scores;
      else {
        // Measured: XNNPACK int8 and LiteRT.js differ from the reference kernels by up to 24 steps, and agree in shape.
        t.equal(disagreement(reference, scores, scale > 0 ? scale : 1 / 256), null, `${engine} on ${name} agrees with tflite`);
        const worst = Math.max(...scores.map((s, i) => Math.abs(s - reference![i]!)));
        t.ok(worst <= 0.1, `${engine} on ${name}: no score more than 0.1 off tflite's (worst ${worst})`);
      }
      e.close();
    }
  }
});

t.test('XNNPACK that refuses a TF1 uint8 model falls back to the default kernels and says so', async (t) => {
  const bytes = readFileSync(model('mobilenet_v2_1.0_224_quant.tflite'));
  // The QS8 flag alone leaves uint8 operators to the default kernels; QU8 makes 2.9 fail the CONV_2D nodes.
  const lib = TfLiteLibrary.load();
  t.throws(() => TfLiteInterpreter.create(lib, bytes, { threads: 1, xnnpackFlags: 0x3 }), { messages: ['failed to delegate CONV_2D node #0'] } as never);
  const e = await loadEngine('tflite-xnnpack', { modelBytes: bytes, model: 'v2.tflite', threads: 1 });
  t.same(e.notes, [], 'with QS8 only, nothing fails');
  e.close();
});

t.test('engines refuse models they cannot run, naming the engine, the model and why', async (t) => {
  const broken = readFileSync(model('model_invoking_error.tflite'));
  for (const engine of ['tflite', 'tflite-xnnpack'] as EngineName[]) {
    await t.rejects(loadEngine(engine, { modelBytes: broken, model: 'broken.tflite', threads: 1 }), {
      name: 'EngineLoadError',
      message: `${engine} cannot run broken.tflite: Encountered unresolved custom op: fake-op-double.`,
    });
  }
  await t.rejects(loadEngine('litert-wasm', { modelBytes: broken, model: 'broken.tflite', threads: 1 }), {
    name: 'EngineLoadError',
    message:
      "litert-wasm cannot run broken.tflite: it uses the custom op 'fake-op-double', and LiteRT.js does not report custom ops it lacks (it would run the model to zeros)",
  });
  const edgetpu = readFileSync(model('mobilenet_v1_0.25_128_quant_edgetpu.tflite'));
  await t.rejects(loadEngine('tflite', { modelBytes: edgetpu, model: 'm_edgetpu.tflite', threads: 1 }), { message: /unresolved custom op: edgetpu-custom-op/ });
  await t.rejects(loadEngine('tflite', { modelBytes: new TextEncoder().encode('hello'), model: 'hello.txt', threads: 1 }), {
    message: /^tflite cannot run hello\.txt: /,
  });
  await t.rejects(loadEngine('nope' as EngineName, { modelBytes: broken, model: 'x', threads: 1 }), {
    message: 'unknown inference engine "nope": expected one of tflite, tflite-xnnpack, litert-wasm, edgetpu or auto',
  });
});

t.test('free input dimensions are resized before allocation', async (t) => {
  const bytes = readFileSync(model('mobilenet_v1_0.25_224_1_default_1.tflite'));
  const e = await loadEngine('tflite', { modelBytes: bytes, model: 'm', threads: 1, inputShapes: new Map([[0, [2, 224, 224, 3]]]) });
  t.same(e.inputs[0]!.shape, [2, 224, 224, 3]);
  t.equal(e.input(0).length, 2 * 224 * 224 * 3);
  e.close();
});

t.test('the Edge TPU engine goes through the external delegate plugin (stand-in library)', async (t) => {
  const { good, nullDelegate, dir } = buildFakeDelegates();
  const log = path.join(dir, 'calls.log');
  process.env.FAKE_DELEGATE_LOG = log;
  t.teardown(() => void delete process.env.FAKE_DELEGATE_LOG);
  const bytes = readFileSync(model('mobilenet_v1_0.25_128_quant.tflite'));
  const e = await loadEngine('edgetpu', { modelBytes: bytes, model: 'm', threads: 1, delegate: { path: good, options: [['device', 'usb:0']] } });
  (e.input(0) as Uint8Array).fill(128);
  e.run();
  t.equal((e.output(0) as Uint8Array).length, 1001, 'the stand-in claims no nodes: TFLite runs the model on the CPU');
  e.close();
  t.equal(readFileSync(log, 'utf8'), 'create device=usb:0\n', 'tflite_plugin_create_delegate got the device option');
  await t.rejects(loadEngine('edgetpu', { modelBytes: bytes, model: 'm', threads: 1, delegate: { path: nullDelegate, options: [] } }), {
    message: `the Edge TPU delegate ${nullDelegate} returned no delegate: is an Edge TPU attached, and is it the Edge TPU runtime?`,
  });
});

t.test('a session runs in a worker; two slots let the next input be written while one runs', async (t) => {
  const bytes = readFileSync(model('mobilenet_v1_0.25_128_quant.tflite'));
  const s = await InferenceSession.open({ modelBytes: bytes, model: 'v1.tflite', engine: 'tflite', threads: 1 });
  t.teardown(() => s.close());
  t.equal(s.runtime, 'TFLite 2.9.0');
  t.same(s.inputs[0], { name: 'input', shape: [1, 128, 128, 3], dtype: 'uint8', quantization: { scale: 0.0078125, zero_point: 128 }, bytes: 49152 });
  const cat = await inputFor(image('cat.png'), [1, 128, 128, 3], 'uint8');
  const single = await s.run([cat]);
  t.equal(top1(single.outputs[0] as Uint8Array), 283, 'this small model says tiger cat');
  const a = s.tryAcquire()!;
  const b = s.tryAcquire()!;
  t.equal(s.tryAcquire(), null, 'two slots, no more: nothing queues without bound');
  (a.inputs[0] as Uint8Array).set(cat);
  const first = s.invoke(a);
  (b.inputs[0] as Uint8Array).fill(0); // written while slot a is in inference
  const second = s.invoke(b);
  const [msA, msB] = await Promise.all([first, second]);
  t.ok(msA > 0 && msB > 0);
  t.same(Array.from(a.outputs[0] as Uint8Array), Array.from(single.outputs[0] as Uint8Array), 'slot a holds the cat result');
  t.not(top1(b.outputs[0] as Uint8Array), 283, 'slot b holds the black frame result');
  s.release(a);
  s.release(b);
  await t.rejects(s.run([new Uint8Array(3)]), { message: /needs 49152 bytes \(\[1,128,128,3\] uint8\), got 3/ });
});

t.test('a session that cannot load names the engine', async (t) => {
  const bytes = readFileSync(model('mobilenet_v1_0.25_224_full_int8.tflite'));
  const err = await InferenceSession.open({ modelBytes: bytes, model: 'int8.tflite', engine: 'litert-wasm', threads: 1 }).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(err instanceof SessionLoadError && err.engine === 'litert-wasm', 'SessionLoadError from litert-wasm');
  t.match((err as Error).message, /^litert-wasm cannot run int8\.tflite: Element type INT8 is not supported/);
});

t.test('a process that opens and closes XNNPACK sessions with 2 threads exits cleanly (the worker deletes its interpreter)', async (t) => {
  // A worker terminated with a live XNNPACK interpreter left its thread pool behind: the process died of SIGSEGV
  // at exit (seen in `run --check-config --self-test` with threads 2). A child process shows the exit status.
  const session = path.resolve('dist/inference/session.js');
  const script = `
    import { readFileSync } from 'node:fs';
    const { InferenceSession } = await import(${JSON.stringify(session)});
    const bytes = readFileSync(${JSON.stringify(model('tf2_mobilenet_v2_1.0_224_ptq.tflite'))});
    for (const run of [false, true, false]) {
      const s = await InferenceSession.open({ modelBytes: bytes, model: 'm', engine: 'tflite-xnnpack', threads: 2 });
      if (run) await s.run([new Uint8Array(s.inputs[0].bytes)]);
      await s.close();
    }
    console.log('closed');`;
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'ec-close-')), 'close.mjs');
  writeFileSync(file, script);
  const r = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 60_000 });
  t.equal(r.signal, null, `no signal (stderr: ${r.stderr.slice(-300)})`);
  t.equal(r.status, 0);
  t.equal(r.stdout.trim(), 'closed');
});
