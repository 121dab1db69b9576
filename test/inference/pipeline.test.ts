import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import t from 'tap';
import { FramePipeline, type PipelineStages } from '../../src/inference/pipeline.js';
import { InferenceSession, type Slot } from '../../src/inference/session.js';
import { image, model } from '../helpers/assets.js';

/** Stand-in stages whose prepare and invoke finish only when the test says so. */
function controlled(slots: number) {
  const events: string[] = [];
  const free = Array.from({ length: slots }, (_, i) => i);
  const pendingPrepare = new Map<number, () => void>();
  const pendingInvoke = new Map<number, (ms: number) => void>();
  const current = new Map<number, number>(); // slot → frame
  const stages: PipelineStages<number, number, string> = {
    tryAcquire: () => free.shift() ?? null,
    release: (s) => void free.push(s),
    prepare: (frame, slot) => {
      events.push(`prepare ${frame}`);
      current.set(slot, frame);
      return new Promise<void>((resolve) => pendingPrepare.set(frame, resolve));
    },
    invoke: (slot) => {
      const frame = current.get(slot)!;
      events.push(`invoke ${frame}`);
      return new Promise<number>((resolve) => pendingInvoke.set(frame, resolve));
    },
    finish: (frame, _slot, ms) => `frame ${frame} in ${ms} ms`,
  };
  const tick = () => new Promise((r) => setImmediate(r));
  return {
    stages,
    events,
    async prepared(frame: number) {
      pendingPrepare.get(frame)!();
      await tick();
    },
    async inferred(frame: number) {
      pendingInvoke.get(frame)!(5);
      await tick();
    },
  };
}

t.test('frame N+1 is prepared while N is in inference; latest frame wins; nothing queues', async (t) => {
  const c = controlled(2);
  const results: string[] = [];
  const p = new FramePipeline(
    c.stages,
    (_f, r) => results.push(r),
    (f, e) => t.fail(`frame ${f}: ${e}`),
  );
  p.offer(1);
  await c.prepared(1);
  t.same(c.events, ['prepare 1', 'invoke 1']);
  p.offer(2);
  await new Promise((r) => setImmediate(r));
  t.same(c.events.slice(2), ['prepare 2'], 'frame 2 is prepared while frame 1 is in inference');
  await c.prepared(2);
  t.same(c.events.slice(3), ['invoke 2'], 'and handed to the engine before frame 1 ends');
  p.offer(3);
  p.offer(4);
  p.offer(5);
  t.equal(p.stats().dropped, 2, 'frames 3 and 4 are replaced by 5 while both slots are busy');
  t.equal(p.stats().inFlight, 2);
  await c.inferred(1);
  t.same(results, ['frame 1 in 5 ms']);
  t.same(c.events.slice(4), ['prepare 5'], 'the latest frame takes the freed slot');
  await c.prepared(5);
  await c.inferred(2);
  await c.inferred(5);
  t.same(results, ['frame 1 in 5 ms', 'frame 2 in 5 ms', 'frame 5 in 5 ms']);
  const s = p.stats();
  t.same([s.offered, s.completed, s.dropped, s.failed, s.inFlight, s.maxInFlight], [5, 3, 2, 0, 0, 2]);
  await p.close();
});

t.test('a frame that fails to prepare is reported and its slot freed', async (t) => {
  const errors: string[] = [];
  const free = [0, 1];
  const p = new FramePipeline<string, number, string>(
    {
      tryAcquire: () => free.shift() ?? null,
      release: (s) => void free.push(s),
      prepare: async (f) => {
        if (f === 'bad') throw new Error('corrupt JPEG');
      },
      invoke: async () => 1,
      finish: (f) => f,
    },
    () => {},
    (f, e) => errors.push(`${f}: ${(e as Error).message}`),
  );
  p.offer('bad');
  await p.idle();
  p.offer('good');
  await p.idle();
  t.same(errors, ['bad: corrupt JPEG']);
  t.same(p.stats().failed, 1);
  t.same(p.stats().completed, 1);
  t.same(free.sort(), [0, 1], 'both slots back');
});

t.test('real frames through a real session: every frame classified or counted as dropped', async (t) => {
  const session = await InferenceSession.open({
    modelBytes: readFileSync(model('mobilenet_v1_0.25_128_quant.tflite')),
    model: 'v1.tflite',
    engine: 'tflite',
    threads: 1,
  });
  t.teardown(() => session.close());
  const jpeg = readFileSync(image('cat_720p.jpg'));
  const tops: number[] = [];
  const p = new FramePipeline<Buffer, Slot, number>(
    {
      tryAcquire: () => session.tryAcquire(),
      release: (s) => session.release(s),
      prepare: async (frame, slot) => {
        const rgb = await sharp(frame).resize(128, 128, { fit: 'fill' }).raw().toBuffer();
        (slot.inputs[0] as Uint8Array).set(rgb);
      },
      invoke: (slot) => session.invoke(slot),
      finish: (_f, slot) => {
        const out = slot.outputs[0] as Uint8Array;
        return out.indexOf(Math.max(...out));
      },
    },
    (_f, top) => tops.push(top),
    (_f, e) => t.fail(String(e)),
  );
  for (let i = 0; i < 30; i++) p.offer(jpeg); // all at once: faster than any model
  await p.idle();
  const s = p.stats();
  t.equal(s.completed + s.dropped, 30, `${s.completed} classified + ${s.dropped} dropped = 30 offered`);
  t.ok(s.maxInFlight <= 2, 'never more frames in flight than slots');
  t.ok(tops.length >= 2 && tops.every((x) => x === 283), 'every classified frame is the cat (tiger cat on this model)');
});
