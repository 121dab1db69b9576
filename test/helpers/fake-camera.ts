import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { repoRoot } from './assets.js';

/** The stand-in rpicam-vid program (see its header for the behaviour and the FAKE_RPICAM_* switches). */
export const FAKE_RPICAM = path.join(repoRoot, 'test', 'helpers', 'fake-rpicam-vid.mjs');

/**
 * A new folder holding an executable `rpicam-vid` that runs the stand-in with
 * this Node.js; put it first on PATH (`PATH: \`${dir}:${process.env.PATH}\``).
 */
export function fakeRpicamBin(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'ec-rpicam-bin-'));
  writeFileSync(path.join(dir, 'rpicam-vid'), `#!/bin/sh\nexec "${process.execPath}" "${FAKE_RPICAM}" "$@"\n`, { mode: 0o755 });
  return dir;
}
