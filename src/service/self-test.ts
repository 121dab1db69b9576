import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { classifierOptions } from '../config/options.js';
import type { Config } from '../config/schema.js';
import { NotLoadableError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { createGpioBackend } from '../gpio/backends.js';
import { Classifier } from '../inference/classifier.js';
import { loadSharp } from '../inference/preprocess/preprocess.js';

/** Where a release keeps the list of its program files with their sha256 (written by `pack`). */
const PROGRAM_FILES = 'program-files.json';

/**
 * Checks that a release's program files are all there and unchanged, from
 * the list `pack` stores in the release (`program-files.json`: path →
 * sha256 for `dist/**` and `package.json`). A folder copied by hand that
 * lost files on the way (a dropped SSH link during rsync) is caught here
 * before any module is missing at run time. Nothing to check when the
 * program does not come from a release (a git checkout).
 * @returns one problem per missing or changed file (at most 5 named).
 */
function checkProgramFiles(programDir: string): string[] {
  const list = path.join(programDir, PROGRAM_FILES);
  if (!existsSync(list)) return [];
  let files: Record<string, string>;
  try {
    files = JSON.parse(readFileSync(list, 'utf8')) as Record<string, string>;
  } catch (err) {
    return [`release: ${list} cannot be read (${(err as Error).message}): the release is damaged; install it again`];
  }
  const bad: string[] = [];
  for (const [rel, sha] of Object.entries(files)) {
    const file = path.join(programDir, rel);
    if (!existsSync(file)) bad.push(`${rel} is missing`);
    else if (createHash('sha256').update(readFileSync(file)).digest('hex') !== sha) bad.push(`${rel} differs from the release`);
  }
  if (bad.length === 0) return [];
  const shown = bad.slice(0, 5).join(', ') + (bad.length > 5 ? ` and ${bad.length - 5} more` : '');
  return [
    `release: ${bad.length} program file${bad.length > 1 ? 's' : ''} of ${Object.keys(files).length} not as packed (${shown}): the release is incomplete (half-copied?); install it again from its archive`,
  ];
}

/**
 * Loads sharp (libvips) and decodes a small JPEG it made itself, so that a
 * sharp built for another platform, arch or Node.js fails here, naming the
 * fix, instead of at the first camera frame.
 * @returns a problem, or undefined when sharp works.
 */
async function checkSharp(): Promise<string | undefined> {
  try {
    const sharp = await loadSharp();
    const jpeg = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 200, g: 100, b: 50 } } })
      .jpeg()
      .toBuffer();
    const { info } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
    if (info.width !== 8 || info.channels !== 3) return `sharp: decoding a test JPEG gave ${info.width}x${info.height}x${info.channels}, expected 8x8x3`;
    return undefined;
  } catch (err) {
    return err instanceof NotLoadableError ? err.message : `sharp: decoding a test JPEG failed: ${(err as Error).message}`;
  }
}

/**
 * The self-test of `run --check-config --self-test`: loads everything the
 * daemon will use, in this process, the way `run` loads it — the program
 * files (against the release's list), sharp, the TFLite library with the
 * configured model on the configured engine (a worker thread; an Edge TPU
 * delegate is probed in a child process first), and the GPIO backend
 * `gpio.backend` selects. It opens no camera, broker or pin.
 * @returns one problem per part that cannot load, each naming the part and
 * the fix; empty when all load.
 */
export async function selfTest(config: Config, log: Logger, programDir: string): Promise<string[]> {
  const problems = checkProgramFiles(programDir);
  const sharpProblem = await checkSharp();
  if (sharpProblem) problems.push(sharpProblem);
  try {
    const classifier = new Classifier({ ...classifierOptions(config), log });
    try {
      await classifier.start();
    } finally {
      await classifier.stop();
    }
  } catch (err) {
    problems.push(`inference: the model ${config.model.path} cannot be loaded on the ${config.inference.delegate} engine: ${(err as Error).message}`);
  }
  if (config.gpio.rules.length > 0) {
    try {
      await createGpioBackend(config.gpio.backend, { log });
    } catch (err) {
      problems.push(`gpio: ${(err as Error).message}`);
    }
  }
  return problems;
}
