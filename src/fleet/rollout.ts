/**
 * The rollout scheduler: which host is updated when, and when to stop.
 *
 * Order: the first `canary` hosts (inventory order) form the canary phase;
 * every one of them must succeed, or the rollout stops there. The rest go
 * in batches of `batch` hosts; a batch starts once the previous one has
 * finished (a synchronisation point, like Ansible's `serial`), and inside a
 * batch at most `parallel` hosts run at once. As soon as the number of
 * failed hosts exceeds the `maxFail` budget no further host is started: the
 * hosts already running finish (their devices complete or roll back by
 * themselves either way) and every host not started is left untouched and
 * reported as skipped.
 *
 * The scheduler knows nothing about SSH: it runs a task per host and counts
 * results, so its rules are tested with fake outcomes.
 */

/** How many failed hosts a rollout tolerates: a count, or a percentage of the hosts in the rollout. */
export type FailBudget = { readonly count: number } | { readonly percent: number };

export interface RolloutOptions {
  /** Hosts updated first, all of which must succeed; 0 for none. */
  readonly canary: number;
  /** Hosts per batch after the canary phase; ≥ 1. */
  readonly batch: number;
  /** Hosts running at once inside a phase; ≥ 1. */
  readonly parallel: number;
  /** Failed hosts tolerated before the rollout stops. */
  readonly maxFail: FailBudget;
}

/** What a host's task reports back. `ok: false` counts against the fail budget. */
export interface TaskResult {
  readonly ok: boolean;
}

type HostRun<R extends TaskResult> =
  | { readonly host: string; readonly phase: PhaseName; readonly started: true; readonly result: R }
  | { readonly host: string; readonly phase: PhaseName; readonly started: false; readonly reason: string };

export type PhaseName = 'canary' | `batch ${number}`;

export interface Phase<H> {
  readonly name: PhaseName;
  readonly hosts: readonly H[];
}

export interface RolloutReport<R extends TaskResult> {
  /** One entry per host, in the order the hosts were given. */
  readonly runs: readonly HostRun<R>[];
  /** Why the rollout stopped early, or undefined when every host was tried. */
  readonly stoppedBecause: string | undefined;
  /** Failed hosts tolerated (the budget resolved to a count). */
  readonly allowedFailures: number;
}

export interface RolloutHooks<H> {
  /** Called when a phase starts. */
  onPhase?(phase: Phase<H>, index: number, total: number): void;
  /** Called once when the rollout decides to stop (no further host will start). */
  onStop?(reason: string): void;
}

/**
 * Parses a `--max-fail` value: a whole number of hosts (`2`) or a
 * percentage of the rollout's hosts (`10%`, up to 100). Throws an Error
 * naming the value otherwise.
 */
export function parseFailBudget(text: string): FailBudget {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$/.exec(text);
  if (m) {
    const n = Number(m[1]);
    if (m[2] === '%' && n <= 100) return { percent: n };
    if (m[2] === '' && Number.isInteger(n)) return { count: n };
  }
  throw new Error(`--max-fail expects a whole number of hosts (e.g. 1) or a percentage of them (e.g. 10%), got '${text}'`);
}

/** The number of failed hosts a budget allows among `total` hosts (a percentage rounds down). */
export function allowedFailures(budget: FailBudget, total: number): number {
  return 'count' in budget ? budget.count : Math.floor((budget.percent / 100) * total + 1e-9);
}

/** Splits hosts into the canary phase and batches (see the module comment). */
export function planRollout<H>(hosts: readonly H[], options: Pick<RolloutOptions, 'canary' | 'batch'>): Phase<H>[] {
  if (!Number.isInteger(options.canary) || options.canary < 0) throw new Error(`--canary expects a whole number ≥ 0, got ${options.canary}`);
  if (!Number.isInteger(options.batch) || options.batch < 1) throw new Error(`--batch expects a whole number ≥ 1, got ${options.batch}`);
  const phases: Phase<H>[] = [];
  const canary = Math.min(options.canary, hosts.length);
  if (canary > 0) phases.push({ name: 'canary', hosts: hosts.slice(0, canary) });
  for (let i = canary, n = 1; i < hosts.length; i += options.batch, n++) {
    phases.push({ name: `batch ${n}`, hosts: hosts.slice(i, i + options.batch) });
  }
  return phases;
}

/**
 * Runs `task` for each host following the plan and the fail budget. `task`
 * should not throw (a throw is reported as that host's failure via
 * `onError`); `signal` aborting stops starting hosts, like an exceeded
 * budget, with the reason "interrupted".
 */
export async function runRollout<H, R extends TaskResult>(
  hosts: readonly H[],
  nameOf: (host: H) => string,
  options: RolloutOptions,
  task: (host: H, phase: PhaseName) => Promise<R>,
  onError: (host: H, err: unknown) => R,
  hooks: RolloutHooks<H> = {},
  signal?: AbortSignal,
): Promise<RolloutReport<R>> {
  if (!Number.isInteger(options.parallel) || options.parallel < 1) throw new Error(`--parallel expects a whole number ≥ 1, got ${options.parallel}`);
  const phases = planRollout(hosts, options);
  const allowed = allowedFailures(options.maxFail, hosts.length);
  const runs = new Map<H, HostRun<R>>();
  let failed = 0;
  let stoppedBecause: string | undefined;
  const stop = (reason: string): void => {
    if (stoppedBecause !== undefined) return;
    stoppedBecause = reason;
    hooks.onStop?.(reason);
  };
  const onAbort = (): void => stop('interrupted');
  if (signal?.aborted) onAbort();
  signal?.addEventListener('abort', onAbort, { once: true });

  try {
    for (const [index, phase] of phases.entries()) {
      if (stoppedBecause !== undefined) break;
      hooks.onPhase?.(phase, index, phases.length);
      const queue = [...phase.hosts];
      const worker = async (): Promise<void> => {
        for (let host = queue.shift(); host !== undefined; host = queue.shift()) {
          if (stoppedBecause !== undefined) {
            queue.unshift(host);
            return;
          }
          let result: R;
          try {
            result = await task(host, phase.name);
          } catch (err) {
            result = onError(host, err);
          }
          runs.set(host, { host: nameOf(host), phase: phase.name, started: true, result });
          if (!result.ok) {
            failed++;
            if (phase.name === 'canary') stop(`canary host ${nameOf(host)} failed`);
            else if (failed > allowed) stop(`${failed} host${failed === 1 ? '' : 's'} failed, more than --max-fail allows (${allowed})`);
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(options.parallel, phase.hosts.length) }, worker));
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }

  const report: HostRun<R>[] = [];
  for (const phase of phases) {
    for (const host of phase.hosts) {
      report.push(runs.get(host) ?? { host: nameOf(host), phase: phase.name, started: false, reason: stoppedBecause ?? 'not started' });
    }
  }
  return { runs: report, stoppedBecause, allowedFailures: allowed };
}
