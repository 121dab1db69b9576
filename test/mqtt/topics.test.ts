import t from 'tap';
import { assertPublishTopic, defaultBaseTopic, defaultClientId, encodePayload, predictionPayload, Topics, validateBaseTopic } from '../../src/mqtt/topics.js';

t.test('topic names under a base topic', async (t) => {
  const topics = new Topics('edge-classifier/front-door');
  t.equal(topics.availability, 'edge-classifier/front-door/availability');
  t.equal(topics.prediction, 'edge-classifier/front-door/prediction');
  t.equal(topics.state, 'edge-classifier/front-door/state');
  t.equal(topics.gpio(17), 'edge-classifier/front-door/gpio/17');
  t.throws(() => topics.gpio(28), /GPIO pin 28 .*expected a BCM pin number 0\.\.27/);
  t.throws(() => topics.gpio(1.5), /GPIO pin 1\.5/);
  t.equal(defaultBaseTopic('f50949f48743'), 'edge-classifier/f50949f48743');
  t.equal(defaultClientId('f50949f48743'), 'edge-classifier-f50949f48743');
  t.equal(defaultClientId('f50949f48743', 'edge-classifier/f50949f48743'), 'edge-classifier-f50949f48743', 'default base topic: plain id');
  // printf 'garden/cam2' | sha256sum → 81fe4c…
  t.equal(defaultClientId('f50949f48743', 'garden/cam2'), 'edge-classifier-f50949f48743-81fe4c', 'another base topic: its hash is added');
});

t.test('base topic validation names the topic and the problem', async (t) => {
  t.equal(validateBaseTopic('home/garage/cam 1'), 'home/garage/cam 1');
  t.equal(validateBaseTopic('café/ü'), 'café/ü');
  t.throws(() => validateBaseTopic(''), /base topic "" is empty/);
  t.throws(() => validateBaseTopic('home/+/cam'), /base topic "home\/\+\/cam" contains a wildcard/);
  t.throws(() => validateBaseTopic('home/#'), /base topic "home\/#" contains a wildcard/);
  t.throws(() => validateBaseTopic('/home/cam'), /base topic "\/home\/cam" starts or ends with '\/'/);
  t.throws(() => validateBaseTopic('home/cam/'), /starts or ends with '\/'/);
  t.throws(() => validateBaseTopic('$SYS/cam'), /starts with '\$', which is reserved/);
  t.throws(() => validateBaseTopic('home\u0000cam'), /contains a NUL character/);
  // 65535 bytes is the MQTT limit for the whole topic, '/availability' included.
  const max = 'a'.repeat(65535 - '/availability'.length);
  t.equal(validateBaseTopic(max), max);
  t.throws(() => validateBaseTopic(`${max}a`), /is 65523 bytes of UTF-8: expected at most 65522/);
  // Multi-byte characters count in bytes, not characters.
  t.throws(() => validateBaseTopic('é'.repeat(40000)), /is 80000 bytes of UTF-8/);
  t.throws(() => new Topics('a/+'), /contains a wildcard/);
});

t.test('publishing to a wildcard topic is refused', async (t) => {
  t.doesNotThrow(() => assertPublishTopic('a/b/c'));
  t.throws(() => assertPublishTopic('a/+/c'), /MQTT topic 'a\/\+\/c' contains a wildcard/);
  t.throws(() => assertPublishTopic('a/#'), /contains a wildcard/);
  t.throws(() => assertPublishTopic(''), /topic is empty/);
});

t.test('prediction payload: snake_case keys, rounded scores and timings, ISO time', async (t) => {
  const payload = predictionPayload({
    time: new Date(Date.UTC(2026, 10, 29, 20, 22, 24, 123)),
    seq: 42,
    source: 'rpicam 640x480@10',
    model: 'mobilenet_v2_1.0_224_quant',
    classes: [
      { index: 286, label: 'Egyptian cat', score: 0.75390625 },
      { index: 282, label: 'tabby, tabby cat', score: 0.12109375 },
    ],
    timings: { preprocess_ms: 4.12345, inference_ms: 44.8666, postprocess_ms: 0.0449, total_ms: 49.0349 },
    dropped: 3,
  });
  const json = encodePayload('prediction', payload);
  t.equal(
    json,
    '{"time":"2026-11-29T20:22:24.123Z","seq":42,"source":"rpicam 640x480@10","model":"mobilenet_v2_1.0_224_quant",' +
      '"classes":[{"index":286,"label":"Egyptian cat","score":0.7539},{"index":282,"label":"tabby, tabby cat","score":0.1211}],' +
      '"timings":{"preprocess_ms":4.12,"inference_ms":44.87,"postprocess_ms":0.04,"total_ms":49.03},"dropped":3}',
  );
  t.equal(encodePayload('availability', 'online'), 'online');
  t.equal(encodePayload('gpio', '1'), '1');
});
