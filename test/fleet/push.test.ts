/** Where a pushed host ended, from what the device printed: a refused activation, and when a device that lost its link has settled. */

import t from 'tap';
import type { ReleaseList } from '../../src/fleet/device.js';
import { activationStatus, deviceSettled, installSettleRule } from '../../src/fleet/push.js';

t.test('an activation refused before any switch is "refused", not "rolled back"', async (t) => {
  // The JSON `release activate --json` prints when a check refuses it (lock, not installed, Node.js ABI): no switch, no `action`.
  for (const check of ['lock', 'not-installed', 'node-abi'])
    t.equal(activationStatus(1, { ok: false, check, reason: `${check} refused`, fix: null }), 'refused', check);
  const switched = { ok: false, action: 'activate', target: '1.1.0', previous: '1.0.0', check: 'health', reason: 'not healthy within 60 s' };
  t.equal(activationStatus(1, { ...switched, rolled_back: true, rollback_healthy: true, healthy_at_end: true }), 'rolled back');
  t.equal(activationStatus(3, { ...switched, rolled_back: true, rollback_healthy: false, healthy_at_end: false }), 'rollback unhealthy');
  t.equal(activationStatus(3, { ...switched, previous: null, rolled_back: false, healthy_at_end: false }), 'rollback unhealthy');
  t.equal(
    activationStatus(1, { ...switched, previous: null, rolled_back: false, healthy_at_end: false }),
    'failed',
    'a gate failed with nothing to go back to',
  );
});

t.test('a link lost during release install settles on the event of that install', async (t) => {
  const event = (e: Record<string, unknown>) => ({ at: '2026-01-01T00:00:00.000Z', ...e });
  const before = event({ event: 'activated', version: '1.0.0' });
  const list = (history: Record<string, unknown>[], releases = ['1.0.0']): ReleaseList => ({
    current: '1.0.0',
    previous: null,
    releases: releases.map((version) => ({ version })),
    history,
  });
  // The list fleet read before `release install 1.1.0`: the device ran 1.0.0, its last event a switch's final one.
  const rule = installSettleRule(list([before]), '1.1.0');
  t.notOk(deviceSettled(list([before]), rule), 'still installing: the last event is the one before the command, though final for a switch');
  t.ok(deviceSettled(list([before, event({ event: 'installed', version: '1.1.0' })], ['1.0.0', '1.1.0']), rule), 'installed');
  t.ok(deviceSettled(list([before, event({ event: 'install-failed', version: '1.1.0', check: 'self-test' })]), rule), 'refused');
  t.ok(deviceSettled(list([before], ['1.0.0', '1.1.0']), rule), 'already installed: no event, but listed');
  const oldInstall = event({ event: 'install-failed', version: '0.9.0' });
  t.notOk(deviceSettled(list([oldInstall]), installSettleRule(list([oldInstall]), '1.1.0')), 'an install event from before the command does not count');
  t.notOk(deviceSettled(undefined, rule), 'no list read');
  // A switch settles on its own final events only.
  const sw = { events: new Set(['activated', 'rolled-back', 'activation-failed']) };
  t.notOk(deviceSettled(list([before, event({ event: 'activating', version: '1.1.0' })]), sw));
  t.ok(deviceSettled(list([before, event({ event: 'rolled-back', version: '1.1.0', to: '1.0.0' })]), sw));
});
