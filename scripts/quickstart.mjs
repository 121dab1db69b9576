#!/usr/bin/env node
// npm start: fetch the default model and sample frames when missing (sha256
// checked), then run the daemon on them with scripts/quickstart.yaml:
// replayed frames, embedded MQTT broker, virtual GPIO, predictions printed.
// Extra arguments go to `edge-classifier run`, e.g.
//   npm start -- --source /dev/video0
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fetchAssets } from './fetch-assets.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
try {
  await fetchAssets();
} catch (err) {
  console.error(`quickstart: ${err.message}`);
  process.exit(1);
}
// A 1 MiB young generation, as the systemd unit runs it: the daemon's heap churn is small, and RSS stays low.
const args = [
  '--max-semi-space-size=1',
  path.join(root, 'dist', 'cli.js'),
  'run',
  '--config',
  path.join(root, 'scripts', 'quickstart.yaml'),
  '--log-predictions',
  ...process.argv.slice(2),
];
// At most 2 malloc arenas, as the systemd unit sets it (threads' arenas keep freed memory resident).
const child = spawn(process.execPath, args, { stdio: 'inherit', env: { MALLOC_ARENA_MAX: '2', ...process.env } });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
// The terminal went away: stop the daemon (to the daemon itself SIGHUP means "reload").
process.on('SIGHUP', () => child.kill('SIGTERM'));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
