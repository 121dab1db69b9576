import t from 'tap';
import { payloadErrors } from '../helpers/schemas.js';

// The schemas themselves must accept documented examples and refuse what the contract excludes;
// the daemon's real payloads are validated in the MQTT and end-to-end tests.
t.test('state: detected needs a label, none/unknown have none', async (t) => {
  const base = { since: '2026-12-01T08:00:00.000Z', time: '2026-12-01T08:00:00.000Z' };
  t.equal(
    payloadErrors('state', {
      ...base,
      status: 'detected',
      label: 'Egyptian cat',
      index: 286,
      score: 0.75,
      classes: [{ index: 286, label: 'Egyptian cat', score: 0.75 }],
    }),
    '',
  );
  t.equal(payloadErrors('state', { ...base, status: 'unknown', label: null, index: null, score: null, classes: [] }), '');
  t.match(payloadErrors('state', { ...base, status: 'detected', label: null, index: null, score: null, classes: [] }), /label must be string/);
  t.match(
    payloadErrors('state', { ...base, status: 'none', label: null, index: null, score: null, classes: [], extra: 1 }),
    /must NOT have additional properties/,
  );
  t.match(
    payloadErrors('state', { ...base, status: 'none', label: null, index: null, score: null, classes: [], time: 'yesterday' }),
    /must match format "date-time"/,
  );
});

t.test('text payloads and commands', async (t) => {
  t.equal(payloadErrors('availability', 'online'), '');
  t.match(payloadErrors('availability', 'Online'), /must be equal to one of the allowed values/);
  t.equal(payloadErrors('gpio', '1'), '');
  t.equal(payloadErrors('set', { threshold: 0.4, state: { min_frames: 3 }, gpio: { '17': { min_score: 0.6 } }, persist: true }), '');
  t.match(payloadErrors('set', { gpio: { '28': { min_score: 0.6 } } }), /property name must be valid/);
  t.match(payloadErrors('set', { thresold: 0.4 }), /must NOT have additional properties/);
  t.equal(payloadErrors('request', {}), '');
  t.equal(payloadErrors('response', { command: 'reload', ok: true, result: { reloaded: true }, time: '2026-12-01T08:00:00.000Z' }), '');
  t.match(payloadErrors('response', { command: 'reload', ok: false, time: '2026-12-01T08:00:00.000Z' }), /must have required property 'error'/);
});
