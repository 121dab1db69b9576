import t from 'tap';
import { Debouncer, resolveSmoothing } from '../../src/core/debounce.js';

/** Feeds votes one per 100 ms and returns the value after each. */
const run = <T>(d: Debouncer<T>, votes: T[], startMs = 0): T[] => votes.map((v, i) => d.vote(v, startMs + i * 100));

t.test('defaults: 1 of 1, every vote is the value (the behaviour before smoothing)', async (t) => {
  const d = new Debouncer<string | null>(null);
  t.same(run(d, ['a', 'b', null, 'b']), ['a', 'b', null, 'b']);
});

t.test('3 of 3: a value must win three frames in a row; alternation never changes it', async (t) => {
  const d = new Debouncer<string | null>(null, { minFrames: 3 });
  t.same(run(d, ['a', 'a', 'a']), [null, null, 'a']);
  t.equal(d.decided, true);
  const alternating = Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? 'b' : 'a'));
  t.same(run(d, alternating, 1000), Array(20).fill('a'), 'a b a b … keeps a');
  t.same(run(d, ['b', 'b', 'b'], 5000), ['a', 'a', 'b']);
});

t.test('3 of 5: the current value holds while it has 3 of the last 5', async (t) => {
  const d = new Debouncer<string>('none', { minFrames: 3, windowFrames: 5 });
  t.same(run(d, ['a', 'b', 'a', 'b', 'a']), ['none', 'none', 'none', 'none', 'a']);
  // Window b a b a b: a has 2, b has 3 → b takes over (M > N alternation can switch: use min dwell against it).
  t.equal(d.vote('b', 600), 'b');
});

t.test('min dwell: no change sooner than minDwellMs after the last one', async (t) => {
  const d = new Debouncer<boolean>(false, { minDwellMs: 1000 });
  t.equal(d.vote(true, 0), true, 'the first change is not delayed by the dwell');
  t.equal(d.vote(false, 500), true, 'held: 500 ms < 1000 ms');
  t.equal(d.vote(false, 999), true);
  t.equal(d.vote(false, 1000), false, 'released after 1000 ms');
  t.equal(d.lastChangeMs, 1000);
});

t.test('confirming the initial value starts no dwell', async (t) => {
  const d = new Debouncer<boolean>(false, { minDwellMs: 1000 });
  t.equal(d.vote(false, 0), false);
  t.equal(d.vote(true, 10), true, 'first real change at once');
});

t.test('reset forgets votes and returns to the initial value', async (t) => {
  const d = new Debouncer<string | null>(null, { minFrames: 2 });
  run(d, ['a', 'a']);
  t.equal(d.value, 'a');
  d.reset();
  t.equal(d.value, null);
  t.equal(d.decided, false);
  t.equal(d.vote('a', 0), null, 'needs two votes again');
});

t.test('options are checked', async (t) => {
  t.throws(() => resolveSmoothing({ minFrames: 0 }), /smoothing minFrames 0: expected a whole number ≥ 1/);
  t.throws(() => resolveSmoothing({ minFrames: 3, windowFrames: 2 }), /smoothing windowFrames 2: expected a whole number from minFrames \(3\) to 1000/);
  t.throws(() => resolveSmoothing({ minDwellMs: -1 }), /smoothing minDwellMs -1/);
  t.same(resolveSmoothing({ minFrames: 4 }), { minFrames: 4, windowFrames: 4, minDwellMs: 0 });
});
