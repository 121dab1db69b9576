import { createRequire } from 'node:module';

/** The shared library that holds sd_notify(3); on every systemd machine (Debian's libsystemd0). */
const LIBSYSTEMD = 'libsystemd.so.0';

/**
 * sd_notify(3) sends `state` (newline-separated `KEY=VALUE` fields) as one
 * datagram to `$NOTIFY_SOCKET`, from this process, so systemd sees our own
 * pid in the credentials (`NotifyAccess=main` works). Returns > 0 when sent,
 * 0 when `NOTIFY_SOCKET` is unset, a negative errno on failure.
 */
export type SdNotifyFunction = (state: string) => number;

let cached: { fn?: SdNotifyFunction; error?: string } | undefined;

/**
 * Loads `sd_notify()` from libsystemd through koffi (FFI), once per process.
 * Synchronous and cheap per call (one sendmsg(2)), so no helper process is
 * spawned per message. libsystemd reads `NOTIFY_SOCKET` from the process's
 * real environment (getenv), which Node.js keeps in step with `process.env`.
 * @returns the function, or `{error}` saying why it cannot be used (no
 * libsystemd on a non-systemd machine, koffi missing for this platform).
 */
export function loadSdNotify(library = LIBSYSTEMD): { fn?: SdNotifyFunction; error?: string } {
  if (cached && library === LIBSYSTEMD) return cached;
  let result: { fn?: SdNotifyFunction; error?: string };
  try {
    // koffi is CommonJS; createRequire keeps it out of the ES module graph until needed.
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
    const lib = koffi.load(library);
    const sdNotify = lib.func('int sd_notify(int unset_environment, const char *state)') as (unset: number, state: string) => number;
    result = { fn: (state: string) => sdNotify(0, state) };
  } catch (err) {
    result = { error: (err as Error).message.split('\n')[0] };
  }
  if (library === LIBSYSTEMD) cached = result;
  return result;
}
