/** The ground layer: the start/stop helper, the log throttle, the two error phrasings, URL redaction. */
import t from 'tap';
import { describeValue, invalidParameterError, unreadableFileError } from '../../src/core/errors.js';
import { CancelledError, IntervalTimer, type Lifecycle, Parts } from '../../src/core/lifecycle.js';
import { LogThrottle, silentLogger } from '../../src/core/log.js';
import { redactUrl } from '../../src/core/redact.js';
import { capturingLogger } from '../helpers/recording.js';

/** A part that records its calls in `journal`; `failStart`/`failStop` make those reject. */
function part(name: string, journal: string[], options: { failStart?: boolean; failStop?: boolean; onStart?: () => void } = {}): Lifecycle {
  return {
    name,
    async start() {
      journal.push(`start ${name}`);
      options.onStart?.();
      if (options.failStart) throw new Error(`${name} cannot start`);
    },
    async stop() {
      journal.push(`stop ${name}`);
      if (options.failStop) throw new Error(`${name} cannot stop`);
    },
  };
}

t.test('Parts: start in order, stop in reverse, each stop isolated, the first failure thrown', async (t) => {
  const journal: string[] = [];
  const { log, lines } = capturingLogger('debug');
  const parts = new Parts(log);
  const signal = new AbortController().signal;
  for (const p of [part('a', journal), part('b', journal, { failStop: true }), part('c', journal, { failStop: true }), part('d', journal)])
    await parts.start(p, signal);
  t.same(parts.names(), ['a', 'b', 'c', 'd']);
  await t.rejects(parts.stop(), { message: 'c cannot stop' }, 'the first failure in stop order');
  t.same(journal, ['start a', 'start b', 'start c', 'start d', 'stop d', 'stop c', 'stop b', 'stop a'], 'every part stopped');
  t.equal(lines.filter((l) => l.level === 50).length, 2, 'both failures logged');
  await parts.stop();
  t.equal(journal.length, 8, 'a part is stopped once');
});

t.test('Parts: a part whose start fails is stopped too; an aborted signal stops the start between parts', async (t) => {
  const journal: string[] = [];
  const parts = new Parts(silentLogger());
  const signal = new AbortController().signal;
  await parts.start(part('a', journal), signal);
  await t.rejects(parts.start(part('b', journal, { failStart: true }), signal), { message: 'b cannot start' });
  await parts.stop();
  t.same(journal, ['start a', 'start b', 'stop b', 'stop a']);

  const cancel = new AbortController();
  const cancelled = new Parts(silentLogger());
  const steps: string[] = [];
  await cancelled.start(part('x', steps), cancel.signal);
  await t.rejects(
    cancelled.start(part('y', steps, { onStart: () => cancel.abort(new CancelledError('stopped during start-up')) }), cancel.signal),
    CancelledError,
    'the start under way finishes, then the cancellation is thrown',
  );
  await t.rejects(cancelled.start(part('z', steps), cancel.signal), CancelledError);
  await cancelled.stop();
  t.same(steps, ['start x', 'start y', 'stop y', 'stop x'], 'z never started');
});

t.test('IntervalTimer: ticks between start and stop, survives a throwing tick', async (t) => {
  let ticks = 0;
  const { log, lines } = capturingLogger();
  const timer = new IntervalTimer(
    'test timer',
    10,
    () => {
      ticks += 1;
      if (ticks === 1) throw new Error('first tick fails');
    },
    log,
  );
  await timer.start();
  await new Promise((r) => setTimeout(r, 80));
  await timer.stop();
  const at = ticks;
  t.ok(at >= 3, `${at} ticks`);
  t.ok(lines.some((l) => l.msg === 'test timer failed: first tick fails'));
  await new Promise((r) => setTimeout(r, 40));
  t.equal(ticks, at, 'no tick after stop');
  await timer.stop();
});

t.test('LogThrottle: once per key, or at most every N ms; reset forgets', async (t) => {
  const once = new LogThrottle();
  t.same([once.allow('a', 0), once.allow('a', 1e9), once.allow('b', 1)], [true, false, true]);
  t.equal(once.seen('a'), true);
  once.reset('a');
  t.equal(once.allow('a', 2), true, 'again after reset');
  const every = new LogThrottle(10_000);
  t.same([every.allow('', 0), every.allow('', 9_999), every.allow('', 10_000), every.allow('', 10_001)], [true, false, true, false]);
  every.reset();
  t.equal(every.seen(), false);
});

t.test('error helpers: one phrasing for a bad option, one for an unreadable file', async (t) => {
  t.equal(
    invalidParameterError('fps meter windowMs', 'a positive number of ms', 0).message,
    'fps meter windowMs: expected a positive number of ms, but received 0',
  );
  t.type(invalidParameterError('x', 'y', 1), RangeError);
  t.same(['tpu', 3, null, undefined, [1, 2], {}, Number.NaN, 'x'.repeat(70)].map(describeValue), [
    '"tpu"',
    '3',
    'null',
    'nothing',
    'a list of 2',
    'a mapping',
    'NaN',
    `"${'x'.repeat(56)}...`,
  ]);
  const enoent = Object.assign(new Error('ENOENT: no such file or directory'), { code: 'ENOENT' });
  t.equal(unreadableFileError('the model file', '/m.tflite', enoent).message, 'cannot read the model file /m.tflite: no such file');
  const eacces = Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
  t.equal(
    unreadableFileError('the labels file', 'l.txt', eacces).message,
    'cannot read the labels file l.txt: permission denied: make it readable by the user the daemon runs as',
  );
  t.equal(unreadableFileError('the image', 'x', new Error('odd'), 'try another').message, 'cannot read the image x: odd: try another');
  t.equal(unreadableFileError('the image', 'x', enoent).cause, enoent, 'the system error is the cause');
});

t.test('redactUrl leaves URLs without a password and non-URLs alone', async (t) => {
  t.equal(redactUrl('mqtt://u:pw@broker:1883'), 'mqtt://u:***@broker:1883');
  t.equal(redactUrl('mqtt://broker:1883/'), 'mqtt://broker:1883/');
  t.equal(redactUrl('/dev/video0'), '/dev/video0');
});
