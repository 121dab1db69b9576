import t from 'tap';
import { FrameSelector } from '../../src/camera/capture-mode.js';

/** Which of the frames arriving every `periodMs` from 0 to `untilMs` are taken. */
function taken(sel: FrameSelector, periodMs: number, untilMs: number, at: (now: number) => void = () => {}): number[] {
  const out: number[] = [];
  for (let now = 0; now <= untilMs; now += periodMs) {
    at(now);
    if (sel.offer(now)) out.push(now);
  }
  return out;
}

t.test('continuous takes every frame', async (t) => {
  t.same(taken(new FrameSelector({ kind: 'continuous' }), 100, 500), [0, 100, 200, 300, 400, 500]);
});

t.test('interval takes one frame per interval, the first at once', async (t) => {
  t.same(taken(new FrameSelector({ kind: 'interval', everyMs: 1000 }), 100, 3500), [0, 1000, 2000, 3000]);
  // A 3 fps source with a 1 s interval: the first frame at or after each due time (1000, 2000, ...).
  t.same(taken(new FrameSelector({ kind: 'interval', everyMs: 1000 }), 333, 3000), [0, 1332, 2331]);
  t.equal(taken(new FrameSelector({ kind: 'interval', everyMs: 1000 }), 333, 100_000).length, 100, 'one per second on average');
  // The source was away for 10 s: one frame when it is back, not ten.
  const gap = new FrameSelector({ kind: 'interval', everyMs: 1000 });
  t.same(
    [0, 500, 11000, 11100, 11500, 12000].filter((ms) => gap.offer(ms)),
    [0, 11000, 12000],
  );
  const sel = new FrameSelector({ kind: 'interval', everyMs: 5000 });
  sel.offer(100);
  t.equal(sel.untilDue(1100), 4000);
  t.notOk(sel.trigger(), 'triggers do nothing in interval mode');
});

t.test('trigger takes a burst of K frames after each trigger, nothing else', async (t) => {
  const sel = new FrameSelector({ kind: 'trigger', burst: 3 });
  const got = taken(sel, 100, 2000, (now) => {
    if (now === 500 || now === 1500 || now === 1600) sel.trigger();
  });
  // 500: frames 500, 600, 700; 1500 then again at 1600: a fresh burst of 3 from 1600.
  t.same(got, [500, 600, 700, 1500, 1600, 1700, 1800]);
  t.equal(sel.triggerCount, 3);
  t.equal(sel.burstRemaining, 0);
});
