import t from 'tap';
import { silentLogger } from '../../src/core/log.js';
import { lockoutDebouncer, VirtualInputBackend } from '../../src/gpio/input.js';

t.test('lockout debounce: the first edge counts at once, bounces within the window do not', async (t) => {
  const accept = lockoutDebouncer(50);
  t.same(
    [0, 10, 49, 50, 51, 120].map((ms) => accept(ms)),
    [true, false, false, true, false, true],
  );
});

t.test('virtual input: edges, debounce and idle level as on a Pi', async (t) => {
  let now = 0;
  const backend = new VirtualInputBackend({ log: silentLogger(), now: () => now });
  const rising: number[] = [];
  const input = backend.openInput(17, { edge: 'rising', debounceMs: 100, pull: 'down' }, (level) => rising.push(now + level * 0));
  t.equal(input.read(), 0, 'pull-down idles low');
  // A button press with contact bounce: 0→1→0→1 within 20 ms, released at 300 ms, pressed again at 500 ms.
  for (const [ms, level] of [
    [1000, 1],
    [1005, 0],
    [1012, 1],
    [1300, 0],
    [1500, 1],
  ] as const) {
    now = ms;
    backend.set(17, level);
  }
  t.same(rising, [1000, 1500], 'one trigger per press');
  t.throws(() => backend.openInput(17, { edge: 'both', debounceMs: 0, pull: 'none' }, () => {}), /BCM 17 is already open/);
  const falling: number[] = [];
  const pir = backend.openInput(4, { edge: 'falling', debounceMs: 0, pull: 'up' }, () => falling.push(now));
  t.equal(pir.read(), 1, 'pull-up idles high');
  now = 2000;
  backend.set(4, 0);
  t.same(falling, [2000], 'active-low sensor fires on the falling edge');
  input.release();
  t.throws(() => backend.set(17, 1), /not open as an input/);
});
