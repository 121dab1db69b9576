import t from 'tap';
import { commandTopics, type IncomingMessage, parseCommand, RateLimiter } from '../../src/mqtt/commands.js';

const base = 'edge-classifier/dev1';
const msg = (topic: string, payload: string, extra: Partial<IncomingMessage> = {}): IncomingMessage => ({
  topic: `${base}/${topic}`,
  payload: Buffer.from(payload),
  retain: false,
  ...extra,
});

t.test('exact topics, none with a wildcard, all under the base', async (t) => {
  const topics = commandTopics(base, [17]);
  t.ok(topics.includes(`${base}/set`));
  t.ok(topics.includes(`${base}/set/threshold`));
  t.ok(topics.includes(`${base}/set/state/min_frames`));
  t.ok(topics.includes(`${base}/set/gpio/17/min_score`));
  t.ok(topics.includes(`${base}/request/get_config`));
  t.notOk(topics.some((x) => x.includes('+') || x.includes('#')));
  t.ok(topics.every((x) => x.startsWith(`${base}/`)));
  t.notOk(topics.includes(`${base}/set/gpio/18/min_score`), 'only configured pins');
});

t.test('set/<key>: a bare value or a {value} envelope', async (t) => {
  t.same(parseCommand(base, msg('set/threshold', '0.4')), {
    kind: 'set',
    name: 'set/threshold',
    patch: { threshold: 0.4 },
    persist: false,
    reply: { topic: `${base}/response/set/threshold` },
  });
  t.same(parseCommand(base, msg('set/state/min_frames', '{"value":3,"persist":true,"by":"node-red","id":7}')), {
    kind: 'set',
    name: 'set/state/min_frames',
    patch: { state: { min_frames: 3 } },
    persist: true,
    reply: { topic: `${base}/response/set/state/min_frames` },
    id: 7,
    by: 'node-red',
  });
  t.same((parseCommand(base, msg('set/gpio/17/min_score', '0.6')) as { patch: unknown }).patch, { gpio: { '17': { min_score: 0.6 } } });
  t.same((parseCommand(base, msg('set/state/labels', '{"Egyptian cat":0.3}')) as { patch: unknown }).patch, { state: { labels: { 'Egyptian cat': 0.3 } } });
  t.same((parseCommand(base, msg('set/paused', 'true')) as { patch: unknown }).patch, { paused: true });
});

t.test('set: several settings at once; unknown keys refused naming the known ones', async (t) => {
  const ok = parseCommand(base, msg('set', '{"threshold":0.4,"state":{"min_frames":3},"gpio":{"17":{"hold_ms":500}},"id":"a"}'));
  t.same(ok, {
    kind: 'set',
    name: 'set',
    patch: { threshold: 0.4, state: { min_frames: 3 }, gpio: { '17': { hold_ms: 500 } } },
    persist: false,
    reply: { topic: `${base}/response/set` },
    id: 'a',
  });
  t.match(parseCommand(base, msg('set', '{"thresold":0.4,"id":"b"}')), {
    kind: 'refused',
    error: 'thresold: unknown key (expected one of: threshold, top_k, prediction_interval_ms, paused, state, gpio)',
    id: 'b',
  });
  t.match(parseCommand(base, msg('set', '{"state":3}')), { error: 'state: expected a mapping, but received 3' });
  t.match(parseCommand(base, msg('set', '{"persist":true}')), { error: /no setting given/ });
  t.match(parseCommand(base, msg('set', '[1]')), { error: /expected a JSON object of settings/ });
});

t.test('malformed JSON, empty payloads, bad envelopes, unknown commands', async (t) => {
  t.match(parseCommand(base, msg('set/threshold', '0,4')), {
    kind: 'refused',
    error: /set\/threshold: the payload is not JSON .*expected e\.g\. 0\.4 or \{"value":0\.4\}/,
  });
  t.match(parseCommand(base, msg('set/threshold', '')), { error: /the payload is empty/ });
  t.match(parseCommand(base, msg('set/threshold', '{"value":0.4,"persist":"yes"}')), { error: /persist: expected true or false, but received "yes"/ });
  t.match(parseCommand(base, msg('request/reload', '{"force":true}')), { error: /unknown key 'force' \(expected: id, by\)/ });
  t.match(parseCommand(base, msg('request/reboot', '{}')), { error: "unknown command 'reboot': expected one of snapshot, reload, classify_now, get_config" });
  t.match(parseCommand(base, msg('set/state/min_frame', '3')), { error: "unknown setting 'state/min_frame'" });
  t.same(
    parseCommand(base, msg('request/get_config', '')),
    { kind: 'request', name: 'get_config', command: 'get_config', reply: { topic: `${base}/response/get_config` } },
    'empty body = {}',
  );
});

t.test('retained commands are ignored without a reply', async (t) => {
  const r = parseCommand(base, msg('set/threshold', '0.9', { retain: true }));
  t.same(r, {
    kind: 'refused',
    name: 'set/threshold',
    error: `retained message on ${base}/set/threshold ignored: commands must not be retained (clear it with an empty retained message)`,
  });
});

t.test('MQTT 5: response topic and correlation data; sender from user properties', async (t) => {
  const correlationData = Buffer.from('c-1');
  const r = parseCommand(base, msg('request/reload', '{}', { responseTopic: 'app/replies/42', correlationData, userProperties: { client_id: 'ha-7' } }));
  t.same(r, { kind: 'request', name: 'reload', command: 'reload', reply: { topic: 'app/replies/42', correlationData }, by: 'ha-7' });
  const wild = parseCommand(base, msg('request/reload', '{}', { responseTopic: 'app/+/x' }));
  t.same((wild as { reply: unknown }).reply, { topic: `${base}/response/reload` }, 'a wildcard response topic falls back to the default');
});

t.test('rate limiter: burst then the rate', async (t) => {
  const rl = new RateLimiter(2, 3);
  t.same(
    [0, 0, 0, 0].map(() => rl.take(0)),
    [true, true, true, false],
  );
  t.equal(rl.take(400), false, '0.8 tokens after 400 ms');
  t.equal(rl.take(500), true, '1 token after 500 ms at 2/s');
  t.equal(rl.take(10_000), true);
  t.throws(() => new RateLimiter(0, 1), /command rate limit 0\/s/);
});
