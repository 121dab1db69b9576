import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { ConfigError, EX_CONFIG, loadConfig, packageRoot } from '../../src/config/load.js';
import { configSchema, DEFAULTS } from '../../src/config/schema.js';

const dir = mkdtempSync(path.join(tmpdir(), 'ec-config-'));
const write = (name: string, text: string) => {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
};
/** The ConfigError a load throws, or a failed test. */
const problemsOf = (fn: () => unknown): ConfigError => {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
};

t.test('defaults need no file and resolve the model against the package', async (t) => {
  const c = loadConfig({ env: {} });
  t.equal(c.source.spec, 'rpicam');
  t.equal(c.model.path, path.join(packageRoot, 'models', 'tf2_mobilenet_v2_1.0_224_ptq.tflite'));
  t.equal(c.mqtt.url, null, 'no broker URL: the embedded broker is used');
  t.equal(c.inference.delegate, 'cpu');
  t.same(c.gpio.rules, []);
});

t.test('a file overrides defaults, relative paths resolve against the file', async (t) => {
  const file = write(
    'ok.yaml',
    [
      'source: frames/',
      'model:',
      '  path: m/model.tflite',
      'mqtt:',
      '  url: mqtt://broker.local:1883',
      '  qos: 0',
      'gpio:',
      '  rules:',
      '    - pin: 17',
      '      labels: [Egyptian cat, tabby]',
    ].join('\n'),
  );
  const c = loadConfig({ file, env: {} });
  t.equal(c.source.spec, path.join(dir, 'frames'), 'string shorthand for source, resolved');
  t.equal(c.source.fps, DEFAULTS.source.fps, 'the rest of source keeps its defaults');
  t.equal(c.model.path, path.join(dir, 'm', 'model.tflite'));
  t.equal(c.mqtt.url, 'mqtt://broker.local:1883');
  t.equal(c.mqtt.qos, 0);
  t.equal(c.mqtt.keepalive, 30);
  t.same(c.gpio.rules, [{ pin: 17, labels: ['Egyptian cat', 'tabby'], min_score: 0.5, active_low: false, hold_ms: 0 }]);
});

t.test('JSON config files work too', async (t) => {
  const file = write('ok.json', JSON.stringify({ inference: { top_k: 5, threshold: 0.2 } }));
  const c = loadConfig({ file, env: {} });
  t.equal(c.inference.top_k, 5);
  t.equal(c.inference.threshold, 0.2);
});

t.test('precedence: defaults < file < environment < flags', async (t) => {
  const file = write('prec.yaml', 'mqtt:\n  url: mqtt://from-file:1883\n  base_topic: file/topic\nlog:\n  level: warn\n');
  const env = { EDGE_CLASSIFIER_MQTT_URL: 'mqtt://from-env:1883', EDGE_CLASSIFIER_LOG_LEVEL: 'debug' };
  const c = loadConfig({ file, env, overrides: { mqttUrl: 'mqtt://from-flag:1883' } });
  t.equal(c.mqtt.url, 'mqtt://from-flag:1883');
  t.equal(c.log.level, 'debug', 'environment beats the file');
  t.equal(c.mqtt.base_topic, 'file/topic', 'the file beats defaults');
  const flagged = loadConfig({ env: {}, cwd: dir, overrides: { model: 'x.tflite', gpioRules: [{ pin: 4, labels: ['cat'] }] } });
  t.equal(flagged.model.path, path.join(dir, 'x.tflite'), 'flag paths resolve against the working directory');
  t.same(flagged.gpio.rules[0], { pin: 4, labels: ['cat'], min_score: 0.5, active_low: false, hold_ms: 0 });
});

t.test('every problem is reported with its key, line, expectation and value', async (t) => {
  const file = write(
    'bad.yaml',
    [
      'source: /dev/video0',
      'mqtt:',
      '  qos: 3',
      '  bogus: 1',
      'inference:',
      '  delegate: tpu',
      'gpio:',
      '  rules:',
      '    - pin: 40',
      '      labels: [cat]',
    ].join('\n'),
  );
  const err = problemsOf(() => loadConfig({ file, env: {}, overrides: { threshold: 2 } }));
  t.equal(err.exitCode, EX_CONFIG);
  t.equal(EX_CONFIG, 78);
  t.equal(err.file, file);
  const byKey = (key: string) => err.problems.find((p) => p.startsWith(`${key}:`));
  t.equal(byKey('mqtt.qos'), 'mqtt.qos: expected 0, 1 or 2, but received 3 (line 3)');
  t.match(byKey('mqtt.bogus'), /^mqtt\.bogus: unknown key \(line 4\) \(expected one of: url, embedded_port, .*tls\)$/);
  t.equal(byKey('inference.delegate'), 'inference.delegate: expected one of "cpu"|"edgetpu", but received "tpu" (line 6)');
  t.equal(byKey('gpio.rules[0].pin'), 'gpio.rules[0].pin: expected at most 27, but received 40 (line 9)');
  t.equal(byKey('inference.threshold'), 'inference.threshold: expected at most 1, but received 2 (from --threshold)');
  t.equal(err.problems.length, 5);
  t.match(err.message, /^invalid configuration in .*bad\.yaml:\n {2}- /);
});

t.test('environment values are named when wrong', async (t) => {
  const err = problemsOf(() => loadConfig({ env: { EDGE_CLASSIFIER_DELEGATE: 'gpu' } }));
  t.same(err.problems, ['inference.delegate: expected one of "cpu"|"edgetpu", but received "gpu" (from EDGE_CLASSIFIER_DELEGATE)']);
});

t.test('unknown top-level keys and wrong types', async (t) => {
  const err = problemsOf(() => loadConfig({ file: write('typo.yaml', 'modle:\n  path: x\nsource:\n  fps: fast\n'), env: {} }));
  t.ok(
    err.problems.some((p) => /^modle: unknown key \(line 1\) \(expected one of: source, model, inference/.test(p)),
    err.problems.join('\n'),
  );
  t.ok(err.problems.includes('source.fps: expected a number, but received "fast" (line 4)'), err.problems.join('\n'));
});

t.test('YAML syntax errors, non-mapping files and missing files', async (t) => {
  const syntax = problemsOf(() => loadConfig({ file: write('syntax.yaml', 'mqtt:\n  url: [unclosed\n'), env: {} }));
  t.match(syntax.problems[0], /^line \d+ column \d+: /);
  const list = problemsOf(() => loadConfig({ file: write('list.yaml', '- a\n- b\n'), env: {} }));
  t.match(list.problems[0], /expected a mapping of keys .* but found a list of 2/);
  const missing = problemsOf(() => loadConfig({ file: path.join(dir, 'nope.yaml'), env: {} }));
  t.match(missing.message, /cannot read config file .*nope\.yaml: no such file/);
  const dup = problemsOf(() => loadConfig({ file: write('dup.yaml', 'log:\n  level: info\nlog:\n  level: warn\n'), env: {} }));
  t.match(dup.problems[0], /line 3 column 1: Map keys must be unique/);
});

t.test('the defaults satisfy the schema and every key is documented in the README', async (t) => {
  t.ok(configSchema.safeParse(DEFAULTS).success);
  const readme = readFileSync(path.join(packageRoot, 'README.md'), 'utf8');
  const keys: string[] = [];
  const walk = (obj: Record<string, unknown>, prefix: string) => {
    for (const [k, v] of Object.entries(obj)) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (v && typeof v === 'object' && !Array.isArray(v)) walk(v as Record<string, unknown>, key);
      else keys.push(key);
    }
  };
  walk(DEFAULTS as unknown as Record<string, unknown>, '');
  for (const k of ['gpio.rules[].pin', 'gpio.rules[].labels', 'gpio.rules[].min_score', 'gpio.rules[].active_low', 'gpio.rules[].hold_ms']) keys.push(k);
  const undocumented = keys.filter((k) => !readme.includes(`\`${k}\``));
  t.same(undocumented, [], 'each key appears as `key` in the README configuration reference');
});

t.test('systemd/config.example.yaml is valid and lists the defaults', async (t) => {
  const c = loadConfig({ file: path.join(packageRoot, 'systemd', 'config.example.yaml'), env: {} });
  t.same({ ...c, model: { ...c.model, path: DEFAULTS.model.path } }, DEFAULTS);
});

t.test('state, snapshot and Home Assistant keys: bounds, a window below min_frames, a discovery prefix with wildcards', async (t) => {
  const problems = problemsOf(() =>
    loadConfig({
      file: write(
        'mqtt-keys.yaml',
        [
          'state:',
          '  min_frames: 3',
          '  window_frames: 2',
          '  hysteresis: 1.5',
          'homeassistant:',
          '  prefix: "homeassistant/#"',
          'snapshot:',
          '  quality: 0',
        ].join('\n'),
      ),
      env: {},
    }),
  ).problems;
  t.ok(problems.includes('state.window_frames: expected at least min_frames (3) or null, but received 2 (line 3)'), problems.join('\n'));
  t.ok(problems.includes('state.hysteresis: expected at most 1, but received 1.5 (line 4)'), problems.join('\n'));
  t.ok(
    problems.includes(
      "homeassistant.prefix: contains a wildcard ('+' or '#'): expected a plain topic such as homeassistant, but received \"homeassistant/#\" (line 6)",
    ),
    problems.join('\n'),
  );
  t.ok(problems.includes('snapshot.quality: expected at least 1, but received 0 (line 8)'), problems.join('\n'));
});

t.test('messages for bounds, whole numbers and empty values', async (t) => {
  const problems = problemsOf(() =>
    loadConfig({ file: write('bounds.yaml', 'source:\n  fps: 0\n  width: 640.5\ninference:\n  top_k: 0\n'), env: {}, overrides: { source: '' } }),
  ).problems;
  t.ok(problems.includes('source.spec: expected a non-empty string, but received "" (from --source)'), problems.join('\n'));
  t.ok(problems.includes('source.fps: expected more than 0, but received 0 (line 2)'), problems.join('\n'));
  t.ok(problems.includes('source.width: expected a whole number, but received 640.5 (line 3)'), problems.join('\n'));
  t.ok(problems.includes('inference.top_k: expected more than 0, but received 0 (line 5)'), problems.join('\n'));
});

t.test("the bounds of every stage are the schema's: one message form, the key, what came", async (t) => {
  const file = write(
    'stage-bounds.yaml',
    [
      'source:',
      '  width: 0',
      '  height: 8192',
      '  fps: 1000',
      '  rotation: 45',
      '  hflip: yes please',
      '  jpeg_quality: 0',
      'mqtt:',
      '  embedded_port: 70000',
      '  qos: 3',
      '  prediction_interval_ms: -1',
      'gpio:',
      '  rules:',
      '    - pin: 17',
      '      labels: [cat]',
      '    - pin: 40',
      '      labels: [x]',
      '    - pin: 4',
      '      labels: []',
      '    - pin: 5',
      '      labels: [a, " "]',
      '    - pin: 6',
      '      labels: [a]',
      '      min_score: -0.1',
      '    - pin: 7',
      '      labels: [a]',
      '      hold_ms: 1.5',
    ].join('\n'),
  );
  const problems = problemsOf(() => loadConfig({ file, env: {} })).problems;
  for (const expected of [
    'source.width: expected at least 16, but received 0 (line 2)',
    'source.height: expected at most 4096, but received 8192 (line 3)',
    'source.fps: expected at most 120, but received 1000 (line 4)',
    'source.rotation: expected 0, 90, 180 or 270, but received 45 (line 5)',
    'source.hflip: expected true or false, but received "yes please" (line 6)',
    'source.jpeg_quality: expected at least 1, but received 0 (line 7)',
    'mqtt.embedded_port: expected at most 65535, but received 70000 (line 9)',
    'mqtt.qos: expected 0, 1 or 2, but received 3 (line 10)',
    'mqtt.prediction_interval_ms: expected at least 0, but received -1 (line 11)',
    'gpio.rules[1].pin: expected at most 27, but received 40 (line 16)',
    'gpio.rules[2].labels: expected at least one item, but received a list of 0 (line 19)',
    'gpio.rules[3].labels[1]: expected a non-empty string, but received " " (line 21)',
    'gpio.rules[4].min_score: expected at least 0, but received -0.1 (line 24)',
    'gpio.rules[5].hold_ms: expected a whole number, but received 1.5 (line 27)',
  ]) {
    t.ok(problems.includes(expected), expected);
  }
  t.equal(problems.length, 14, 'nothing else');
  const twice = write(
    'pin-twice.yaml',
    'gpio:\n  rules:\n    - pin: 17\n      labels: [cat]\n    - pin: 4\n      labels: [x]\n    - pin: 17\n      labels: [dog]\n',
  );
  t.same(problemsOf(() => loadConfig({ file: twice, env: {} })).problems, [
    'gpio.rules[2].pin: BCM pin 17 is already used by gpio.rules[0]: expected one rule per pin, but received 17 (line 7)',
  ]);
});

t.test('camera keys: a bad ROI, an interval of 0 and a trigger pin used by an output are refused naming the key', async (t) => {
  const problems = (yaml: string) => problemsOf(() => loadConfig({ file: write('camera.yaml', yaml), env: {} })).problems;
  const outside = problems('source:\n  roi: {x: 0.5, y: 0, width: 0.6, height: 1}\n');
  t.ok(
    outside.some((p) => p.startsWith('source.roi: the ROI reaches outside the frame (x + width = 1.1, y + height = 1): expected both at most 1')),
    outside.join('\n'),
  );
  const empty = problems('source:\n  roi: {x: 0.1, y: 0.1, width: 0, height: 0.5}\n');
  t.ok(
    empty.some((p) => /^source\.roi: the ROI has zero size/.test(p)),
    empty.join('\n'),
  );
  const partial = problems('source:\n  roi: {x: 0.1}\n');
  t.ok(
    partial.some((p) => /^source\.roi\.y: /.test(p)),
    partial.join('\n'),
  );
  const zero = problems('source:\n  mode: interval\n  interval_s: 0\n');
  t.ok(
    zero.some((p) => p === 'source.interval_s: expected at least 0.1, but received 0 (line 3)'),
    zero.join('\n'),
  );
  const shared = problems('source:\n  mode: trigger\n  trigger: {pin: 17}\ngpio:\n  rules:\n    - pin: 17\n      labels: [cat]\n');
  t.ok(
    shared.some((p) => p.startsWith('source.trigger.pin: BCM pin 17 is already used as an output by gpio.rules[0]: expected a free pin for the trigger input')),
    shared.join('\n'),
  );
  const c = loadConfig({
    file: write('ok.yaml', 'source:\n  mode: trigger\n  format: mjpeg\n  trigger: {pin: 4, edge: falling, pull: up}\n  motion: {enabled: true}\n'),
    env: {},
  });
  t.same(c.source.trigger, { pin: 4, edge: 'falling', debounce_ms: 200, pull: 'up', burst: 3 }, 'partial sections take the defaults');
  t.equal(c.source.motion.threshold, 0.02);
  t.equal(c.source.format, 'mjpeg');
});
