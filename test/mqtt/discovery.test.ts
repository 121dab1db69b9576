import t from 'tap';
import { buildDiscovery, type DiscoveryTopics, discoveryObjectId, removalMessage, validateDiscoveryPrefix } from '../../src/mqtt/discovery.js';
import { renderTemplates } from '../helpers/jinja.js';
import { assertPayload, payloadErrors } from '../helpers/schemas.js';

const base = 'edge-classifier/f50949f48743';
const topics: DiscoveryTopics = {
  base,
  availability: `${base}/availability`,
  state: `${base}/state`,
  stats: `${base}/stats`,
  problems: `${base}/problems`,
  snapshot: `${base}/snapshot`,
  settings: `${base}/settings`,
  gpio: (pin) => `${base}/gpio/${pin}`,
  set: (key) => `${base}/set/${key}`,
  request: (command) => `${base}/request/${command}`,
};
const options = {
  prefix: 'homeassistant',
  deviceId: 'f50949f48743',
  defaultBase: base,
  topics,
  deviceName: 'edge-classifier front-door',
  model: 'mobilenet_v2_1.0_224_quant',
  swVersion: '0.1.0',
  hardware: 'Raspberry Pi 4 Model B Rev 1.4',
  gpio: [{ pin: 17, labels: ['Egyptian cat', 'tabby, tabby cat'] }],
  watch: ['hotdog, hot dog, red hot', "jack-o'-lantern"],
  commands: true,
};

t.test('one device discovery message with every entity, valid against the documented keys', async (t) => {
  const m = buildDiscovery(options);
  t.equal(m.topic, 'homeassistant/device/edge_classifier_f50949f48743/config');
  const p = JSON.parse(m.payload);
  assertPayload(t, 'homeassistant-discovery', p);
  t.same(p.dev, {
    ids: ['edge_classifier_f50949f48743'],
    name: 'edge-classifier front-door',
    mf: 'edge-classifier',
    mdl: 'mobilenet_v2_1.0_224_quant',
    sw: '0.1.0',
    hw: 'Raspberry Pi 4 Model B Rev 1.4',
  });
  t.same(p.o, { name: 'edge-classifier', sw: '0.1.0' });
  t.equal(p.availability_topic, `${base}/availability`);
  const cmps = p.cmps as Record<string, Record<string, unknown>>;
  t.same(
    Object.entries(cmps).map(([id, c]) => [id, c.p]),
    [
      ['top_label', 'sensor'],
      ['gpio_17', 'binary_sensor'],
      ['watch_hotdog_hot_dog_red_hot', 'binary_sensor'],
      ['watch_jack-o_-lantern', 'binary_sensor'],
      ['inference_ms', 'sensor'],
      ['classified_fps', 'sensor'],
      ['cpu_temperature', 'sensor'],
      ['problems', 'sensor'],
      ['snapshot', 'image'],
      ['threshold', 'number'],
      ['paused', 'switch'],
      ['reload', 'button'],
    ],
  );
  const ids = Object.values(cmps).map((c) => c.unique_id);
  t.equal(new Set(ids).size, ids.length, 'unique_id differs per entity');
  for (const c of Object.values(cmps)) {
    for (const [k, v] of Object.entries(c)) if (k.endsWith('_topic')) t.ok(String(v).startsWith(`${base}/`), `${c.unique_id} ${k} is under the base topic`);
  }
  t.same([cmps.gpio_17!.state_topic, cmps.gpio_17!.payload_on, cmps.gpio_17!.payload_off], [`${base}/gpio/17`, '1', '0']);
  t.same([cmps.snapshot!.image_topic, cmps.snapshot!.content_type], [`${base}/snapshot`, 'image/jpeg']);
  t.same([cmps.threshold!.command_topic, cmps.threshold!.min, cmps.threshold!.max], [`${base}/set/threshold`, 0, 1]);
  t.equal(cmps.reload!.command_topic, `${base}/request/reload`);
  t.equal(cmps.cpu_temperature!.entity_category, 'diagnostic');
  t.match(
    String(cmps['watch_jack-o_-lantern']!.value_template),
    `l == "jack-o'-lantern" or "jack-o'-lantern" in l.split(', ')`,
    'the label is a quoted Jinja string',
  );
  t.equal(buildDiscovery(options).payload, m.payload, 'deterministic: a re-publish changes nothing');
});

t.test('without commands: no number, switch or button', async (t) => {
  const p = JSON.parse(buildDiscovery({ ...options, commands: false, gpio: [], watch: [] }).payload);
  t.same(Object.keys(p.cmps), ['top_label', 'inference_ms', 'classified_fps', 'cpu_temperature', 'problems', 'snapshot']);
  assertPayload(t, 'homeassistant-discovery', p);
});

t.test('the schema catches a misspelt or undocumented key', async (t) => {
  const p = JSON.parse(buildDiscovery(options).payload);
  p.cmps.top_label.state_topik = p.cmps.top_label.state_topic;
  delete p.cmps.top_label.state_topic;
  t.match(payloadErrors('homeassistant-discovery', p), /must have required property 'state_topic'/);
  t.match(payloadErrors('homeassistant-discovery', p), /must NOT have unevaluated properties/);
});

t.test('a second instance on the same machine is another device; removal is an empty payload', async (t) => {
  const other = `${base}/garage`;
  const id = discoveryObjectId('f50949f48743', other, base);
  t.match(id, /^edge_classifier_f50949f48743_[0-9a-f]{6}$/);
  t.same(removalMessage(options), { topic: 'homeassistant/device/edge_classifier_f50949f48743/config', payload: '' });
});

t.test('discovery prefix: wildcards and other bad prefixes are refused', async (t) => {
  t.equal(validateDiscoveryPrefix('homeassistant'), 'homeassistant');
  t.throws(() => validateDiscoveryPrefix('homeassistant/#'), /Home Assistant discovery prefix "homeassistant\/#" contains a wildcard/);
  t.throws(() => validateDiscoveryPrefix('ha/+/x'), /wildcard/);
  t.throws(() => validateDiscoveryPrefix(''), /is empty/);
  t.throws(() => validateDiscoveryPrefix('/ha'), /starts or ends with '\/'/);
  t.throws(() => buildDiscovery({ ...options, prefix: '#' }), /wildcard/);
});

t.test('watch labels: on for the label or one of its synonyms (rendered by Jinja2), unknown while the state is', async (t) => {
  const p = JSON.parse(buildDiscovery({ ...options, watch: ['Hot Dog'] }).payload);
  const template = p.cmps.watch_hot_dog.value_template as string;
  const state = (status: string, label: string | null) => JSON.stringify({ status, label });
  t.same(
    renderTemplates([
      { template, payload: state('detected', 'hotdog, hot dog, red hot') },
      { template, payload: state('detected', 'hot dog') },
      { template, payload: state('detected', 'Egyptian cat') },
      { template, payload: state('none', null) },
      { template, payload: state('unknown', null) },
    ]),
    ['ON', 'ON', 'OFF', 'OFF', 'None'],
  );
});
