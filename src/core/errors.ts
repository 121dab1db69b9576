/**
 * The two phrasings every stage uses for errors a person has to act on, in
 * the style of sharp's `lib/is.mjs` (`invalidParameterError`): a bad option
 * names the option, what was expected and what came; a file that cannot be
 * read names the file, what the system said and what to do.
 */

/**
 * A short description of a received value for messages: `"tpu"` (strings
 * quoted), `3`, `null`, `a list of 2`, `a mapping`, `nothing` (undefined);
 * long values are cut at 60 characters.
 */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return `a list of ${value.length}`;
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  const s = JSON.stringify(value) ?? String(value);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/**
 * The one phrasing of a bad option or argument:
 * `<name>: expected <expected>, but received <actual>`, e.g.
 * `fps meter windowMs: expected a positive number of ms, but received 0`.
 * The configuration's own messages (`config/load.ts`) read the same way, with
 * the file line or flag appended.
 */
export function invalidParameterError(name: string, expected: string, actual: unknown): RangeError {
  return new RangeError(`${name}: expected ${expected}, but received ${describeValue(actual)}`);
}

/** What the system's error code means for a person, and what they can do about it. */
const FILE_ERRORS: Record<string, { said: string; todo?: string }> = {
  ENOENT: { said: 'no such file' },
  ENOTDIR: { said: 'a folder on its path is a file' },
  EISDIR: { said: 'it is a folder, not a file' },
  EACCES: { said: 'permission denied', todo: 'make it readable by the user the daemon runs as' },
  EPERM: { said: 'operation not permitted', todo: 'make it readable by the user the daemon runs as' },
  ELOOP: { said: 'too many symbolic links' },
  EMFILE: { said: 'too many open files', todo: 'raise LimitNOFILE= of the service' },
};

/**
 * The one phrasing of a file that cannot be read:
 * `cannot read <what> <path>: <what the system said>[: <what to do>]`, e.g.
 * `cannot read the model file /x.tflite: no such file` or
 * `cannot read the labels file l.txt: permission denied: make it readable by
 * the user the daemon runs as`. `todo` overrides the hint of the error code.
 * The original error is the `cause`.
 */
export function unreadableFileError(what: string, path: string, err: unknown, todo?: string): Error {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const known = code !== undefined ? FILE_ERRORS[code] : undefined;
  const said = known?.said ?? (err instanceof Error ? err.message : String(err));
  const hint = todo ?? known?.todo;
  return new Error(`cannot read ${what} ${path}: ${said}${hint ? `: ${hint}` : ''}`, { cause: err });
}

/**
 * A part of the program that cannot be loaded on this machine: a native
 * module built for another platform, arch or Node.js ABI (sharp, the TFLite
 * binding, onoff's epoll). Restarting will not help, so the process shell
 * exits with 78 (EX_CONFIG), which the systemd unit does not restart on.
 * `part` names it (`sharp`), the message says what to do.
 */
export class NotLoadableError extends Error {
  override readonly name = 'NotLoadableError';
  constructor(
    readonly part: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
