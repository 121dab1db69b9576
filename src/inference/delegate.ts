import { execFile } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { bundledLibraryPath } from './tflite-c.js';

/** Shared library of the Coral Edge TPU runtime (package libedgetpu1-std or libedgetpu1-max) on Linux. */
const EDGETPU_LIBRARY = 'libedgetpu.so.1';

/** Environment variable that overrides the Edge TPU library path (an absolute path or a soname). */
const EDGETPU_LIBRARY_ENV = 'EDGE_CLASSIFIER_EDGETPU_LIB';

/** Symbols every TFLite external delegate plugin exports (tensorflow/lite/delegates/external/external_delegate.cc). */
const DELEGATE_PLUGIN_SYMBOLS = ['tflite_plugin_create_delegate', 'tflite_plugin_destroy_delegate'] as const;

const INSTALL_HINT =
  "install the Edge TPU runtime (sudo apt install libedgetpu1-std from Coral's apt repository, https://coral.ai/docs/accelerator/get-started/) or set inference.delegate to cpu";

/** Directories searched after LD_LIBRARY_PATH and the ld.so cache, as the dynamic loader's defaults on Debian-family systems. */
const STANDARD_LIBRARY_DIRS = [
  '/lib/aarch64-linux-gnu',
  '/usr/lib/aarch64-linux-gnu',
  '/lib/x86_64-linux-gnu',
  '/usr/lib/x86_64-linux-gnu',
  '/lib/arm-linux-gnueabihf',
  '/usr/lib/arm-linux-gnueabihf',
  '/usr/local/lib',
  '/lib64',
  '/usr/lib64',
  '/lib',
  '/usr/lib',
];

/**
 * The Edge TPU cannot be used: its runtime library is missing, is not a TFLite
 * delegate for this machine, cannot be loaded (`runtime`: a configuration
 * that cannot work until the runtime is installed, exit 78), or the
 * accelerator could not run the model (`device`: unplugged, busy; exit 1, so
 * systemd retries). `message` says which and how to fix it.
 */
export class EdgeTpuUnavailableError extends Error {
  override readonly name = 'EdgeTpuUnavailableError';
  constructor(
    message: string,
    /** The library name or path that was looked for. */
    readonly library: string,
    readonly problem: 'runtime' | 'device',
  ) {
    super(message);
  }
}

/**
 * A TFLite external delegate plugin and its options: `path` of a library
 * exporting `tflite_plugin_create_delegate` (libedgetpu), and `options` as
 * [key, value] string pairs handed to it (e.g. ['device', 'usb:0']).
 */
export interface DelegateDescriptor {
  readonly path: string;
  readonly options: ReadonlyArray<readonly [string, string]>;
}

/** Options of `edgeTpuDelegate`. */
export interface EdgeTpuOptions {
  /**
   * Which Edge TPU: `usb`, `usb:0`, `pci`, `pci:0`, … (libedgetpu's `device`
   * option), or undefined/'' for the first one found.
   */
  readonly device?: string;
  /** The library to load; default `EDGE_CLASSIFIER_EDGETPU_LIB` or `libedgetpu.so.1`. */
  readonly libraryPath?: string;
  /** Environment for the variables above and LD_LIBRARY_PATH; default process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /** Try dlopen() in a child process (default true): catches missing dependencies such as libusb. */
  readonly dlopenProbe?: boolean;
}

const ELF_MACHINES: Record<string, number> = { x64: 62, arm64: 183, arm: 40, ia32: 3, riscv64: 243, ppc64: 21, s390x: 22 };

/**
 * Checks that the Edge TPU runtime can be loaded and returns the delegate
 * descriptor for the binding: `{path: <resolved library path>, options:
 * [['device', device]]}` (no options when no device is given).
 *
 * This check matters: on this binding a delegate library that cannot be
 * loaded does not fail cleanly — interpreter creation crashes the whole
 * process (SIGSEGV) or reports a garbage kernel error. Checks, in order:
 * 1. the library is found: an explicit path must exist; a soname is looked
 *    up like the dynamic loader does (LD_LIBRARY_PATH, `ldconfig -p`, the
 *    standard library directories);
 * 2. it is an ELF shared object for this CPU that exports the TFLite external
 *    delegate plugin symbols (`tflite_plugin_create_delegate`, …);
 * 3. `dlopen()` succeeds in a child Node.js process (`process.dlopen` with
 *    RTLD_NOW: Node answers "Module did not self-register" for a library that
 *    loaded but is not an addon), which also catches missing dependencies.
 *
 * Throws EdgeTpuUnavailableError; when the library is missing the message is
 * `libedgetpu.so.1 not found: install the Edge TPU runtime (sudo apt install
 * libedgetpu1-std from Coral's apt repository,
 * https://coral.ai/docs/accelerator/get-started/) or set inference.delegate to
 * cpu`. Throws a plain Error for a malformed `device`.
 */
export async function edgeTpuDelegate(options: EdgeTpuOptions = {}): Promise<DelegateDescriptor> {
  const env = options.env ?? process.env;
  const device = options.device ?? '';
  if (!/^((usb|pci)(:\d+)?|:\d+)?$/.test(device) && !path.isAbsolute(device)) {
    throw new Error(`inference.edgetpu_device ${JSON.stringify(device)} is not an Edge TPU device: expected usb, usb:N, pci, pci:N, :N or a device path`);
  }
  const library = options.libraryPath || env[EDGETPU_LIBRARY_ENV] || EDGETPU_LIBRARY;
  const resolved = await findSharedLibrary(library, env);
  if (!resolved) throw new EdgeTpuUnavailableError(`${library} not found: ${INSTALL_HINT}`, library, 'runtime');
  const problem = await checkDelegateLibrary(resolved);
  if (problem) throw new EdgeTpuUnavailableError(`${resolved} is not a usable Edge TPU delegate (${problem}): ${INSTALL_HINT}`, library, 'runtime');
  if (options.dlopenProbe !== false) {
    const failure = await dlopenInChild(resolved, env);
    if (failure) throw new EdgeTpuUnavailableError(`${resolved} cannot be loaded (${failure}): ${INSTALL_HINT}`, library, 'runtime');
  }
  return { path: resolved, options: device ? [['device', device]] : [] };
}

/**
 * Finds a shared library the way the dynamic loader would: a name containing
 * `/` is used as is (null when no such file); a bare name (soname) is looked
 * for in LD_LIBRARY_PATH, then in `ldconfig -p` (the ld.so cache), then in
 * `STANDARD_LIBRARY_DIRS`, keeping only ELF files built for this CPU.
 * Returns the absolute path, or null.
 */
export async function findSharedLibrary(name: string, env: NodeJS.ProcessEnv = process.env): Promise<string | null> {
  if (name.includes('/')) return isFile(name) ? path.resolve(name) : null;
  const candidates: string[] = [];
  for (const dir of (env.LD_LIBRARY_PATH ?? '').split(':')) if (dir) candidates.push(path.join(dir, name));
  for (const p of await ldconfigPaths(name)) candidates.push(p);
  for (const dir of STANDARD_LIBRARY_DIRS) candidates.push(path.join(dir, name));
  for (const candidate of candidates) {
    if (isFile(candidate) && (await elfMachine(candidate)) === ELF_MACHINES[process.arch]) return candidate;
  }
  return null;
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/** Paths that `ldconfig -p` lists for `name` (empty when ldconfig is absent or fails within 2 s). */
async function ldconfigPaths(name: string): Promise<string[]> {
  const ldconfig = ['/sbin/ldconfig', '/usr/sbin/ldconfig'].find((p) => existsSync(p));
  if (!ldconfig) return [];
  const out = await new Promise<string>((resolve) => {
    execFile(ldconfig, ['-p'], { timeout: 2000, maxBuffer: 4 * 1024 * 1024 }, (err, stdout) => resolve(err ? '' : stdout));
  });
  const paths: string[] = [];
  for (const line of out.split('\n')) {
    // "\tlibedgetpu.so.1 (libc6,AArch64) => /usr/lib/aarch64-linux-gnu/libedgetpu.so.1"
    const m = /^\s*(\S+)\s+\(.*\)\s+=>\s+(\S.*)$/.exec(line);
    if (m && m[1] === name) paths.push(m[2]!.trim());
  }
  return paths;
}

async function elfMachine(file: string): Promise<number | null> {
  try {
    const fd = await open(file, 'r');
    try {
      const head = Buffer.alloc(20);
      await fd.read(head, 0, 20, 0);
      if (head.readUInt32BE(0) !== 0x7f454c46) return null;
      return head[5] === 2 ? head.readUInt16BE(18) : head.readUInt16LE(18);
    } finally {
      await fd.close();
    }
  } catch {
    return null;
  }
}

/**
 * Why `file` cannot serve as a TFLite external delegate, or null when it
 * can: `checkSharedLibrary(file, DELEGATE_PLUGIN_SYMBOLS)`.
 */
export function checkDelegateLibrary(file: string): Promise<string | null> {
  return checkSharedLibrary(file, DELEGATE_PLUGIN_SYMBOLS);
}

/**
 * Why `file` is not an ELF shared object (type ET_DYN) for this CPU whose
 * dynamic symbol table defines every one of `symbols`, or null when it is —
 * checked without loading it. Reads the ELF header, the section headers and
 * `.dynsym`/its string table (32- or 64-bit, either byte order); when the
 * section headers are stripped, falls back to looking for the symbol names in
 * the file's bytes.
 */
export async function checkSharedLibrary(file: string, symbols: readonly string[]): Promise<string | null> {
  let b: Buffer;
  try {
    b = await readFile(file);
  } catch (err) {
    return `cannot read it: ${(err as Error).message}`;
  }
  if (b.length < 52 || b.readUInt32BE(0) !== 0x7f454c46) return 'it is not an ELF shared library';
  const is64 = b[4] === 2;
  const le = b[5] !== 2;
  const u16 = (o: number): number => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
  const u32 = (o: number): number => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const addr = (o: number): number => (is64 ? Number(le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o)) : u32(o));
  const type = u16(16);
  const machine = u16(18);
  if (type !== 3) return `it is an ELF file of type ${type}, not a shared object`;
  const expected = ELF_MACHINES[process.arch];
  if (expected !== undefined && machine !== expected) {
    return `it is built for ELF machine ${machine}, but this CPU (${process.arch}) needs ${expected}`;
  }
  const shoff = addr(is64 ? 0x28 : 0x20);
  const shentsize = u16(is64 ? 0x3a : 0x2e);
  const shnum = u16(is64 ? 0x3c : 0x30);
  const defined = new Set<string>();
  let sawDynsym = false;
  if (shoff > 0 && shnum > 0 && shoff + shnum * shentsize <= b.length) {
    const section = (i: number) => {
      const o = shoff + i * shentsize;
      return {
        type: u32(o + 4),
        offset: addr(is64 ? o + 0x18 : o + 0x10),
        size: addr(is64 ? o + 0x20 : o + 0x14),
        link: u32(is64 ? o + 0x28 : o + 0x18),
        entsize: addr(is64 ? o + 0x38 : o + 0x24),
      };
    };
    for (let i = 0; i < shnum; i++) {
      const s = section(i);
      if (s.type !== 11 /* SHT_DYNSYM */ || s.link >= shnum) continue;
      const strtab = section(s.link);
      const entsize = s.entsize || (is64 ? 24 : 16);
      if (s.offset + s.size > b.length || strtab.offset + strtab.size > b.length) break;
      sawDynsym = true;
      for (let o = s.offset; o + entsize <= s.offset + s.size; o += entsize) {
        const nameOff = u32(o);
        const shndx = is64 ? u16(o + 6) : u16(o + 14);
        if (shndx === 0 || nameOff >= strtab.size) continue; // SHN_UNDEF: imported, not defined
        const start = strtab.offset + nameOff;
        const end = b.indexOf(0, start);
        defined.add(b.toString('latin1', start, end < 0 ? strtab.offset + strtab.size : end));
      }
    }
  }
  const missing = symbols.filter((sym) => (sawDynsym ? !defined.has(sym) : !b.includes(sym)));
  return missing.length ? `it does not export ${missing.join(' and ')}` : null;
}

/** dlopen()s `file` in a child Node.js process; returns the loader's error, or null when it loaded. */
function dlopenInChild(file: string, env: NodeJS.ProcessEnv): Promise<string | null> {
  const script =
    "try { process.dlopen({ exports: {} }, process.argv[1], require('os').constants.dlopen.RTLD_NOW); }" +
    ' catch (e) { if (/did not self-register/.test(e.message)) process.exit(0); process.stderr.write(e.message); process.exit(3); }';
  const childEnv = { ...env };
  delete childEnv.NODE_OPTIONS;
  return new Promise((resolve) => {
    execFile(process.execPath, ['-e', script, file], { env: childEnv, timeout: 10_000 }, (err, _stdout, stderr) => {
      if (!err) return resolve(null);
      const e = err as Error & { killed?: boolean; signal?: string | null };
      if (e.killed) return resolve('dlopen did not return within 10 s');
      resolve(stderr.trim() || (e.signal ? `the loader was killed by ${e.signal}` : e.message));
    });
  });
}

/**
 * The child-process side of `probeDelegate`, a CommonJS script for `node -e`
 * (so it runs the same from the TypeScript sources and the built code): argv
 * = koffi's path, the TFLite C library, the model, the delegate as JSON.
 * Exit 0 when the interpreter was created and allocated with the delegate; 3
 * with the reason on stderr when TFLite or the plugin refused. A crash
 * (SIGSEGV) shows as the child's signal.
 */
const CHILD = `
process.on('uncaughtException', (e) => { process.stderr.write(String(e && e.message || e)); process.exit(3); });
const [koffiPath, libPath, modelPath, delegateJson] = process.argv.slice(1);
const koffi = require(koffiPath);
const fs = require('fs');
const d = JSON.parse(delegateJson);
const lib = koffi.load(libPath);
const f = (s) => lib.func(s);
const modelCreate = f('void *TfLiteModelCreate(const void *data, size_t size)');
const optionsCreate = f('void *TfLiteInterpreterOptionsCreate(void)');
const addDelegate = f('void TfLiteInterpreterOptionsAddDelegate(void *o, void *d)');
const create = f('void *TfLiteInterpreterCreate(void *m, void *o)');
const allocate = f('int TfLiteInterpreterAllocateTensors(void *i)');
const plugin = koffi.load(d.path);
const createDelegate = plugin.func('void *tflite_plugin_create_delegate(const char **keys, const char **values, size_t n, void *report)');
const bytes = fs.readFileSync(modelPath);
const model = modelCreate(bytes, bytes.length);
if (!model) { process.stderr.write('TFLite could not read the model'); process.exit(3); }
const delegate = createDelegate(d.options.map((o) => o[0]), d.options.map((o) => o[1]), d.options.length, null);
if (!delegate) { process.stderr.write('the plugin returned no delegate'); process.exit(3); }
const options = optionsCreate();
addDelegate(options, delegate);
const interpreter = create(model, options);
if (!interpreter) { process.stderr.write('TFLite could not create the interpreter with the delegate'); process.exit(3); }
if (allocate(interpreter) !== 0) { process.stderr.write('TFLite could not allocate the tensors with the delegate'); process.exit(3); }
`;

/**
 * Creates an interpreter for `modelPath` with `delegate` in a child Node.js
 * process, through the same TFLite C library (`library`, default the bundled
 * one), so that a delegate which crashes the interpreter (libedgetpu with no
 * Edge TPU attached, a library that is not a delegate: SIGSEGV) kills the
 * child, not the daemon. Resolves when it worked; rejects with
 * EdgeTpuUnavailableError (`device`) naming the model, the device and what
 * happened (crashed with a signal, returned no delegate, refused the model,
 * timed out). Takes about a third of a second plus the delegate's start-up.
 */
export async function probeDelegate(modelPath: string, delegate: DelegateDescriptor, library?: string, timeoutMs = 30_000): Promise<void> {
  const koffiPath = createRequire(import.meta.url).resolve('koffi');
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const device = delegate.options.find(([k]) => k === 'device')?.[1];
  const what = `the Edge TPU delegate ${delegate.path}${device ? ` (device ${device})` : ''}`;
  const args = ['-e', CHILD, koffiPath, library ?? bundledLibraryPath(), modelPath, JSON.stringify(delegate)];
  await new Promise<void>((resolve, reject) => {
    execFile(process.execPath, args, { env, timeout: timeoutMs, maxBuffer: 1024 * 1024 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const e = err as Error & { killed?: boolean; signal?: string | null };
      let message: string;
      if (e.killed) message = `${what} did not load ${modelPath} within ${timeoutMs} ms`;
      else if (e.signal) {
        message = `${what} crashed the TFLite interpreter while loading ${modelPath} (${e.signal}): is an Edge TPU attached${device ? ` as ${device}` : ''}, and is it the Edge TPU runtime?`;
      } else {
        const reason = (
          stderr
            .trim()
            .split('\n')
            .filter((l) => !/^INFO:/.test(l))[0] || e.message
        ).replace(/^ERROR:\s*/, '');
        message = `${what} could not load ${modelPath}: ${reason}`;
        if (reason.includes('edgetpu-custom-op'))
          message += ' (the delegate did not take the Edge TPU op: is an Edge TPU attached, and is the library the Edge TPU runtime?)';
        else if (/returned no delegate/.test(reason)) message += ' (is an Edge TPU attached, and is the library the Edge TPU runtime?)';
      }
      reject(new EdgeTpuUnavailableError(message, delegate.path, 'device'));
    });
  });
}
