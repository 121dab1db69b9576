import { performance } from 'node:perf_hooks';
import { ConfigError } from '../config/load.js';
import { persistSettings } from '../config/persist.js';
import type { Logger } from '../core/log.js';
import { PROBLEM, type ProblemReporter } from '../core/problems.js';
import { type IncomingMessage, parseCommand, RateLimiter, type ReplyTo, type RequestName } from '../mqtt/commands.js';
import type { ResponsePayload } from '../mqtt/topics.js';
import { type CheckedPatch, LiveSettings } from './live-settings.js';

/** Commands allowed in a burst above `ratePerS`. */
const BURST = 20;
/** A flood is over (problem cleared) after this long without a rate-limited command, in ms. */
const FLOOD_CLEAR_MS = 60_000;

/** What a request resolves with when someone else sends its response (the reload: the next daemon answers). */
export const ANSWERED_LATER: unique symbol = Symbol('answered later');

/** What the command handler needs from the daemon. */
export interface CommandHooks {
  readonly base: string;
  readonly settings: LiveSettings;
  /** The config file live settings are persisted to; undefined when the daemon runs on defaults and flags. */
  readonly configFile?: string;
  /** Commands accepted per second (mqtt.command_rate). */
  readonly ratePerS: number;
  readonly log: Logger;
  readonly problems: ProblemReporter;
  /** Applies a checked settings patch to the running parts (after it is committed). */
  apply(checked: CheckedPatch): void;
  /**
   * Runs a request; resolves with its result (or {@link ANSWERED_LATER})
   * or rejects with a message for the response.
   */
  request(command: RequestName, reply: ReplyTo, id: string | number | undefined): Promise<unknown>;
  /** Publishes a response. */
  respond(reply: ReplyTo, payload: ResponsePayload): void;
}

/** Counters of commands since start, for `<base>/stats`. */
export interface CommandCounters {
  readonly accepted: number;
  readonly refused: number;
  readonly rateLimited: number;
}

/**
 * Turns command messages into actions and responses: parses them
 * (`parseCommand`), rate-limits them (`mqtt.command_rate` per second,
 * bursts of 20: the rest are refused without a response, counted, logged
 * once per flood and raised as `commands_flood`, cleared by `tick` or the
 * next command once none was refused for a minute), applies settings through
 * `LiveSettings` (validated as the config file is; persisted first when
 * asked, so that a file that cannot be written changes nothing), runs
 * requests, answers each command on its reply topic, and logs who changed
 * what. A handler that throws never takes the daemon down: the error
 * becomes the response.
 */
export class CommandHandler {
  private readonly limiter: RateLimiter;
  private counters = { accepted: 0, refused: 0, rateLimited: 0 };
  private lastLimitedAt = Number.NEGATIVE_INFINITY;
  private flooding = false;
  /** Settings commands run one after another: each is checked against the result of the one before. */
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly hooks: CommandHooks) {
    this.limiter = new RateLimiter(hooks.ratePerS, Math.max(BURST, hooks.ratePerS));
  }

  stats(): CommandCounters {
    return { ...this.counters };
  }

  /**
   * Clears `commands_flood` once no command was refused by the rate limit
   * for 60 s (`now`: `performance.now()` in ms). The daemon calls it from a
   * timer, so the problem ends when the flood does, not at the next command.
   */
  tick(now: number = performance.now()): void {
    if (this.flooding && now - this.lastLimitedAt >= FLOOD_CLEAR_MS) {
      this.flooding = false;
      this.hooks.log.info({ rate: this.hooks.ratePerS }, 'command flood over');
      this.hooks.problems.clear(PROBLEM.commandsFlood);
    }
  }

  /** Handles one message from a command topic (`now`: `performance.now()` in ms). Never throws. */
  handle(msg: IncomingMessage, now: number = performance.now()): void {
    const h = this.hooks;
    this.tick(now);
    if (!this.limiter.take(now)) {
      this.counters.rateLimited++;
      this.lastLimitedAt = now;
      if (!this.flooding) {
        this.flooding = true;
        const message = `more than ${h.ratePerS} commands per second arrived (bursts of ${BURST}): the rest are refused`;
        h.log.warn({ topic: msg.topic, rate: h.ratePerS }, `${message}; further refusals are counted in stats, not logged`);
        h.problems.raise(PROBLEM.commandsFlood, message, 'find the client that sends so many commands, or raise mqtt.command_rate', 'warning');
      }
      return;
    }
    const cmd = parseCommand(h.base, msg);
    if (cmd.kind === 'refused') {
      this.counters.refused++;
      h.log.warn({ topic: msg.topic, by: cmd.by }, `command refused: ${cmd.error}`);
      if (cmd.reply) h.respond(cmd.reply, this.response(cmd.name, cmd.id, { ok: false, error: cmd.error }));
      return;
    }
    const who = cmd.by ?? 'an unnamed client';
    if (cmd.kind === 'request') {
      this.counters.accepted++;
      h.log.info({ command: cmd.command, by: cmd.by }, `request ${cmd.command} from ${who}`);
      void h.request(cmd.command, cmd.reply, cmd.id).then(
        (result) => {
          if (result !== ANSWERED_LATER) h.respond(cmd.reply, this.response(cmd.name, cmd.id, { ok: true, result }));
        },
        (err: unknown) => {
          h.log.warn({ command: cmd.command, by: cmd.by }, `request ${cmd.command} failed: ${(err as Error).message}`);
          h.respond(cmd.reply, this.response(cmd.name, cmd.id, { ok: false, error: (err as Error).message }));
        },
      );
      return;
    }
    this.queue = this.queue.then(async () => {
      try {
        const checked = h.settings.check(cmd.patch);
        if (cmd.persist) {
          if (checked.changes.some((c) => c.path === undefined))
            throw new Error('paused is not a config key: it cannot be persisted (send it without persist)');
          if (h.configFile === undefined) throw new Error('persist: the daemon runs without a config file (--config): there is nothing to write to');
          await persistSettings(h.configFile, LiveSettings.fileChanges(checked));
        }
        h.settings.commit(checked);
        h.apply(checked);
        this.counters.accepted++;
        const what = checked.changes.map((c) => `${c.key} ${JSON.stringify(c.from)} → ${JSON.stringify(c.to)}`).join(', ') || 'nothing changed';
        h.log.info(
          { by: cmd.by, command: cmd.name, changes: checked.changes, persisted: cmd.persist },
          `settings changed by ${who}: ${what}${cmd.persist ? ` (written to ${h.configFile})` : ''}`,
        );
        h.respond(cmd.reply, this.response(cmd.name, cmd.id, { ok: true, result: { settings: h.settings.payload(), persisted: cmd.persist } }));
      } catch (err) {
        this.counters.refused++;
        const error = err instanceof ConfigError ? err.problems.join('; ') : (err as Error).message;
        h.log.warn({ by: cmd.by, command: cmd.name }, `settings from ${who} refused: ${error}`);
        h.respond(cmd.reply, this.response(cmd.name, cmd.id, { ok: false, error }));
      }
    });
  }

  /** A response payload (also used by the supervisor to answer `request/reload`). */
  response(command: string, id: string | number | undefined, body: { ok: boolean; error?: string; result?: unknown }): ResponsePayload {
    return { command, ...(id !== undefined ? { id } : {}), ...body, time: new Date().toISOString() };
  }
}
