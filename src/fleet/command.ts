/**
 * `edge-classifier fleet …`: the operator's commands, over SSH, for the
 * hosts of an inventory. This file declares them (cheap to load with the
 * rest of the command line); `actions.ts` does the work when one runs.
 *
 * Exit status: 0 every host ended as asked; 1 a host failed, was rolled
 * back, was skipped or is unhealthy; 2 a usage error; 78 (EX_CONFIG) an
 * inventory that cannot be used; 130 interrupted by Ctrl-C.
 */
import { type Command, InvalidArgumentError, Option } from 'commander';
import type { GlobalFlags, PushFlags } from './actions.js';
import { type FailBudget, parseFailBudget } from './rollout.js';

const EX_CONFIG = 78;

/** The default inventory file when neither --inventory nor EDGE_CLASSIFIER_INVENTORY is given. */
const DEFAULT_INVENTORY = 'fleet.yaml';

/** Errors that are the operator's to fix, printed without a stack (by their class name). */
const EXPECTED = new Set(['PushInputError', 'BuildError', 'SshError', 'TransferError']);

const whole =
  (name: string, min: number) =>
  (v: string): number => {
    if (!/^\d+$/.test(v.trim()) || Number(v) < min) throw new InvalidArgumentError(`${name} expects a whole number ≥ ${min}, got '${v}'`);
    return Number(v);
  };
const budget = (v: string): FailBudget => {
  try {
    return parseFailBudget(v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
};

type Actions = typeof import('./actions.js');

/**
 * Adds `fleet` and its subcommands to the program. `setExit` receives each
 * action's exit-status promise.
 */
export function addFleetCommands(cli: Command, setExit: (p: Promise<number>) => void): void {
  const fleet = cli
    .command('fleet')
    // The inventory, --limit and the other fleet options may come before or after the subcommand.
    .enablePositionalOptions(false)
    .description('update and watch a fleet of devices over SSH (an inventory of hosts)')
    .addOption(new Option('-i, --inventory <file>', 'the inventory (YAML)').env('EDGE_CLASSIFIER_INVENTORY').default(DEFAULT_INVENTORY))
    .option('-l, --limit <pattern>', 'only these hosts/groups, comma-separated; !NAME excludes (e.g. house,!barn)')
    .option('--accept-new-host-keys', 'record the key of a host not yet in known_hosts (a changed key is still refused)')
    .option('--parallel <n>', 'hosts worked on at once', whole('--parallel', 1), 4)
    .option('--json', 'one JSON object per host, then a summary object, on stdout');

  /** Loads the actions, runs one, and turns the operator's errors into a message and an exit status. */
  const act =
    <A extends unknown[]>(fn: (actions: Actions, flags: GlobalFlags, ...args: A) => Promise<number>) =>
    (...args: A): void => {
      const flags = (args[args.length - 1] as Command).optsWithGlobals<GlobalFlags>();
      setExit(
        import('./actions.js')
          .then((actions) => fn(actions, flags, ...args))
          .catch((err: unknown) => {
            const e = err as Error & { hint?: string };
            if (e?.name === 'InventoryError') {
              process.stderr.write(`edge-classifier fleet: ${e.message}\n`);
              return EX_CONFIG;
            }
            if (!EXPECTED.has(e?.name)) throw err;
            process.stderr.write(`edge-classifier fleet: ${e.message}\n${e.hint !== undefined ? `  ${e.hint}\n` : ''}`);
            return 1;
          }),
      );
    };

  fleet
    .command('push')
    .description('send a release archive (or a model) to the hosts: canary first, then batches; each device checks, activates and rolls back by itself')
    .argument('[archive]', 'release archive from edge-classifier pack (ARCHIVE.sha256 beside it)')
    .option('--model <file>', 'push this model instead of a release (hot reload, no restart)')
    .option('--labels <file>', 'labels file for --model')
    .option('--canary <n>', 'hosts updated first; all must succeed', whole('--canary', 0), 1)
    .option('--batch <n>', 'hosts per batch after the canary', whole('--batch', 1), 5)
    .addOption(
      new Option('--max-fail <n|p%>', 'failed hosts tolerated before the rollout stops (a count or a % of the hosts)')
        .argParser(budget)
        .default({ count: 0 }, '0'),
    )
    .option('--health-timeout <s>', "the device's health gate timeout (default: the device's, 60 s)", whole('--health-timeout', 1))
    .option('--bwlimit <KiB/s>', 'limit each transfer, in KiB/s', whole('--bwlimit', 1))
    .option('--keep <n>', 'after a successful release, keep this many releases on the device (release prune)', whole('--keep', 2))
    .action(act((a, flags, archive: string | undefined, opts: PushFlags) => a.push(flags, archive, opts)));

  fleet
    .command('rollback')
    .description('switch the hosts back to their previous release (or model), each through its health gate')
    .option('--model', 'roll back the model instead of the release')
    .option('--canary <n>', 'hosts rolled back first; all must succeed', whole('--canary', 0), 0)
    .option('--batch <n>', 'hosts per batch', whole('--batch', 1), 1000)
    .addOption(new Option('--max-fail <n|p%>', 'failed hosts tolerated before stopping').argParser(budget).default({ percent: 100 }, '100%'))
    .option('--health-timeout <s>', "the device's health gate timeout", whole('--health-timeout', 1))
    .action(act((a, flags, opts: Parameters<Actions['rollback']>[1]) => a.rollback(flags, opts)));

  fleet
    .command('status')
    .description('per host: health, release, model, since, fps, problems, last health check (health --json over SSH)')
    .action(act((a, flags) => a.status(flags)));

  fleet
    .command('doctor')
    .description("run each host's preflight checks (doctor --json over SSH)")
    .action(act((a, flags) => a.doctor(flags)));

  fleet
    .command('bootstrap')
    .description('set up fresh devices: service user, folders, unit, config, first release, sudoers rule, then doctor')
    .argument('<hosts...>', 'host or group names of the inventory')
    .requiredOption('--archive <file>', 'the first release (from edge-classifier pack)')
    .option('--config <file>', 'configuration to install (default: the template; an existing one is kept)')
    .option('--service-user <name>', 'the service user to create', 'edge-classifier')
    .option('--health-timeout <s>', "the device's health gate timeout", whole('--health-timeout', 1))
    .action(act((a, flags, names: string[], opts: Parameters<Actions['bootstrap']>[2]) => a.bootstrap(flags, names, opts)));

  fleet
    .command('build')
    .description('build a release archive on a builder host of the given arch (for native parts that must be compiled there)')
    .requiredOption('--arch <arch>', 'Node.js arch of the release: arm64, x64, arm')
    .option('--builder <host>', 'the builder host (default: the first builder of that arch)')
    .option('--out <dir>', 'where the archive goes', '.')
    .option('--version <v>', 'release version (default: the package version)')
    .action(act((a, flags, opts: Parameters<Actions['build']>[1]) => a.build(flags, opts)));

  fleet
    .command('inventory')
    .description('list the hosts (after --limit), or print them as an Ansible inventory')
    .option('--ansible', 'print an Ansible YAML inventory for deploy/ansible/')
    .action(act((a, flags, opts: { ansible?: boolean }) => a.inventory(flags, opts)));
}
