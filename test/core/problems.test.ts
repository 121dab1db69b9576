import t from 'tap';
import { isProblemId, type Problem, ProblemRegistry } from '../../src/core/problems.js';

t.test('raise keeps since, updates the text, clear removes; listeners see each change', async (t) => {
  let clock = Date.UTC(2026, 11, 1, 8, 0, 0);
  const reg = new ProblemRegistry(() => new Date(clock));
  const seen: (readonly Problem[])[] = [];
  const off = reg.onChange((l) => seen.push(l));
  reg.raise('source_stalled', 'no frame from rpicam for 12 s', 'check the camera cable', 'error');
  clock += 5000;
  reg.raise('source_stalled', 'no frame from rpicam for 17 s', 'check the camera cable', 'error');
  reg.raise('source_stalled', 'no frame from rpicam for 17 s', 'check the camera cable', 'error');
  t.equal(seen.length, 2, 'an unchanged re-raise notifies nobody');
  reg.raise('gpio_labels_missing:17', 'GPIO 17: the model has no class "cat"', 'use a label from the labels file');
  t.same(
    reg.list().map((p) => [p.id, p.since, p.severity]),
    [
      ['source_stalled', '2026-12-01T08:00:00.000Z', 'error'],
      ['gpio_labels_missing:17', '2026-12-01T08:00:05.000Z', 'warning'],
    ],
    'oldest first; since from the first raise',
  );
  t.equal(reg.list()[0]!.message, 'no frame from rpicam for 17 s');
  reg.clear('source_stalled');
  reg.clear('source_stalled');
  t.equal(seen.length, 4, 'a second clear of the same id notifies nobody');
  t.same(
    seen.at(-1)!.map((p) => p.id),
    ['gpio_labels_missing:17'],
  );
  t.equal(reg.has('source_stalled'), false);
  off();
  reg.clear('gpio_labels_missing:17');
  t.equal(seen.length, 4, 'unsubscribed');
  t.same(reg.list(), []);
});

t.test('a failing listener does not break the raiser or the other listeners', async (t) => {
  const reg = new ProblemRegistry();
  let got = 0;
  reg.onChange(() => {
    throw new Error('boom');
  });
  reg.onChange(() => got++);
  reg.raise('camera_error', 'rpicam-vid exited with status 255', 'see the log lines before');
  t.equal(got, 1);
});

t.test('ids are checked', async (t) => {
  t.ok(isProblemId('edgetpu_fallback'));
  t.ok(isProblemId('gpio_labels_missing:17'));
  t.notOk(isProblemId('Source Stalled'));
  t.notOk(isProblemId('a/b'));
  t.throws(() => new ProblemRegistry().raise('bad id', 'm', 'h'), /problem id "bad id": expected snake_case/);
});
