import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { checkDelegateLibrary, EdgeTpuUnavailableError, edgeTpuDelegate, findSharedLibrary, probeDelegate } from '../../src/inference/delegate.js';
import { model } from '../helpers/assets.js';
import { buildFakeDelegates } from './fixtures/fake-delegate.js';

const fakes = buildFakeDelegates();
const env = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({ PATH: process.env.PATH, ...extra });

t.test('libedgetpu missing: the sentence that says what to install', async (t) => {
  await t.rejects(edgeTpuDelegate({ env: env() }), {
    name: 'EdgeTpuUnavailableError',
    library: 'libedgetpu.so.1',
    message:
      "libedgetpu.so.1 not found: install the Edge TPU runtime (sudo apt install libedgetpu1-std from Coral's apt repository, https://coral.ai/docs/accelerator/get-started/) or set inference.delegate to cpu",
  });
  const missing = path.join(fakes.dir, 'nowhere', 'libedgetpu.so.1');
  await t.rejects(edgeTpuDelegate({ env: env({ EDGE_CLASSIFIER_EDGETPU_LIB: missing }) }), {
    message: `${missing} not found: install the Edge TPU runtime (sudo apt install libedgetpu1-std from Coral's apt repository, https://coral.ai/docs/accelerator/get-started/) or set inference.delegate to cpu`,
  });
});

t.test('a file that exists but is not a delegate is refused before TFLite sees it', async (t) => {
  const text = path.join(fakes.dir, 'libedgetpu-text.so.1');
  writeFileSync(text, 'this is not a library\n'.repeat(10));
  await t.rejects(edgeTpuDelegate({ env: env({ EDGE_CLASSIFIER_EDGETPU_LIB: text }) }), {
    name: 'EdgeTpuUnavailableError',
    message: `${text} is not a usable Edge TPU delegate (it is not an ELF shared library): install the Edge TPU runtime (sudo apt install libedgetpu1-std from Coral's apt repository, https://coral.ai/docs/accelerator/get-started/) or set inference.delegate to cpu`,
  });
  // A real shared library of this machine that is not a TFLite delegate.
  const libz = await findSharedLibrary('libz.so.1', env());
  t.ok(libz, 'libz.so.1 found through the loader paths');
  t.equal(await checkDelegateLibrary(libz!), 'it does not export tflite_plugin_create_delegate and tflite_plugin_destroy_delegate');
  await t.rejects(edgeTpuDelegate({ libraryPath: libz!, env: env() }), {
    message: /is not a usable Edge TPU delegate \(it does not export tflite_plugin_create_delegate/,
  });
  // The node binary: an executable (ET_EXEC) or, where built as PIE, a shared object without the plugin symbols.
  t.match(
    await checkDelegateLibrary(process.execPath),
    /^(it is an ELF file of type 2, not a shared object|it does not export tflite_plugin_create_delegate and tflite_plugin_destroy_delegate)$/,
  );
});

t.test('a library exporting the plugin entry points gives the descriptor the binding reads', async (t) => {
  t.equal(await checkDelegateLibrary(fakes.good), null);
  t.same(await edgeTpuDelegate({ libraryPath: fakes.good, device: 'usb:0', env: env() }), {
    path: fakes.good,
    options: [['device', 'usb:0']],
  });
  t.same(await edgeTpuDelegate({ env: env({ EDGE_CLASSIFIER_EDGETPU_LIB: fakes.good }) }), { path: fakes.good, options: [] });
  await t.rejects(edgeTpuDelegate({ libraryPath: fakes.good, device: 'usb0', env: env() }), {
    message: 'inference.edgetpu_device "usb0" is not an Edge TPU device: expected usb, usb:N, pci, pci:N, :N or a device path',
  });
});

t.test('a soname is searched in LD_LIBRARY_PATH like the dynamic loader does', async (t) => {
  const libdir = path.join(fakes.dir, 'lib');
  mkdirSync(libdir, { recursive: true });
  copyFileSync(fakes.good, path.join(libdir, 'libedgetpu.so.1'));
  const descriptor = await edgeTpuDelegate({ device: 'pci:0', env: env({ LD_LIBRARY_PATH: `/nonexistent:${libdir}` }) });
  t.same(descriptor, { path: path.join(libdir, 'libedgetpu.so.1'), options: [['device', 'pci:0']] });
});

t.test('probeDelegate loads the model with the delegate in a child process', async (t) => {
  const log = path.join(fakes.dir, 'probe.log');
  process.env.FAKE_DELEGATE_LOG = log;
  t.teardown(() => {
    delete process.env.FAKE_DELEGATE_LOG;
  });
  await probeDelegate(model('mobilenet_v1_0.25_128_quant.tflite'), { path: fakes.good, options: [['device', 'usb:1']] });
  t.equal(readFileSync(log, 'utf8'), 'create device=usb:1\n', 'the plugin received the device option');
  // A delegate library that returns no delegate (libedgetpu without a device): refused with a sentence.
  const none = await probeDelegate(model('mobilenet_v1_0.25_128_quant.tflite'), { path: fakes.nullDelegate, options: [] }).catch((e: unknown) => e);
  t.ok(none instanceof EdgeTpuUnavailableError && none.problem === 'device');
  t.match(
    (none as Error).message,
    /^the Edge TPU delegate .*libfake-null\.so could not load .*mobilenet_v1_0\.25_128_quant\.tflite: the plugin returned no delegate \(is an Edge TPU attached/,
  );
  // One that crashes inside the interpreter (SIGSEGV): the child dies, the caller gets a sentence.
  const err = await probeDelegate(model('mobilenet_v1_0.25_128_quant.tflite'), { path: fakes.crash, options: [] }).catch((e: unknown) => e);
  t.ok(err instanceof EdgeTpuUnavailableError);
  t.match(
    (err as Error).message,
    /^the Edge TPU delegate .*libfake-crash\.so crashed the TFLite interpreter while loading .*mobilenet_v1_0\.25_128_quant\.tflite \(SIGSEGV\): is an Edge TPU attached/,
  );
  // The Edge-TPU-compiled model with a delegate that takes no op: TFLite's reason, and what it means.
  const compiled = await probeDelegate(model('mobilenet_v1_0.25_128_quant_edgetpu.tflite'), { path: fakes.good, options: [] }).catch((e: unknown) => e);
  t.match(
    (compiled as Error).message,
    /could not load .*_edgetpu\.tflite: Encountered unresolved custom op: edgetpu-custom-op\. \(the delegate did not take the Edge TPU op/,
  );
});
