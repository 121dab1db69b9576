import { readFileSync } from 'node:fs';
import t from 'tap';
import { loadConfig } from '../../src/config/load.js';
import { reportedClasses, smoothingOutput, stateOptions } from '../../src/config/options.js';
import type { ClassScore } from '../../src/core/types.js';
import { Classifier } from '../../src/inference/classifier.js';
import { type SmoothedState, StateSmoother, statePayload } from '../../src/mqtt/state.js';
import { image, model } from '../helpers/assets.js';

const T0 = Date.UTC(2026, 11, 1, 8, 0, 0);
const cat = (score: number): ClassScore => ({ index: 286, label: 'Egyptian cat', score });
const dog = (score: number): ClassScore => ({ index: 208, label: 'Labrador retriever', score });

/** Feeds frames 100 ms apart; returns the states published (changes only). */
function feed(s: StateSmoother, frames: ClassScore[][], startMs = 0): SmoothedState[] {
  const out: SmoothedState[] = [];
  frames.forEach((classes, i) => {
    const ms = startMs + i * 100;
    const changed = s.update(classes, new Date(T0 + ms), ms);
    if (changed) out.push(changed);
  });
  return out;
}
const labelsOf = (states: SmoothedState[]) => states.map((s) => (s.status === 'detected' ? s.label : s.status));

t.test('defaults keep the old behaviour: the top class of every frame, on change', async (t) => {
  const s = new StateSmoother();
  const states = feed(s, [[cat(0.75), dog(0.1)], [cat(0.8)], [dog(0.51234), cat(0.4)], [], []]);
  t.same(labelsOf(states), ['Egyptian cat', 'Labrador retriever', 'none']);
  t.same(states[0], { status: 'detected', label: 'Egyptian cat', index: 286, score: 0.75, since: new Date(T0), classes: [cat(0.75), dog(0.1)] });
  t.equal(states[1]!.score, 0.51234);
  t.same(states[2], { status: 'none', label: null, index: null, score: null, since: new Date(T0 + 300), classes: [] });
  t.same(statePayload(states[1]!, new Date(T0 + 1000)), {
    status: 'detected',
    label: 'Labrador retriever',
    index: 208,
    score: 0.5123,
    since: '2026-12-01T08:00:00.200Z',
    time: '2026-12-01T08:00:01.000Z',
    classes: [
      { index: 208, label: 'Labrador retriever', score: 0.5123 },
      { index: 286, label: 'Egyptian cat', score: 0.4 },
    ],
  });
});

t.test('hysteresis: on above min_score, off only below min_score − h', async (t) => {
  const s = new StateSmoother({ minScore: 0.6, hysteresis: 0.15 });
  const scores = [0.55, 0.62, 0.5, 0.46, 0.44, 0.58, 0.61];
  const states = feed(
    s,
    scores.map((x) => [cat(x)]),
  );
  // 0.55 < 0.6: none; 0.62: on; 0.5 and 0.46 ≥ 0.45: still on; 0.44: off; 0.58 < 0.6: still off; 0.61: on.
  t.same(labelsOf(states), ['none', 'Egyptian cat', 'none', 'Egyptian cat']);
  t.same(
    states.map((x) => x.since.getTime() - T0),
    [0, 100, 400, 600],
  );
});

t.test('per-label thresholds, by label or synonym, case-insensitive', async (t) => {
  const s = new StateSmoother({ minScore: 0.6, labelThresholds: { 'egyptian CAT': 0.3, 'hot dog': 0.9 } });
  t.equal(s.thresholdOf('Egyptian cat'), 0.3);
  t.equal(s.thresholdOf('hotdog, hot dog, red hot'), 0.9);
  t.equal(s.thresholdOf('Labrador retriever'), 0.6);
  const hotdog = (score: number): ClassScore => ({ index: 935, label: 'hotdog, hot dog, red hot', score });
  // dog 0.5 fails 0.6, cat 0.35 passes its 0.3: the vote is cat. A hotdog at 0.85 is below its 0.9.
  t.same(labelsOf(feed(s, [[dog(0.5), cat(0.35)], [hotdog(0.85)], [hotdog(0.95)]])), ['Egyptian cat', 'none', 'hotdog, hot dog, red hot']);
  t.throws(() => new StateSmoother({ labelThresholds: { cat: 2 } }), /state threshold of "cat" 2: expected a score in \[0,1\]/);
});

t.test('min dwell: a state is kept at least min_dwell_ms', async (t) => {
  const s = new StateSmoother({ minDwellMs: 250 });
  const states = feed(s, [[cat(0.9)], [dog(0.9)], [dog(0.9)], [dog(0.9)]]);
  t.same(labelsOf(states), ['Egyptian cat', 'Labrador retriever']);
  t.equal(states[1]!.since.getTime() - T0, 300, 'changed at the first frame 250 ms after the last change');
});

t.test('expiry: no frame for expire_after → unknown, once; frames decide anew', async (t) => {
  const s = new StateSmoother({ minFrames: 2, expireAfterMs: 5000 });
  feed(s, [[cat(0.9)], [cat(0.9)]]);
  t.equal(s.state?.label, 'Egyptian cat');
  t.equal(s.expire(new Date(T0 + 5000), 5000), null, '4.9 s after the last frame: not yet');
  const unknown = s.expire(new Date(T0 + 5100), 5100);
  t.same(unknown, { status: 'unknown', label: null, index: null, score: null, since: new Date(T0 + 5100), classes: [] });
  t.equal(s.expire(new Date(T0 + 9000), 9000), null, 'published once');
  t.same(labelsOf(feed(s, [[cat(0.9)], [cat(0.9)]], 10_000)), ['Egyptian cat'], 'two frames again (min_frames 2)');
  t.equal(new StateSmoother().expire(new Date(), 1e9), null, 'expire_after 0: never');
});

t.test('markUnknown: the start-up state', async (t) => {
  const s = new StateSmoother({ minFrames: 3 });
  t.equal(s.markUnknown(new Date(T0)).status, 'unknown');
  t.same(labelsOf(feed(s, [[cat(0.9)], [cat(0.9)]])), [], 'two frames: still unknown');
  t.same(labelsOf(feed(s, [[cat(0.9)]], 200)), ['Egyptian cat']);
});

t.test('real frames: alternating hot dog / chickadee photos do not flap with min_frames 3', async (t) => {
  // The shared assets hold no burger or parrot; a hot dog and a chickadee photo are the same kind of pair:
  // two confident, different top-1 classes (SOURCES.md: hotdog ~0.93, chickadee ~0.98).
  const classifier = new Classifier({
    modelPath: model('mobilenet_v2_1.0_224_quant.tflite'),
    engine: 'tflite',
    threads: 1,
    delegate: 'cpu',
    topK: 3,
    threshold: 0,
    resize: 'stretch',
  });
  t.teardown(() => classifier.stop());
  await classifier.start();
  const classify = async (file: string) => (await classifier.classify(readFileSync(image(file)), file)).classes;
  const hotdog = await classify('hot_dog.jpg');
  const bird = await classify('bird.png');
  t.match(hotdog[0]!.label, /^hotdog/);
  t.equal(bird[0]!.label, 'chickadee');
  // 3 hot dog frames, then 30 alternating frames, then 3 chickadee frames.
  const frames = [hotdog, hotdog, hotdog, ...Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? bird : hotdog)), bird, bird, bird];

  const unsmoothed = labelsOf(feed(new StateSmoother(), frames));
  t.equal(unsmoothed.length, 32, 'without smoothing the state flaps: 1 + 30 alternations + 1');

  const smoothed = feed(new StateSmoother({ minFrames: 3 }), frames);
  t.same(labelsOf(smoothed), [hotdog[0]!.label, 'chickadee'], 'with min_frames 3: hotdog once, chickadee once');
  t.equal(smoothed[1]!.since.getTime() - T0, 35 * 100, 'chickadee at the third chickadee frame in a row');
  t.equal(smoothed[0]!.score, hotdog[0]!.score);
});

t.test('hysteresis below inference.threshold and beyond top_k: the held label is looked for in the wider list the classifier reports', async (t) => {
  // inference.threshold 0.5, top_k 1, state.min_score 0 (the threshold decides), hysteresis 0.1: on at 0.5, off below 0.4;
  // the dog needs 0.9 to become the state.
  const loaded = loadConfig({ env: {}, overrides: { threshold: 0.5, topK: 1 } });
  const c = { ...loaded, state: { ...loaded.state, hysteresis: 0.1, labels: { 'Labrador retriever': 0.9 } } };
  t.same(smoothingOutput(c), { topK: 100, threshold: 0.4 }, 'the classifier reports down to 0.5 − 0.1, up to 100 classes');
  const s = new StateSmoother(stateOptions(c));
  const frames = [[cat(0.6)], [cat(0.45)], [dog(0.52), cat(0.41)], [cat(0.39)]];
  const states: SmoothedState[] = [];
  frames.forEach((candidates, i) => {
    const changed = s.update(reportedClasses(candidates, c.inference), new Date(T0 + i * 100), i * 100, candidates);
    if (changed) states.push(changed);
  });
  // 0.45 is not reported (below 0.5) but holds; 0.41 ranked second behind a dog short of its 0.9 (top_k 1) still holds; 0.39 < 0.4: none.
  t.same(labelsOf(states), ['Egyptian cat', 'none']);
  t.same(
    states.map((x) => x.since.getTime() - T0),
    [0, 300],
  );
  t.same(states[0]!.classes, [cat(0.6)], 'the state carries the reported classes only');
  // A label that is not held must be reported: a cat at 0.45 does not become the state.
  const fresh = new StateSmoother(stateOptions(c));
  t.equal(fresh.update(reportedClasses([cat(0.45)], c.inference), new Date(T0), 0, [cat(0.45)])?.status, 'none');
  // Thresholds at or above inference.threshold leave the classifier's cut where it was.
  const plain = loadConfig({ env: {}, overrides: { threshold: 0.2, topK: 3 } });
  t.same(smoothingOutput(plain), { topK: 100, threshold: 0.2 });
  t.same(reportedClasses([cat(0.6), dog(0.3), cat(0.25), dog(0.21), cat(0.1)], plain.inference), [cat(0.6), dog(0.3), cat(0.25)]);
});
