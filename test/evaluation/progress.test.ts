import t from 'tap';
import { ProgressBar } from '../../src/evaluation/progress.js';

const stream = (isTTY: boolean) => {
  const chunks: string[] = [];
  return { chunks, isTTY, columns: 80, write: (s: string) => chunks.push(s) > 0 };
};

t.test('draws in place on a terminal and clears at the end', async (t) => {
  const s = stream(true);
  let now = 0;
  const bar = new ProgressBar(s, 'eval', 80, () => now);
  bar.update(1, 4, 'a.jpg');
  now += 10;
  bar.update(2, 4, 'b.jpg');
  t.equal(s.chunks.length, 1, 'redraws at most every 80 ms');
  now += 100;
  bar.update(3, 4, 'c.jpg');
  bar.update(4, 4, 'd.jpg');
  t.equal(s.chunks.length, 3, 'the last update is always drawn');
  t.match(s.chunks[0], /^\reval \[█+░+\] 1\/4 {2}25 % {2}a\.jpg/);
  t.match(s.chunks[2], /\[█+\] 4\/4 100 % {2}d\.jpg/);
  for (const c of s.chunks) t.ok(c.length <= 80, 'fits the terminal width');
  bar.done();
  t.match(s.chunks[3], /^\r +\r$/);
});

t.test('silent when the stream is not a terminal', async (t) => {
  const s = stream(false);
  const bar = new ProgressBar(s, 'eval');
  bar.update(1, 2, 'a.jpg');
  bar.done();
  t.same(s.chunks, []);
});
