import t from 'tap';
import { LatencyWindow } from '../../src/stats/latency.js';

t.test('nearest-rank percentiles over the latest samples', async (t) => {
  const w = new LatencyWindow(10);
  t.same(w.percentiles([50, 95]), [null, null], 'empty');
  for (const ms of [7, 3, 9, 1, 5, 10, 2, 8, 4, 6]) w.add(ms);
  t.same(w.percentiles([50, 95, 100, 0]), [5, 10, 10, 1]);
  // Ten more samples of 100 ms push all the old ones out of the window.
  for (let i = 0; i < 10; i++) w.add(100);
  t.same(w.percentiles([50]), [100]);
  t.equal(w.length, 10);
  w.add(Number.NaN);
  t.equal(w.length, 10, 'NaN ignored');
  w.clear();
  t.equal(w.length, 0);
  t.throws(() => new LatencyWindow(0), /latency window size 0/);
  t.throws(() => w.percentiles([101]), /percentile 101/);
});

t.test('p95 of 1..100 is 95, p50 is 50', async (t) => {
  const w = new LatencyWindow(100);
  for (let i = 100; i >= 1; i--) w.add(i);
  t.same(w.percentiles([50, 95]), [50, 95]);
});
