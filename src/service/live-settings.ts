import { ConfigError, validateConfig } from '../config/load.js';
import type { SettingChange } from '../config/persist.js';
import type { Config } from '../config/schema.js';
import { describeValue } from '../core/errors.js';
import type { SettingsPatch } from '../mqtt/commands.js';
import type { SettingsPayload } from '../mqtt/topics.js';

/** GPIO rule keys that can change while running. */
const GPIO_LIVE_KEYS = ['min_score', 'hold_ms'] as const;

/** One accepted change, with its key as the config file names it. */
interface AppliedChange {
  /** Dotted config key, e.g. `inference.threshold`, `gpio.rules[0].min_score`; `paused` for pause. */
  readonly key: string;
  /** Key path in the config file (absent for `paused`, which is not a config key). */
  readonly path?: readonly (string | number)[];
  readonly from: unknown;
  readonly to: unknown;
}

/** The outcome of `LiveSettings.check`: the configuration with the patch applied, and what changes. */
export interface CheckedPatch {
  readonly config: Config;
  readonly paused: boolean;
  readonly changes: readonly AppliedChange[];
}

const dotted = (keys: readonly (string | number)[]): string =>
  keys.reduce<string>((acc, k) => (typeof k === 'number' ? `${acc}[${k}]` : acc ? `${acc}.${k}` : k), '');

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/**
 * The settings that `<base>/set` changes while the daemon runs, kept as a
 * whole configuration so that every change is validated by the same schema
 * — and refused with the same messages — as the config file.
 *
 * `check(patch)` maps a patch (keys as in `<base>/settings`) onto config
 * keys (`threshold` → `inference.threshold`, `state.min_frames`,
 * `gpio.17.min_score` → `gpio.rules[i].min_score` of the rule on BCM 17),
 * validates the resulting configuration and returns it with the list of
 * changes — or throws a `ConfigError` and changes nothing. `commit` makes
 * a checked patch the current settings. `paused` is a runtime setting only.
 */
export class LiveSettings {
  private config: Config;
  private pausedNow = false;

  constructor(config: Config) {
    this.config = config;
  }

  /** The configuration in force, live changes included. */
  get current(): Config {
    return this.config;
  }

  get paused(): boolean {
    return this.pausedNow;
  }

  /**
   * Validates `patch` against the current settings.
   * @throws ConfigError naming each bad key (config key names), what was
   *   expected and what came.
   */
  check(patch: SettingsPatch): CheckedPatch {
    const candidate = structuredClone(this.config) as unknown as Record<string, Record<string, unknown>>;
    const problems: string[] = [];
    const paths: (string | number)[][] = [];
    const set = (path: (string | number)[], value: unknown): void => {
      // A JSON body may hold a key named __proto__: never assign through it.
      if (path.some((k) => k === '__proto__' || k === 'constructor' || k === 'prototype')) {
        problems.push(`${dotted(path)}: unknown key`);
        return;
      }
      let node: Record<string | number, unknown> = candidate;
      for (const k of path.slice(0, -1)) node = node[k] as Record<string | number, unknown>;
      node[path[path.length - 1]!] = value;
      paths.push(path);
    };
    let paused = this.pausedNow;
    if (patch.paused !== undefined) {
      if (typeof patch.paused !== 'boolean') problems.push(`paused: expected true or false, but received ${describeValue(patch.paused)}`);
      else paused = patch.paused;
    }
    if (patch.threshold !== undefined) set(['inference', 'threshold'], patch.threshold);
    if (patch.top_k !== undefined) set(['inference', 'top_k'], patch.top_k);
    if (patch.prediction_interval_ms !== undefined) set(['mqtt', 'prediction_interval_ms'], patch.prediction_interval_ms);
    for (const [k, v] of Object.entries(patch.state ?? {})) set(['state', k], v);
    const rules = this.config.gpio.rules;
    for (const [pinText, values] of Object.entries(patch.gpio ?? {})) {
      const index = rules.findIndex((r) => String(r.pin) === pinText);
      if (index < 0) {
        problems.push(`gpio.${pinText}: no GPIO rule drives BCM pin ${pinText} (configured: ${rules.map((r) => r.pin).join(', ') || 'none'})`);
        continue;
      }
      for (const [k, v] of Object.entries(values)) {
        if (!(GPIO_LIVE_KEYS as readonly string[]).includes(k)) {
          problems.push(`gpio.rules[${index}].${k}: cannot be set while running (expected one of: ${GPIO_LIVE_KEYS.join(', ')})`);
          continue;
        }
        set(['gpio', 'rules', index, k], v);
      }
    }
    let config: Config;
    try {
      config = validateConfig(candidate);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      throw new ConfigError([...problems, ...err.problems]);
    }
    if (problems.length > 0) throw new ConfigError(problems);
    const changes: AppliedChange[] = [];
    const valueAt = (root: unknown, path: readonly (string | number)[]): unknown =>
      path.reduce<unknown>((node, k) => (node as Record<string | number, unknown> | undefined)?.[k], root);
    for (const path of paths) {
      const from = valueAt(this.config, path);
      const to = valueAt(config, path);
      if (!same(from, to)) changes.push({ key: dotted(path), path, from, to });
    }
    if (paused !== this.pausedNow) changes.push({ key: 'paused', from: this.pausedNow, to: paused });
    return { config, paused, changes };
  }

  /** Makes a checked patch the current settings. */
  commit(checked: CheckedPatch): void {
    this.config = checked.config;
    this.pausedNow = checked.paused;
  }

  /** The config file edits of a checked patch (every change but `paused`). */
  static fileChanges(checked: CheckedPatch): SettingChange[] {
    return checked.changes.filter((c) => c.path !== undefined).map((c) => ({ path: c.path!, value: c.to }));
  }

  /** The `<base>/settings` payload of the settings in force, made at `now`. */
  payload(now: Date = new Date()): SettingsPayload {
    const c = this.config;
    const gpio: Record<string, { min_score: number; hold_ms: number }> = {};
    for (const r of c.gpio.rules) gpio[String(r.pin)] = { min_score: r.min_score, hold_ms: r.hold_ms };
    return {
      time: now.toISOString(),
      paused: this.pausedNow,
      threshold: c.inference.threshold,
      top_k: c.inference.top_k,
      prediction_interval_ms: c.mqtt.prediction_interval_ms,
      state: {
        min_score: c.state.min_score,
        hysteresis: c.state.hysteresis,
        min_frames: c.state.min_frames,
        window_frames: c.state.window_frames ?? c.state.min_frames,
        min_dwell_ms: c.state.min_dwell_ms,
        expire_after_s: c.state.expire_after_s,
        labels: { ...c.state.labels },
      },
      gpio,
    };
  }
}
