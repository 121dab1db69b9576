import t from 'tap';
import { silentLogger } from '../../src/core/log.js';
import { GpioActuator } from '../../src/gpio/actuator.js';
import { type GpioBackend, type GpioOutput, type Level, VirtualBackend } from '../../src/gpio/backends.js';
import { rule } from '../helpers/gpio.js';

const log = silentLogger();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const cls = (label: string, score: number) => [{ index: 1, label, score }];

function setup(t: { teardown(fn: () => unknown): void }, flags: string[]) {
  const backend = new VirtualBackend({ log });
  const changes: Array<[number, Level]> = [];
  const actuator = new GpioActuator({ rules: flags.map(rule), backend, log, onChange: (pin, level) => changes.push([pin, level]) });
  t.teardown(() => actuator.stop().catch(() => {}));
  return { backend, changes, actuator };
}

t.test('outputs open at their safe level and follow the rules, writing only on change', async (t) => {
  const { backend, changes, actuator } = setup(t, ['17=Egyptian cat|tabby, tabby cat@0.6', '27=goldfish, Carassius auratus:active-low']);
  actuator.update(cls('Egyptian cat', 0.9));
  t.equal(backend.level(17), undefined, 'nothing happens before start()');
  await actuator.start();
  t.equal(backend.level(17), 0, 'active-high safe level: low');
  t.equal(backend.level(27), 1, 'active-low safe level: high');
  t.same(
    changes,
    [
      [17, 0],
      [27, 0],
    ],
    'initial logical 0 reported for every pin',
  );
  t.same(actuator.levels(), { 17: 0, 27: 0 });
  changes.length = 0;
  const writes = backend.writes;

  actuator.update(cls('egyptian cat', 0.8));
  t.equal(backend.level(17), 1);
  actuator.update(cls('Egyptian cat', 0.85));
  actuator.update(cls('tabby, tabby cat', 0.7));
  t.equal(backend.writes - writes, 1, 'one write for three matching frames');
  actuator.update(cls('Egyptian cat', 0.5));
  t.equal(backend.level(17), 0, 'below minScore: off');

  actuator.update(cls('goldfish, Carassius auratus', 0.55));
  t.equal(backend.level(27), 0, 'active-low on = electrically low');
  t.same(actuator.levels(), { 17: 0, 27: 1 }, 'levels() are logical');
  actuator.update([]);
  t.equal(backend.level(27), 1);
  t.same(changes, [
    [17, 1],
    [17, 0],
    [27, 1],
    [27, 0],
  ]);
  t.equal(backend.writes - writes, 4);
});

t.test('holdMs keeps an output on after the last match, then a timer turns it off', async (t) => {
  const { backend, changes, actuator } = setup(t, ['5=cat:hold=200']);
  await actuator.start();
  changes.length = 0;
  actuator.update(cls('cat', 0.9), 1000);
  t.equal(backend.level(5), 1);
  actuator.update([], 1050);
  actuator.update([], 1150);
  t.equal(backend.level(5), 1, 'still on within 200 ms of the last match');
  actuator.update(cls('cat', 0.9), 1180);
  actuator.update([], 1200);
  actuator.update([], 1379);
  t.equal(backend.level(5), 1, 'a new match restarts the hold');
  actuator.update([], 1380);
  t.equal(backend.level(5), 0, 'off at the first frame 200 ms after the last match');
  t.same(changes, [
    [5, 1],
    [5, 0],
  ]);

  // No more frames: the timer turns it off on time.
  changes.length = 0;
  const started = performance.now();
  actuator.update(cls('cat', 0.9), started);
  actuator.update([], started);
  await sleep(120);
  t.equal(backend.level(5), 1, 'held at 120 ms');
  await sleep(200);
  t.equal(backend.level(5), 0, 'off by the timer after 200 ms without frames');
  t.same(changes, [
    [5, 1],
    [5, 0],
  ]);
});

t.test('stop(): every output to its safe level, released, once', async (t) => {
  const { backend, changes, actuator } = setup(t, ['17=cat', '22=cat:active-low:hold=10000', '4=dog']);
  await actuator.start();
  actuator.update(cls('cat', 0.9));
  actuator.update([]);
  t.same(actuator.levels(), { 17: 0, 22: 1, 4: 0 }, 'pin 22 is held');
  changes.length = 0;
  const first = actuator.stop();
  const second = actuator.stop();
  t.equal(first, second, 'the same promise');
  await first;
  await actuator.stop();
  t.equal(backend.level(17), undefined, 'released');
  t.equal(backend.level(22), undefined, 'released');
  t.same(changes, [[22, 0]], 'only the pin that was on reports 0');
  t.same(actuator.levels(), { 17: 0, 22: 0, 4: 0 });
  actuator.update(cls('dog', 0.9));
  t.same(changes, [[22, 0]], 'no update after stop');
});

/** A backend that records electrical writes and can fail on a given pin. */
class RecordingBackend implements GpioBackend {
  readonly name = 'recording';
  readonly log: string[] = [];
  constructor(
    private readonly failOpen?: number,
    private readonly failWrite?: number,
  ) {}
  open(pin: number, initialLevel: Level): GpioOutput {
    if (pin === this.failOpen) throw new Error(`cannot open GPIO BCM ${pin}: EBUSY`);
    this.log.push(`open ${pin} ${initialLevel}`);
    return {
      pin,
      write: (level) => {
        if (pin === this.failWrite) throw new Error('EIO');
        this.log.push(`write ${pin} ${level}`);
      },
      release: () => this.log.push(`release ${pin}`),
    };
  }
}

t.test('a start that fails half-way releases what it opened; stop is still safe', async (t) => {
  const backend = new RecordingBackend(27);
  const actuator = new GpioActuator({ rules: ['17=cat:active-low', '27=dog', '4=bird'].map(rule), backend, log });
  await t.rejects(actuator.start(), { message: 'cannot open GPIO BCM 27: EBUSY' });
  t.same(backend.log, ['open 17 1', 'release 17']);
  await actuator.stop();
  t.same(backend.log, ['open 17 1', 'release 17'], 'nothing left to do');
});

t.test('a pin that fails to write does not stop the others from reaching their safe level', async (t) => {
  const backend = new RecordingBackend(undefined, 4);
  const actuator = new GpioActuator({ rules: ['17=cat', '4=cat'].map(rule), backend, log });
  await actuator.start();
  actuator.update(cls('cat', 0.9));
  t.same(actuator.levels(), { 17: 1, 4: 0 }, 'the failed write leaves the logical level unchanged');
  await t.rejects(actuator.stop(), { message: 'GPIO stop: BCM 4: EIO' });
  t.same(backend.log, ['open 17 0', 'open 4 0', 'write 17 1', 'write 17 0', 'release 17', 'release 4']);
});

t.test('a pin used twice is refused when it is opened (the configuration refuses it before: test/config/load.test.ts)', async (t) => {
  const actuator = new GpioActuator({ rules: ['17=cat', '17=dog'].map(rule), backend: new VirtualBackend({ log }), log });
  await t.rejects(actuator.start(), /virtual GPIO BCM 17 is already open: expected one output per pin/);
  await actuator.stop();
});

t.test('hysteresis below inference.threshold and beyond top_k: an output that is on keeps matching in the wider list', async (t) => {
  const backend = new VirtualBackend({ log });
  const changes: Array<[number, Level]> = [];
  // Rule min_score 0.5, inference.threshold 0.6 (reported cut), hysteresis 0.15: on at 0.6, off below 0.45.
  const actuator = new GpioActuator({
    rules: [rule('17=Egyptian cat@0.5')],
    backend,
    log,
    onChange: (pin, level) => changes.push([pin, level]),
    smoothing: { hysteresis: 0.15, scoreFloor: 0.6 },
  });
  t.teardown(() => actuator.stop().catch(() => {}));
  await actuator.start();
  const cat = (score: number) => ({ index: 286, label: 'Egyptian cat', score });
  const dog = (score: number) => ({ index: 208, label: 'Labrador retriever', score });
  // Each frame as the daemon hands it over: reported (top_k 1, ≥ 0.6), then every class the classifier reported.
  const frames = [
    [[cat(0.65)], [cat(0.65)]],
    [[], [cat(0.5)]],
    [[dog(0.7)], [dog(0.7), cat(0.46)]],
    [[], [cat(0.44)]],
  ] as const;
  for (const [i, [reported, all]] of frames.entries()) actuator.update(reported, i * 100, all);
  // On at 0.65; held at 0.5 (not reported) and at 0.46 (ranked second); off at 0.44.
  t.same(changes, [
    [17, 0],
    [17, 1],
    [17, 0],
  ]);
});
