import t from 'tap';
import { LatestFrameSlot } from '../../src/camera/latest-frame.js';

t.test('latest frame wins; replaced frames are counted as dropped', async (t) => {
  const slot = new LatestFrameSlot<number>();
  t.equal(slot.take(), undefined);
  slot.offer(1);
  slot.offer(2);
  slot.offer(3);
  t.equal(slot.pending, true);
  t.equal(slot.take(), 3);
  t.equal(slot.pending, false);
  t.equal(slot.take(), undefined);
  t.same(slot.stats(), { offered: 3, dropped: 2, taken: 1 });
});

t.test('next() resolves at once with a waiting frame, or with the next offer', async (t) => {
  const slot = new LatestFrameSlot<string>();
  slot.offer('a');
  t.equal(await slot.next(), 'a');
  const waiting = slot.next();
  slot.offer('b'); // handed straight to the waiting consumer: nothing is dropped
  slot.offer('c'); // stored
  t.equal(await waiting, 'b');
  t.equal(slot.take(), 'c');
  t.same(slot.stats(), { offered: 3, dropped: 0, taken: 3 });
});

t.test('a busy consumer sees only the newest frame', async (t) => {
  const slot = new LatestFrameSlot<number>();
  const seen: number[] = [];
  const consumer = (async () => {
    for (;;) {
      const frame = await slot.next();
      if (frame === null) return;
      seen.push(frame);
      await new Promise((r) => setTimeout(r, 30)); // "classifying"
    }
  })();
  for (let i = 1; i <= 20; i += 1) {
    slot.offer(i);
    await new Promise((r) => setTimeout(r, 5));
  }
  await new Promise((r) => setTimeout(r, 40));
  slot.close();
  await consumer;
  const { offered, dropped, taken } = slot.stats();
  t.equal(offered, 20);
  t.equal(taken, seen.length);
  t.equal(offered, taken + dropped, 'every frame is either taken or dropped');
  t.ok(dropped > 0, `dropped ${dropped} while busy`);
  t.same(
    seen,
    [...seen].sort((a, b) => a - b),
    'frames are taken in order',
  );
  t.equal(seen[seen.length - 1], 20, 'the last frame offered is the last one taken');
});

t.test('close() resolves a waiting next() with null and drops later frames', async (t) => {
  const slot = new LatestFrameSlot<number>();
  const waiting = slot.next();
  slot.close();
  t.equal(await waiting, null);
  slot.offer(1);
  t.equal(await slot.next(), null);
  t.equal(slot.take(), undefined);
  t.same(slot.stats(), { offered: 1, dropped: 1, taken: 0 });
  slot.close();
  t.equal(slot.isClosed, true);
});

t.test('close() drops a waiting frame', async (t) => {
  const slot = new LatestFrameSlot<number>();
  slot.offer(7);
  slot.close();
  t.equal(await slot.next(), null);
  t.same(slot.stats(), { offered: 1, dropped: 1, taken: 0 });
});

t.test('only one consumer may wait', async (t) => {
  const slot = new LatestFrameSlot<number>();
  const first = slot.next();
  await t.rejects(slot.next(), /another next\(\) is already waiting/);
  slot.offer(5);
  t.equal(await first, 5);
});
