import t from 'tap';
import { StateTracker } from '../../src/mqtt/state.js';

const at = (s: number): Date => new Date(Date.UTC(2026, 10, 29, 20, 0, s));
const cat = (score: number) => ({ index: 286, label: 'Egyptian cat', score });
const dog = (score: number) => ({ index: 208, label: 'Labrador retriever', score });

t.test('a new state only when the top label changes, with since', async (t) => {
  const tracker = new StateTracker();
  t.same(tracker.update([cat(0.754), dog(0.1)], at(0)), {
    label: 'Egyptian cat',
    index: 286,
    score: 0.754,
    since: '2026-11-29T20:00:00.000Z',
    time: '2026-11-29T20:00:00.000Z',
  });
  t.equal(tracker.update([cat(0.8)], at(1)), null, 'same label, other score: no message');
  t.equal(tracker.update([cat(0.6), dog(0.3)], at(2)), null);
  const changed = tracker.update([dog(0.51234), cat(0.4)], at(3));
  t.same(changed, { label: 'Labrador retriever', index: 208, score: 0.5123, since: '2026-11-29T20:00:03.000Z', time: '2026-11-29T20:00:03.000Z' });
  t.same(tracker.update([], at(4)), { label: null, index: null, score: null, since: '2026-11-29T20:00:04.000Z', time: '2026-11-29T20:00:04.000Z' });
  t.equal(tracker.update([], at(5)), null, 'still nothing: no message');
  t.equal(tracker.update([cat(0.9)], at(6))?.since, '2026-11-29T20:00:06.000Z', 'a label again after nothing: since is the new change');
});
