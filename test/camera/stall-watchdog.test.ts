import t from 'tap';
import { StallWatchdog, stallTimeoutMs } from '../../src/camera/stall-watchdog.js';

t.test('timeout: max(5 frame periods, 5 s) unless configured', async (t) => {
  t.equal(stallTimeoutMs(10), 5000);
  t.equal(stallTimeoutMs(30), 5000);
  t.equal(stallTimeoutMs(0.5), 10000);
  t.equal(stallTimeoutMs(0.2), 25000);
  t.equal(stallTimeoutMs(10, 1500), 1500);
  t.throws(() => stallTimeoutMs(10, 0), /positive number of ms, got 0/);
});

t.test('fires once after the timeout of silence, not while frames flow', async (t) => {
  const stalls: number[] = [];
  const dog = new StallWatchdog(150, (ms) => stalls.push(ms));
  dog.arm();
  // Frames every 40 ms for 400 ms: no stall.
  const feeder = setInterval(() => dog.frame(), 40);
  await new Promise((r) => setTimeout(r, 400));
  clearInterval(feeder);
  t.same(stalls, [], 'no stall while frames arrive');
  await new Promise((r) => setTimeout(r, 300));
  t.equal(stalls.length, 1, 'one stall after the frames stop');
  t.ok(stalls[0]! >= 150, `silent for ${stalls[0]} ms`);
  t.notOk(dog.isArmed, 'disarmed after firing');
  await new Promise((r) => setTimeout(r, 200));
  t.equal(stalls.length, 1, 'not again until armed');
  dog.arm();
  dog.disarm();
  await new Promise((r) => setTimeout(r, 200));
  t.equal(stalls.length, 1, 'disarm stops it');
});
