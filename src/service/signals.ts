/**
 * SIGTERM, SIGINT and SIGHUP for `run`, handled from the first moment of the
 * process: `cli.ts` imports this module before anything else, so the
 * handlers exist while commander, sharp, mqtt and the model load (about a
 * second on a Pi). Until the supervisor takes them (`deliver`) signals are
 * kept in order. Other commands keep the default behaviour (a signal ends
 * them), so nothing is installed unless the command is `run`.
 */
class SignalInbox {
  private readonly early: NodeJS.Signals[] = [];
  private handler: ((signal: NodeJS.Signals) => void) | undefined;

  constructor() {
    for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
      process.on(signal, () => (this.handler ? this.handler(signal) : this.early.push(signal)));
    }
  }

  /** True when SIGTERM or SIGINT came before a handler was set. */
  get stopRequested(): boolean {
    return this.early.some((s) => s !== 'SIGHUP');
  }

  /** Hands every signal kept so far, then every later one, to `handler`. */
  deliver(handler: (signal: NodeJS.Signals) => void): void {
    this.handler = handler;
    for (const signal of this.early.splice(0)) handler(signal);
  }
}

/** The signals of a `run` process (undefined for other commands). */
export const runSignals: SignalInbox | undefined = process.argv[2] === 'run' ? new SignalInbox() : undefined;
// `ps` and `top` show the daemon by name (and /proc/PID/cmdline says the handlers above are in place).
if (runSignals) process.title = 'edge-classifier run';
