import t from 'tap';
import { FpsMeter } from '../../src/camera/fps-meter.js';

t.test('a steady 10 Hz stream reads 10 fps', async (t) => {
  const meter = new FpsMeter({ windowMs: 2000 });
  for (let i = 0; i < 50; i += 1) meter.mark(1000 + i * 100);
  // Last arrival at 5900 ms; read shortly after it.
  t.equal(meter.fps(5950), 10);
  t.equal(meter.fps(5900), 10);
});

t.test('irregular arrivals average over the window', async (t) => {
  const meter = new FpsMeter({ windowMs: 5000 });
  // 5 frames over 1 s, then 5 more over the next 1 s: 9 intervals in 2 s.
  for (const at of [0, 250, 500, 750, 1000, 1200, 1400, 1600, 1800, 2000]) meter.mark(at);
  t.equal(meter.fps(2000), 4.5);
});

t.test('the reading decays when frames stop and is 0 once stale', async (t) => {
  const meter = new FpsMeter({ windowMs: 2000 });
  for (let i = 0; i <= 20; i += 1) meter.mark(i * 100); // 10 Hz until 2000 ms
  t.equal(meter.fps(2000), 10);
  const later = meter.fps(3000); // 1 s without frames: 11 arrivals left in [1000, 3000]
  t.ok(later < 10 && later > 0, `decays: ${later}`);
  t.equal(later, (11 / 2000) * 1000);
  t.equal(meter.fps(4100), 0, 'no arrival within the last 2 s');
});

t.test('fewer than two arrivals read 0; reset forgets', async (t) => {
  const meter = new FpsMeter();
  t.equal(meter.fps(0), 0);
  meter.mark(10);
  t.equal(meter.fps(20), 0);
  meter.mark(60);
  t.equal(meter.fps(60), 20);
  meter.reset();
  t.equal(meter.fps(60), 0);
});

t.test('a rate above maxSamples per window is still measured', async (t) => {
  const meter = new FpsMeter({ windowMs: 3000, maxSamples: 16 });
  for (let i = 0; i < 1000; i += 1) meter.mark(i * 5); // 200 Hz
  t.equal(meter.fps(4995), 200);
});

t.test('bad settings are refused with the value', async (t) => {
  t.throws(() => new FpsMeter({ windowMs: 0 }), { message: 'fps meter windowMs: expected a positive number of ms, but received 0' });
  t.throws(() => new FpsMeter({ maxSamples: 1 }), { message: 'fps meter maxSamples: expected an integer of at least 2, but received 1' });
});

t.test('default clock: real arrivals at ~50 Hz', async (t) => {
  const meter = new FpsMeter();
  for (let i = 0; i < 15; i += 1) {
    meter.mark();
    await new Promise((r) => setTimeout(r, 20));
  }
  const fps = meter.fps();
  t.ok(fps > 25 && fps <= 52, `measured ${fps.toFixed(1)} fps`);
});
