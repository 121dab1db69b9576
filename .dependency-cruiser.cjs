/**
 * The import rule of src/, checked by `npm test`:
 *
 *   core  ←  stages (camera, inference, mqtt, gpio, snapshot, stats)  ←  config  ←  service  ←  release  ←  cli.ts
 *   core  ←  inference  ←  evaluation  ←  cli.ts
 *
 * release/ (pack, install, activate, model install, health, doctor) runs the
 * program as child processes and reads what the daemon writes; nothing below
 * it imports it.
 * A folder imports only folders to its left (and node built-ins and
 * packages). Stages do not import each other; inference/preprocess imports
 * only core (the classifier in inference owns it). No cycles anywhere.
 * The operator side, fleet/, stands apart: it imports core/ and itself, and
 * only cli.ts imports it (it reaches devices through their commands over SSH).
 */

module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', comment: 'Cycles make start order and tests depend on import order.', from: {}, to: { circular: true } },
    { name: 'core-is-the-ground', severity: 'error', comment: 'core/ imports nothing of the project.', from: { path: '^src/core/' }, to: { path: '^src/(?!core/)' } },
    {
      name: 'stages-import-only-core',
      severity: 'error',
      comment: 'A stage imports core/ and itself only: no other stage, no config/, service/ or cli.',
      from: { path: '^src/(camera|inference|mqtt|gpio|snapshot|stats)/' },
      to: { path: '^src/', pathNot: ['^src/core/', '^src/$1/'] },
    },
    {
      name: 'preprocess-imports-only-core',
      severity: 'error',
      comment: 'Preprocessing belongs to inference but stands on core alone, so new input paths (raw frames) need no engine.',
      from: { path: '^src/inference/preprocess/' },
      to: { path: '^src/', pathNot: ['^src/core/', '^src/inference/preprocess/'] },
    },
    {
      name: 'config-imports-down-only',
      severity: 'error',
      comment: 'config/ maps the configuration onto stage options: it never imports service/ or cli.',
      from: { path: '^src/config/' },
      to: { path: '^src/(service/|cli\\.ts)' },
    },
    {
      name: 'evaluation-on-inference',
      severity: 'error',
      comment: 'evaluation/ (eval, compare, reports) runs models through inference/ as the daemon does; it never imports config/, service/ or the other stages.',
      from: { path: '^src/evaluation/' },
      to: { path: '^src/(config|service|camera|mqtt|gpio)/' },
    },
    {
      name: 'evaluation-only-from-cli',
      severity: 'error',
      comment: 'Only the process shell offers the workflow commands; the daemon does not depend on them.',
      from: { path: '^src/', pathNot: ['^src/evaluation/', '^src/cli\\.ts$'] },
      to: { path: '^src/evaluation/' },
    },
    {
      name: 'release-above-service',
      severity: 'error',
      comment: 'The device-side release commands sit on top of the daemon: the daemon never imports them.',
      from: { path: '^src/(core|camera|inference|mqtt|gpio|snapshot|stats|config|service)/' },
      to: { path: '^src/release/' },
    },
    {
      name: 'fleet-stands-apart',
      severity: 'error',
      comment: 'fleet/ runs on the operator machine and drives devices through their commands over SSH: it imports core/ and itself only.',
      from: { path: '^src/fleet/' },
      to: { path: '^src/', pathNot: ['^src/core/', '^src/fleet/'] },
    },
    {
      name: 'only-cli-imports-fleet',
      severity: 'error',
      comment: 'Nothing of the device program depends on the operator side.',
      from: { path: '^src/', pathNot: ['^src/cli\\.ts$', '^src/fleet/'] },
      to: { path: '^src/fleet/' },
    },
    { name: 'service-below-cli', severity: 'error', comment: 'Nothing imports the process shell.', from: { path: '^src/' }, to: { path: '^src/cli\\.ts$' } },
    {
      name: 'src-never-imports-tests',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^test/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '^(dist|node_modules)/' },
  },
};
