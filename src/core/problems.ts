/**
 * The daemon's problem channel: conditions a user should act on (a stalled
 * source, a frozen camera, the Edge TPU fallback active, a broker refusing
 * the connection, a GPIO rule naming labels the model lacks…), each with
 * since-when and a hint. Every stage may raise and clear problems through a
 * {@link ProblemReporter}; the service owns one {@link ProblemRegistry},
 * publishes its list on `<base>/problems` (retained) and health checks read
 * it.
 *
 * Problem ids are snake_case with an optional `:<detail>` suffix for
 * instances of one kind (`gpio_labels_missing:17`); see {@link PROBLEM}.
 */

/** How bad a problem is: `error` — the device does not do its job (no frames, no broker); `warning` — it does, degraded. */
export type ProblemSeverity = 'warning' | 'error';

/** One current problem, as published on `<base>/problems`. */
export interface Problem {
  /** Stable id, e.g. `source_stalled`, `gpio_labels_missing:17`. */
  readonly id: string;
  /** What is wrong, one sentence naming the thing, e.g. `no frame from rpicam for 12 s`. */
  readonly message: string;
  /** What a user can do about it. */
  readonly hint: string;
  readonly severity: ProblemSeverity;
  /** When the problem was first raised (and not cleared since), ISO 8601 UTC. */
  readonly since: string;
}

/** What a stage needs to report problems: raise and clear by id. */
export interface ProblemReporter {
  /**
   * Raises problem `id`. Idempotent: the first raise sets `since`; raising
   * it again updates message, hint and severity and keeps `since`.
   * Throws when `id` is not a problem id (see {@link isProblemId}).
   */
  raise(id: string, message: string, hint: string, severity?: ProblemSeverity): void;
  /** Clears problem `id`; nothing happens when it is not raised. */
  clear(id: string): void;
}

/** Ids of the problems the daemon raises (a `:<detail>` suffix may follow ids marked so). */
export const PROBLEM = {
  /** The source delivered no frame for longer than its stall time (camera). */
  sourceStalled: 'source_stalled',
  /** Frames arrive but are identical (camera). */
  cameraFrozen: 'camera_frozen',
  /** The camera process fails or exits (camera). */
  cameraError: 'camera_error',
  /** The Edge TPU cannot be used and the CPU fallback model runs (inference). */
  edgetpuFallback: 'edgetpu_fallback',
  /** The broker cannot be reached (mqtt). */
  brokerUnreachable: 'broker_unreachable',
  /** The broker refuses the connection: bad credentials, client id… (mqtt). */
  brokerRefused: 'broker_refused',
  /** Another client uses our client id; the broker closes one of us again and again (mqtt). */
  clientIdConflict: 'client_id_conflict',
  /** More commands arrived than the rate limit allows; the rest were refused (mqtt). */
  commandsFlood: 'commands_flood',
  /** A GPIO rule names labels the model has no class for; suffix `:<pin>`. */
  gpioLabelsMissing: 'gpio_labels_missing',
} as const;

const ID = /^[a-z][a-z0-9_]*(:[A-Za-z0-9_.-]+)?$/;

/** True for a valid problem id: snake_case, optionally `:<detail>` (letters, digits, `_.-`). */
export function isProblemId(id: string): boolean {
  return ID.test(id);
}

/**
 * The problem list of a running daemon. Listeners registered with
 * {@link onChange} are called synchronously after every change (raise of a
 * new id, update of message/hint/severity, clear); raising an unchanged
 * problem again calls nothing, so stages may raise on every check.
 * A listener that throws does not stop the others or the caller.
 */
export class ProblemRegistry implements ProblemReporter {
  private readonly problems = new Map<string, Problem>();
  private readonly listeners = new Set<(list: readonly Problem[]) => void>();
  private readonly now: () => Date;

  /** `now`: the clock for `since` (tests pass a fixed one). */
  constructor(now: () => Date = () => new Date()) {
    this.now = now;
  }

  raise(id: string, message: string, hint: string, severity: ProblemSeverity = 'warning'): void {
    if (!isProblemId(id)) {
      throw new Error(`problem id ${JSON.stringify(id)}: expected snake_case with an optional ':<detail>', e.g. source_stalled or gpio_labels_missing:17`);
    }
    const old = this.problems.get(id);
    if (old !== undefined && old.message === message && old.hint === hint && old.severity === severity) return;
    this.problems.set(id, { id, message, hint, severity, since: old?.since ?? this.now().toISOString() });
    this.changed();
  }

  clear(id: string): void {
    if (this.problems.delete(id)) this.changed();
  }

  /** True while problem `id` is raised. */
  has(id: string): boolean {
    return this.problems.has(id);
  }

  /** The current problems, oldest first (by `since`, then id); empty when all is well. */
  list(): readonly Problem[] {
    return [...this.problems.values()].sort((a, b) => (a.since < b.since ? -1 : a.since > b.since ? 1 : a.id < b.id ? -1 : 1));
  }

  /** Calls `listener` with the new list after each change; returns a function that unregisters it. */
  onChange(listener: (list: readonly Problem[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    const list = this.list();
    for (const listener of this.listeners) {
      try {
        listener(list);
      } catch {
        // A failing subscriber (e.g. a publisher shutting down) must not break the stage that raised.
      }
    }
  }
}
