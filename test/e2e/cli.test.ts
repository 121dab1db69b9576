/** The command line as a user runs it: classify, inspect, exit codes, bad input, Edge TPU fallback. */

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { image, labels, model } from '../helpers/assets.js';
import { runCli } from '../helpers/cli.js';

const V2 = model('mobilenet_v2_1.0_224_quant.tflite');
const tmp = mkdtempSync(path.join(tmpdir(), 'ec-cli-'));
// Make sure no Edge TPU runtime is found, even on a machine that has one.
const noTpu = { ...process.env, EDGE_CLASSIFIER_EDGETPU_LIB: path.join(tmp, 'libedgetpu.so.1') };

interface ClassifyLine {
  file: string;
  classes: { index: number; label: string; score: number }[];
}

t.test('classify --json: one object per image, the top-1 of SOURCES.md', async (t) => {
  const files = ['cat.png', 'grace_hopper.png', 'bird.png', 'dragonfly.png'].map(image);
  const r = await runCli(['classify', '--model', V2, '--json', '--top-k', '2', ...files]);
  t.equal(r.code, 0, r.stderr);
  const lines = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as ClassifyLine);
  t.equal(lines.length, 4);
  t.same(
    lines.map((l) => l.file),
    files,
  );
  t.same(
    lines.slice(0, 3).map((l) => l.classes[0]!.label),
    ['Egyptian cat', 'military uniform', 'chickadee'],
  );
  t.match(lines[3]!.classes[0]!.label, /^dragonfly/);
  t.ok(
    lines.every((l) => l.classes.length >= 1 && l.classes.length <= 2),
    'top-k 2 above the 0.1 threshold',
  );
  t.equal(lines[0]!.classes.length, 2, 'the cat has a runner-up above 0.1');
  t.ok(lines[0]!.classes[0]!.score > 0.6 && lines[0]!.classes[0]!.score < 0.9, `cat score ${lines[0]!.classes[0]!.score} near 0.75`);
  t.ok(lines[0]!.classes[0]!.score >= lines[0]!.classes[1]!.score, 'highest first');
});

t.test('classify: text output, a bad image among good ones', async (t) => {
  const bmp = image('rgb6X4.bmp');
  const r = await runCli(['classify', '--model', V2, image('hot_dog.jpg'), bmp, path.join(tmp, 'missing.jpg')]);
  t.equal(r.code, 1, 'exit 1 when an image failed');
  t.match(r.stdout, /hot_dog\.jpg: hotdog, hot dog, red hot \(935\) 0\.9\d\d/);
  t.match(r.stderr, /rgb6X4\.bmp.*BMP/, 'BMP named with what works');
  t.match(r.stderr, /cannot read the image .*missing\.jpg: no such file/);
});

t.test('classify with the float model (metadata normalization) and the flowers model', async (t) => {
  const float = await runCli(['classify', '--model', model('mobilenet_v1_0.25_224_1_metadata_1.tflite'), '--json', image('cat.png')]);
  t.equal(float.code, 0, float.stderr);
  t.match((JSON.parse(float.stdout) as ClassifyLine).classes[0]!.label, /cat/);
  const flowers = await runCli(['classify', '--model', model('automl_labeler_model.tflite'), '--json', image('sunflower.png')]);
  t.equal(flowers.code, 0, flowers.stderr);
  t.equal((JSON.parse(flowers.stdout) as ClassifyLine).classes[0]!.label, 'sunflowers');
});

t.test('a float model with no normalization refuses to start and says why', async (t) => {
  const r = await runCli(['classify', '--model', model('mobilenet_v1_0.25_224_1_default_1.tflite'), image('cat.png')]);
  t.not(r.code, 0);
  t.match(r.stderr, /float32 input and no normalization/);
  t.match(r.stderr, /mean/);
  const cfg = path.join(tmp, 'float.yaml');
  writeFileSync(cfg, 'preprocess:\n  mean: 127.5\n  std: 127.5\n');
  const withCfg = await runCli([
    'classify',
    '--config',
    cfg,
    '--model',
    model('mobilenet_v1_0.25_224_1_default_1.tflite'),
    '--labels',
    labels('imagenet_labels.txt'),
    '--json',
    image('cat.png'),
  ]);
  t.equal(withCfg.code, 0, withCfg.stderr);
  t.match((JSON.parse(withCfg.stdout) as ClassifyLine).classes[0]!.label, /cat/);
});

t.test('inspect --json: input and output details and metadata', async (t) => {
  const r = await runCli(['inspect', '--model', V2, '--json']);
  t.equal(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout);
  t.same(info.inputs[0].shape, [1, 224, 224, 3]);
  t.equal(info.inputs[0].dtype, 'uint8');
  t.same(info.inputs[0].quantization, [0.0078125, 128]);
  t.same(info.outputs[0].shape, [1, 1001]);
  t.equal(info.outputs[0].quantization[0], 0.00390625);
  t.equal(info.metadata.labels.length, 1001);
  t.equal(info.requires_edgetpu, false);
  const text = await runCli(['inspect', '--model', model('mobilenet_v1_0.25_128_quant_edgetpu.tflite')]);
  t.equal(text.code, 0, text.stderr);
  t.match(text.stdout, /custom ops: edgetpu-custom-op/);
  t.match(text.stdout, /needs the Edge TPU: yes/);
});

t.test('model errors are sentences', async (t) => {
  const notModel = await runCli(['inspect', '--model', image('cat.png')]);
  t.not(notModel.code, 0);
  t.match(notModel.stderr, /cat\.png is not a TFLite model/);
  const broken = await runCli(['classify', '--model', model('model_invoking_error.tflite'), image('cat.png')]);
  t.not(broken.code, 0);
  t.match(broken.stderr, /custom op/i);
  const tpuOnCpu = await runCli(['classify', '--model', model('mobilenet_v1_0.25_128_quant_edgetpu.tflite'), image('cat.png')]);
  t.not(tpuOnCpu.code, 0);
  t.match(tpuOnCpu.stderr, /Edge TPU/);
});

t.test('Edge TPU without libedgetpu: exit with the install hint, or fall back to --cpu-model', async (t) => {
  const tpuModel = model('mobilenet_v1_0.25_128_quant_edgetpu.tflite');
  const refused = await runCli(['classify', '--model', tpuModel, '--delegate', 'edgetpu', image('cat.png')], { env: noTpu });
  t.equal(refused.code, 78, 'a missing runtime is a configuration that cannot work, as for run');
  t.match(refused.stderr, /libedgetpu\.so\.1 not found: install the Edge TPU runtime/);
  const fallback = await runCli(
    [
      'classify',
      '--model',
      tpuModel,
      '--delegate',
      'edgetpu',
      '--cpu-model',
      model('mobilenet_v1_0.25_128_quant.tflite'),
      '--json',
      '--log-level',
      'warn',
      image('cat.png'),
    ],
    { env: noTpu },
  );
  t.equal(fallback.code, 0, fallback.stderr);
  t.match(fallback.stderr, /Edge TPU runtime/, 'warned, naming the runtime');
  t.equal(fallback.stderr.match(/Edge TPU runtime/g)!.length, 1, 'warned once');
  t.match((JSON.parse(fallback.stdout) as ClassifyLine).classes[0]!.label, /cat|tabby/);
});

t.test('a bad config exits 78 naming the key; --check-config validates', async (t) => {
  const bad = path.join(tmp, 'bad.yaml');
  writeFileSync(bad, 'mqtt:\n  qos: 5\n');
  const r = await runCli(['run', '--config', bad]);
  t.equal(r.code, 78);
  t.match(r.stderr, /mqtt\.qos: expected 0, 1 or 2, but received 5 \(line 2\)/);
  const unknown = await runCli(['run', '--check-config', '--config', bad]);
  t.equal(unknown.code, 78);
  const good = path.join(tmp, 'good.yaml');
  writeFileSync(good, 'mqtt:\n  qos: 0\n  password: secret\n');
  const ok = await runCli(['run', '--check-config', '--config', good, '--model', V2, '--source', tmp]);
  t.equal(ok.code, 0, ok.stderr);
  const resolved = JSON.parse(ok.stdout);
  t.equal(resolved.mqtt.qos, 0);
  t.equal(resolved.mqtt.password, '***', 'secrets are not printed');
  const badFlag = await runCli(['run', '--check-config', '--gpio', 'seventeen=cat']);
  t.equal(badFlag.code, 78, 'a bad --gpio rule is a configuration error');
  t.match(badFlag.stderr, /seventeen=cat/);
  const usage = await runCli(['classify']);
  t.equal(usage.code, 2, 'usage error');
});

t.test('--check-config checks what the configuration refers to', async (t) => {
  const cfg = path.join(tmp, 'refs.yaml');
  writeFileSync(
    cfg,
    [
      'source: /no/such/folder',
      'model:',
      `  path: ${image('cat.png')}`,
      `  labels: ${path.join(tmp, 'no-labels.txt')}`,
      'mqtt:',
      "  base_topic: 'a/#/b'",
      '  tls:',
      `    ca: ${path.join(tmp, 'no-ca.pem')}`,
    ].join('\n'),
  );
  const r = await runCli(['run', '--check-config', '--config', cfg]);
  t.equal(r.code, 78);
  t.match(r.stderr, /model\.path: .*cat\.png is not a TFLite model/);
  t.match(r.stderr, /model\.labels: .*no-labels\.txt/);
  t.match(r.stderr, /mqtt\.tls\.ca: cannot read .*no-ca\.pem: no such file/);
  t.match(r.stderr, /source\.spec: source '\/no\/such\/folder' is not a known source name/);
  t.match(r.stderr, /mqtt\.base_topic: base topic "a\/#\/b" contains a wildcard/);
  const run = await runCli(['run', '--config', cfg]);
  t.equal(run.code, 78, 'run refuses the same configuration with 78 before starting anything');
  const float = await runCli(['run', '--check-config', '--model', model('mobilenet_v1_0.25_224_1_default_1.tflite'), '--source', tmp]);
  t.equal(float.code, 78);
  t.match(float.stderr, /preprocess\.mean: .*float32 input and no normalization/);
  const broken = await runCli(['run', '--check-config', '--model', model('model_invoking_error.tflite'), '--source', tmp]);
  t.equal(broken.code, 78, 'a model the daemon cannot feed is refused before start');
  t.match(broken.stderr, /model\.path: model input '.*' has shape \[1,3\] and dtype uint8: expected an RGB image tensor of shape \[1,H,W,3\]/);
  t.match(
    broken.stderr,
    /model\.path: .*model_invoking_error\.tflite uses the custom op 'fake-op-double'/,
    'every problem of the model is named, not only the first',
  );
  const tpu = await runCli(['run', '--check-config', '--model', model('mobilenet_v1_0.25_128_quant_edgetpu.tflite'), '--source', tmp]);
  t.equal(tpu.code, 78);
  t.match(tpu.stderr, /compiled for the Edge TPU and cannot run on the CPU/);
});

t.test('--check-config: camera programs, empty folders, TLS contents, half-set normalization, hidden passwords', async (t) => {
  const empty = mkdtempSync(path.join(tmpdir(), 'ec-empty-'));
  const noRpicam = await runCli(['run', '--check-config', '--model', V2, '--source', 'rpicam'], {
    env: { ...process.env, PATH: path.dirname(process.execPath) },
  });
  t.equal(noRpicam.code, 78);
  t.match(noRpicam.stderr, /source\.spec: .*needs rpicam-vid \(or libcamera-vid\).*sudo apt install rpicam-apps/);
  const emptyFolder = await runCli(['run', '--check-config', '--model', V2, '--source', empty]);
  t.equal(emptyFolder.code, 78);
  t.match(emptyFolder.stderr, /source\.spec: .*no files to replay/);
  const cfg = path.join(tmp, 'tls.yaml');
  const notPem = path.join(tmp, 'not.pem');
  writeFileSync(notPem, 'hello\n');
  writeFileSync(cfg, ['mqtt:', '  url: mqtts://user:s3cret@broker.local:8883', '  tls:', `    ca: ${notPem}`, 'preprocess:', '  mean: 127.5'].join('\n'));
  const bad = await runCli(['run', '--check-config', '--config', cfg, '--model', V2, '--source', tmp]);
  t.equal(bad.code, 78);
  t.match(bad.stderr, /preprocess\.std: set both preprocess\.mean and preprocess\.std, or neither/);
  writeFileSync(cfg, ['mqtt:', '  url: mqtts://user:s3cret@broker.local:8883', '  tls:', `    ca: ${notPem}`].join('\n'));
  const tls = await runCli(['run', '--check-config', '--config', cfg, '--model', V2, '--source', tmp]);
  t.equal(tls.code, 78);
  t.match(tls.stderr, /mqtt\.tls\.ca: .*not\.pem holds no PEM certificate/);
  writeFileSync(cfg, ['mqtt:', '  url: mqtts://user:s3cret@broker.local:8883'].join('\n'));
  const ok = await runCli(['run', '--check-config', '--config', cfg, '--model', V2, '--source', 'rtsp://admin:hunter2@cam.local/stream']);
  t.equal(ok.code, 0, ok.stderr);
  t.notMatch(ok.stdout, /s3cret|hunter2/, 'no password in the printed configuration');
  t.match(ok.stdout, /mqtts:\/\/user:\*\*\*@broker\.local:8883/);
});

t.test('flags as a user types them: --gpio options in any order, decimal numbers only, resolved identity and label warnings', async (t) => {
  const r = await runCli([
    'run',
    '--check-config',
    '--model',
    V2,
    '--source',
    tmp,
    '--gpio',
    '17=Egyptian cat:active-low:hold=2000@0.6',
    '--gpio',
    '27=kitty|tabby, tabby cat',
  ]);
  t.equal(r.code, 0, r.stderr);
  const c = JSON.parse(r.stdout);
  t.same(c.gpio.rules, [
    { pin: 17, labels: ['Egyptian cat'], min_score: 0.6, active_low: true, hold_ms: 2000 },
    { pin: 27, labels: ['kitty', 'tabby, tabby cat'], min_score: 0.5, active_low: false, hold_ms: 0 },
  ]);
  t.match(c.mqtt.base_topic, /^edge-classifier\/[0-9a-f]{12}$/, 'the base topic in use, not null');
  t.equal(c.mqtt.client_id, `edge-classifier-${c.mqtt.base_topic.split('/')[1]}`, 'the client id in use, not null');
  t.match(r.stderr, /warning: GPIO 27: the model has no class named "kitty": that label will never switch the output/);
  t.notMatch(r.stderr, /GPIO 17/, 'a known label gives no warning');
  const unknown = await runCli(['run', '--check-config', '--model', V2, '--source', tmp, '--gpio', '17=cat:activelow@0.6']);
  t.equal(unknown.code, 78);
  t.match(
    unknown.stderr,
    /--gpio '17=cat:activelow@0\.6': unknown option ':activelow'.*expected PIN=LABEL\[\|LABEL…\]\[@MIN_SCORE\]\[:active-low\]\[:hold=MS\]/,
  );
  for (const args of [
    ['--top-k', ''],
    ['--top-k', '0x10'],
    ['--threshold', '0x1'],
    ['--threshold', ''],
    ['--threads', '1.5'],
  ]) {
    const bad = await runCli(['classify', ...args, image('cat.png')]);
    t.equal(bad.code, 2, `${args.join(' ')}: usage error`);
    t.match(bad.stderr, /expects a (whole )?number, got/);
  }
});
