import t from 'tap';
import { allowedFailures, parseFailBudget, planRollout, type RolloutOptions, runRollout } from '../../src/fleet/rollout.js';

const hosts = (n: number): string[] => Array.from({ length: n }, (_, i) => `h${i + 1}`);

/**
 * Runs a rollout where the hosts in `failing` fail; each task takes `ms`
 * (per host, optional) and records start/end so concurrency can be checked.
 */
async function simulate(all: string[], options: Partial<RolloutOptions>, failing: string[] = [], ms: Record<string, number> = {}, signal?: AbortSignal) {
  const events: string[] = [];
  let running = 0;
  let maxRunning = 0;
  const phases: string[] = [];
  const stops: string[] = [];
  const report = await runRollout(
    all,
    (h) => h,
    { canary: 0, batch: all.length, parallel: all.length, maxFail: { count: 0 }, ...options },
    async (h, phase) => {
      events.push(`start ${h} ${phase}`);
      running++;
      maxRunning = Math.max(maxRunning, running);
      await new Promise((r) => setTimeout(r, ms[h] ?? 5));
      running--;
      events.push(`end ${h}`);
      return { ok: !failing.includes(h) };
    },
    () => ({ ok: false }),
    { onPhase: (p) => phases.push(`${p.name}: ${p.hosts.join(' ')}`), onStop: (r) => stops.push(r) },
    signal,
  );
  const started = report.runs.filter((r) => r.started).map((r) => r.host);
  const skipped = report.runs.filter((r) => !r.started).map((r) => r.host);
  return { report, events, maxRunning, phases, stops, started, skipped };
}

t.test('--max-fail: a count or a percentage', async (t) => {
  t.same(parseFailBudget('0'), { count: 0 });
  t.same(parseFailBudget('3'), { count: 3 });
  t.same(parseFailBudget('10%'), { percent: 10 });
  t.same(parseFailBudget(' 12.5 % '), { percent: 12.5 });
  t.throws(() => parseFailBudget('-1'), /--max-fail expects a whole number of hosts \(e\.g\. 1\) or a percentage of them \(e\.g\. 10%\), got '-1'/);
  t.throws(() => parseFailBudget('1.5'), /got '1\.5'/);
  t.throws(() => parseFailBudget('150%'), /got '150%'/);
  t.throws(() => parseFailBudget('some'), /got 'some'/);
  t.equal(allowedFailures({ percent: 10 }, 25), 2, '10% of 25 hosts rounds down to 2');
  t.equal(allowedFailures({ percent: 10 }, 9), 0, '10% of 9 hosts is 0: the first failure stops');
  t.equal(allowedFailures({ percent: 30 }, 10), 3, 'no floating-point shortfall (0.3 × 10 = 2.9999…)');
  t.equal(allowedFailures({ count: 2 }, 1), 2);
});

t.test('plan: canary first, then batches in inventory order', async (t) => {
  t.same(
    planRollout(hosts(7), { canary: 1, batch: 3 }).map((p) => [p.name, p.hosts]),
    [
      ['canary', ['h1']],
      ['batch 1', ['h2', 'h3', 'h4']],
      ['batch 2', ['h5', 'h6', 'h7']],
    ],
  );
  t.same(
    planRollout(hosts(3), { canary: 0, batch: 2 }).map((p) => p.hosts),
    [['h1', 'h2'], ['h3']],
  );
  t.same(
    planRollout(hosts(2), { canary: 5, batch: 2 }).map((p) => p.name),
    ['canary'],
    'a canary larger than the fleet is the whole fleet',
  );
  t.throws(() => planRollout(hosts(2), { canary: 0, batch: 0 }), /--batch expects a whole number ≥ 1, got 0/);
  t.throws(() => planRollout(hosts(2), { canary: -1, batch: 1 }), /--canary expects a whole number ≥ 0, got -1/);
});

t.test('all succeed: every host runs once, batches never overlap', async (t) => {
  const r = await simulate(hosts(5), { canary: 1, batch: 2, parallel: 2 });
  t.equal(r.report.stoppedBecause, undefined);
  t.same(r.started, hosts(5));
  t.same(r.phases, ['canary: h1', 'batch 1: h2 h3', 'batch 2: h4 h5']);
  // A batch starts only after every host of the previous one ended.
  const pos = (e: string) => r.events.indexOf(e);
  t.ok(pos('end h1') < pos('start h2 batch 1'));
  t.ok(Math.max(pos('end h2'), pos('end h3')) < Math.min(pos('start h4 batch 2'), pos('start h5 batch 2')));
  t.equal(r.maxRunning, 2);
});

t.test('parallel bounds the hosts running at once inside a batch', async (t) => {
  const r = await simulate(hosts(6), { batch: 6, parallel: 2 });
  t.equal(r.maxRunning, 2);
  t.same(r.started.length, 6);
});

t.test('a failing canary stops the rollout even when --max-fail would allow it', async (t) => {
  const r = await simulate(hosts(4), { canary: 2, batch: 2, parallel: 2, maxFail: { count: 3 } }, ['h1']);
  t.same(r.started, ['h1', 'h2'], 'the other canary, already running, finishes');
  t.same(r.skipped, ['h3', 'h4']);
  t.equal(r.report.stoppedBecause, 'canary host h1 failed');
  t.same(r.stops, ['canary host h1 failed']);
  t.same(
    r.report.runs.filter((x) => !x.started).map((x) => !x.started && x.reason),
    ['canary host h1 failed', 'canary host h1 failed'],
  );
});

t.test('--max-fail 0: the first failure stops starting hosts; the rest stay untouched', async (t) => {
  const r = await simulate(hosts(5), { batch: 1, parallel: 1 }, ['h2']);
  t.same(r.started, ['h1', 'h2']);
  t.same(r.skipped, ['h3', 'h4', 'h5']);
  t.equal(r.report.stoppedBecause, '1 host failed, more than --max-fail allows (0)');
});

t.test('--max-fail 1 tolerates one failure and stops at the second', async (t) => {
  const r = await simulate(hosts(6), { batch: 1, parallel: 1, maxFail: { count: 1 } }, ['h2', 'h4']);
  t.same(r.started, ['h1', 'h2', 'h3', 'h4']);
  t.same(r.skipped, ['h5', 'h6']);
  t.equal(r.report.allowedFailures, 1);
});

t.test('--max-fail as a percentage of the rollout', async (t) => {
  // 20% of 10 hosts = 2 tolerated; the third failure stops.
  const r = await simulate(hosts(10), { batch: 1, parallel: 1, maxFail: { percent: 20 } }, ['h1', 'h3', 'h5', 'h7']);
  t.same(r.started, hosts(5));
  t.equal(r.report.stoppedBecause, '3 hosts failed, more than --max-fail allows (2)');
});

t.test('inside a batch, hosts still running finish after the budget is exceeded; queued ones do not start', async (t) => {
  // batch of 4 with 2 at a time: h1 fails fast while h2 is slow; h3, h4 must not start.
  const r = await simulate(hosts(4), { batch: 4, parallel: 2 }, ['h1'], { h1: 5, h2: 60 });
  t.same(r.started, ['h1', 'h2']);
  t.same(r.skipped, ['h3', 'h4']);
  t.ok(r.events.includes('end h2'), 'h2 was not abandoned');
});

t.test('a task that throws counts as that host failing', async (t) => {
  const report = await runRollout<string, { ok: boolean; why: string }>(
    hosts(3),
    (h) => h,
    { canary: 0, batch: 1, parallel: 1, maxFail: { count: 0 } },
    async (h) => {
      if (h === 'h1') throw new Error('boom');
      return { ok: true as boolean, why: '' };
    },
    (_h, err) => ({ ok: false, why: (err as Error).message }),
  );
  t.same(
    report.runs.map((r) => (r.started ? r.result : r.reason)),
    [{ ok: false, why: 'boom' }, '1 host failed, more than --max-fail allows (0)', '1 host failed, more than --max-fail allows (0)'],
  );
});

t.test('an abort (Ctrl-C) stops starting hosts and lets running ones finish', async (t) => {
  const ac = new AbortController();
  const p = simulate(hosts(4), { batch: 4, parallel: 2 }, [], { h1: 40, h2: 40 }, ac.signal);
  setTimeout(() => ac.abort(), 10);
  const r = await p;
  t.same(r.started, ['h1', 'h2']);
  t.same(r.skipped, ['h3', 'h4']);
  t.equal(r.report.stoppedBecause, 'interrupted');
});
