import path from 'node:path';

/** Name of the systemd unit the release and model commands restart or reload. */
export const UNIT_NAME = 'edge-classifier.service';

/** Environment variable holding the root folder when `--root` is not given. */
const ROOT_ENV = 'EDGE_CLASSIFIER_ROOT';

/**
 * Where a device keeps its releases, state and configuration, relative to
 * one root folder (`/` on a device; a temporary folder in tests, so that a
 * whole device fits in one folder):
 *
 * ```
 * <root>/opt/edge-classifier/releases/<version>/   complete releases (program + node_modules for this machine)
 * <root>/opt/edge-classifier/current -> releases/<version>   what the unit runs (relative symlink)
 * <root>/etc/edge-classifier/config.yaml           the live configuration
 * <root>/etc/systemd/system/edge-classifier.service
 * <root>/var/lib/edge-classifier/                  state: history.jsonl, models/, samples/, engine cache
 * <root>/run/edge-classifier/health.json           written by the running daemon (tmpfs on a device)
 * ```
 *
 * Releases, `current` and the temporary install folders share one folder so
 * that every switch is a `rename(2)` within one file system.
 */
export class Layout {
  /** Absolute root folder. */
  readonly root: string;
  /** `<root>/opt/edge-classifier`. */
  readonly base: string;
  /** `<base>/releases`: one folder per installed release, plus hidden `.install-*` folders being filled. */
  readonly releases: string;
  /** `<base>/current`: symlink to `releases/<version>`. */
  readonly current: string;
  /** `<root>/etc/edge-classifier`. */
  readonly configDir: string;
  /** `<configDir>/config.yaml`: the live configuration. */
  readonly configFile: string;
  /** `<root>/var/lib/edge-classifier`. */
  readonly stateDir: string;
  /** `<stateDir>/history.jsonl`: one JSON object per release or model event. */
  readonly historyFile: string;
  /** `<stateDir>/models`: installed models and labels, named by their sha256. */
  readonly modelsDir: string;
  /** `<stateDir>/samples`: frames of this device used by the self-tests (optional). */
  readonly samplesDir: string;
  /** `<stateDir>/operation.lock`: held while a release or model command changes the device. */
  readonly lockFile: string;
  /** `<root>/run/edge-classifier`: the unit's `RuntimeDirectory=`. */
  readonly runtimeDir: string;
  /** `<runtimeDir>/health.json`. */
  readonly healthFile: string;
  /** `<root>/etc/systemd/system/edge-classifier.service`. */
  readonly unitFile: string;

  constructor(root: string = '/') {
    this.root = path.resolve(root);
    const at = (...parts: string[]) => path.join(this.root, ...parts);
    this.base = at('opt', 'edge-classifier');
    this.releases = path.join(this.base, 'releases');
    this.current = path.join(this.base, 'current');
    this.configDir = at('etc', 'edge-classifier');
    this.configFile = path.join(this.configDir, 'config.yaml');
    this.stateDir = at('var', 'lib', 'edge-classifier');
    this.historyFile = path.join(this.stateDir, 'history.jsonl');
    this.modelsDir = path.join(this.stateDir, 'models');
    this.samplesDir = path.join(this.stateDir, 'samples');
    this.lockFile = path.join(this.stateDir, 'operation.lock');
    this.runtimeDir = at('run', 'edge-classifier');
    this.healthFile = path.join(this.runtimeDir, 'health.json');
    this.unitFile = at('etc', 'systemd', 'system', UNIT_NAME);
  }

  /** Folder of release `version`. */
  release(version: string): string {
    return path.join(this.releases, version);
  }

  /** Maps an absolute device path (`/opt/...`) into this root. */
  inRoot(devicePath: string): string {
    return path.join(this.root, devicePath);
  }
}

/** The layout for `--root` when given, else `$EDGE_CLASSIFIER_ROOT`, else `/`. */
export function layoutFor(rootFlag: string | undefined, env: NodeJS.ProcessEnv = process.env): Layout {
  const root = rootFlag ?? env[ROOT_ENV];
  return new Layout(root === undefined || root === '' ? '/' : root);
}

/**
 * A release version as used in folder and archive names: letters, digits,
 * `.`, `_`, `+`, `-`, starting with a letter or digit, at most 64 characters
 * (semver such as `1.4.0-rc.1+git.6d0cd66` fits).
 * @throws Error naming what came when it is not one.
 */
export function checkVersion(version: string): string {
  if (!/^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$/.test(version)) {
    throw new Error(
      `release version ${JSON.stringify(version)} is not usable: expected letters, digits, '.', '_', '+', '-' (e.g. 1.4.0), starting with a letter or digit`,
    );
  }
  return version;
}
