import t from 'tap';
import { loadConfig } from '../../src/config/load.js';
import { silentLogger } from '../../src/core/log.js';
import { ProblemRegistry } from '../../src/core/problems.js';
import type { IncomingMessage } from '../../src/mqtt/commands.js';
import { CommandHandler } from '../../src/service/command-handler.js';
import { LiveSettings } from '../../src/service/live-settings.js';
import { buildDaemon, daemonConfig, json } from '../helpers/daemon-mqtt.js';

const base = 'edge-classifier/dev1';

t.test('commands_flood: raised when the rate limit refuses commands, cleared a minute after the last refusal without another command', async (t) => {
  const problems = new ProblemRegistry();
  const handler = new CommandHandler({
    base,
    settings: new LiveSettings(loadConfig({ env: {} })),
    ratePerS: 5,
    log: silentLogger(),
    problems,
    apply: () => {},
    request: () => Promise.resolve({}),
    respond: () => {},
  });
  const msg: IncomingMessage = { topic: `${base}/request/get_config`, payload: Buffer.from('{}'), retain: false };
  const t0 = 1_000;
  for (let i = 0; i < 30; i++) handler.handle(msg, t0);
  t.match(handler.stats(), { accepted: 20, rateLimited: 10 }, 'a burst of 20 passes, the rest is refused');
  t.match(problems.list(), [{ id: 'commands_flood', severity: 'warning' }]);
  handler.tick(t0 + 59_999);
  t.ok(problems.has('commands_flood'), 'still raised just under a minute after the last refusal');
  handler.tick(t0 + 60_000);
  t.same(problems.list(), [], 'cleared a minute after the last refusal, no command needed');
  for (let i = 0; i < 30; i++) handler.handle(msg, t0 + 70_000);
  t.ok(problems.has('commands_flood'), 'a new flood raises it again');
});

t.test('a daemon after a command flood: commands_flood leaves <base>/problems about a minute after the flood, with no further command', async (t) => {
  const b = await buildDaemon(t, daemonConfig(null));
  const floodIn = (m: { topic: string; payload: string }) => m.topic === `${b.base}/problems` && JSON.stringify(json(m)).includes('commands_flood');
  for (let i = 0; i < 80; i++) b.rec.client.publish(`${b.base}/request/get_config`, '{}', { qos: 0 });
  const raised = await b.rec.waitFor(floodIn, 10_000, 'commands_flood raised');
  const at = Date.now();
  const cleared = await b.rec.waitFor(
    (m) => m.topic === `${b.base}/problems` && b.rec.messages.indexOf(m) > b.rec.messages.indexOf(raised),
    75_000,
    'the problem list after the flood',
  );
  t.same(json(cleared).problems, [], 'no problem left');
  t.ok(Date.now() - at >= 50_000, `cleared ${Math.round((Date.now() - at) / 1000)} s after it was raised, not at once`);
  t.equal(b.rec.messages.filter((m) => m.topic.startsWith(`${b.base}/request/`)).length, 80, 'no command sent meanwhile');
});
