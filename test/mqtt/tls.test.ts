import t, { type Test } from 'tap';
import { ProblemRegistry } from '../../src/core/problems.js';
import { MqttPublisher, type MqttPublisherOptions } from '../../src/mqtt/publisher.js';
import { startMosquitto, tempDir, writePasswordFile } from '../helpers/mosquitto.js';
import { recordMqtt } from '../helpers/mqtt-recorder.js';
import { capturingLogger } from '../helpers/recording.js';
import { makePki, type Pki, tlsListener } from '../helpers/tls.js';

// TLS and authentication against a real mosquitto with a CA, certificates and a password file made by the test.
// Each failure must give one clear log line with a hint, keep retrying, raise a problem, and never crash.

let n = 0;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function publisher(t: Test, url: string, extra: Partial<MqttPublisherOptions>) {
  const { log, lines } = capturingLogger('debug');
  const problems = new ProblemRegistry();
  const pub = new MqttPublisher({
    url,
    clientId: `tls-${process.pid}-${++n}`,
    baseTopic: `edge-classifier/tls-${process.pid}-${n}`,
    keepalive: 30,
    qos: 1,
    predictionMinIntervalMs: 0,
    reconnectPeriodMs: 150,
    connectTimeoutMs: 2000,
    waitForConnect: false,
    log,
    problems,
    ...extra,
  });
  t.teardown(() => pub.stop());
  return { pub, lines, problems };
}

/** Log lines at warn about the broker, and how many attempts were logged at all (warn + debug repeats). */
function attempts(lines: Array<Record<string, unknown>>, match: RegExp) {
  const all = lines.filter((l) => typeof l.msg === 'string' && match.test(l.msg));
  return { warnings: all.filter((l) => l.level === 40).map((l) => l.msg as string), count: all.length };
}

async function until(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

t.test('TLS with a client certificate and a password file', async (t) => {
  const pki: Pki = await makePki(t);
  const passwd = `${await tempDir(t)}/passwd`;
  await writePasswordFile(passwd, { edge: 'secret' });
  const broker = await startMosquitto(t, { config: tlsListener(pki, { requireCertificate: true, passwordFile: passwd }) });
  const url = `mqtts://127.0.0.1:${broker.port}`;
  const tls = { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey };

  t.test('valid: connects and publishes online', async (t) => {
    const { pub, problems } = publisher(t, url, { tls, username: 'edge', password: 'secret', waitForConnect: true });
    await pub.start();
    const rec = await recordMqtt(t, url, `${pub.topics.availability}`, {
      ca: await readPem(pki.ca),
      cert: await readPem(pki.clientCert),
      key: await readPem(pki.clientKey),
      username: 'edge',
      password: 'secret',
    });
    const m = await rec.waitFor(() => true);
    t.same([m.payload, m.retain], ['online', true]);
    t.same(problems.list(), []);
  });

  t.test('wrong CA: one warning naming mqtt.tls.ca, retries, a problem', async (t) => {
    const { pub, lines, problems } = publisher(t, url, { tls: { ...tls, ca: pki.otherCa }, username: 'edge', password: 'secret' });
    await pub.start();
    await until('3 attempts', () => attempts(lines, /not signed by a CA this device trusts/).count >= 3);
    const a = attempts(lines, /not signed by a CA this device trusts/);
    t.equal(a.warnings.length, 1);
    t.match(
      a.warnings[0],
      `MQTT broker ${url}: its TLS certificate is not signed by a CA this device trusts (self-signed certificate in certificate chain): mqtt.tls.ca (${pki.otherCa}) is not the CA`,
    );
    t.match(problems.list(), [{ id: 'broker_unreachable', severity: 'error', hint: /mqtt\.tls\.ca/ }]);
    t.equal(pub.connected, false);
  });

  t.test('wrong password: refused with the credentials hint', async (t) => {
    const { pub, lines, problems } = publisher(t, url, { tls, username: 'edge', password: 'wrong' });
    await pub.start();
    await until('3 attempts', () => attempts(lines, /the connection was refused/).count >= 3);
    const a = attempts(lines, /the connection was refused/);
    t.equal(a.warnings.length, 1);
    t.match(a.warnings[0], /\(Connection refused: (Not authorized|Bad username or password)\): check mqtt\.username \/ EDGE_CLASSIFIER_MQTT_PASSWORD/);
    t.match(problems.list(), [{ id: 'broker_refused', severity: 'error' }]);
    t.notOk(JSON.stringify(lines).includes('wrong'), 'the password is never logged');
  });

  t.test('no client certificate where the broker requires one', async (t) => {
    const { pub, lines } = publisher(t, url, { tls: { ca: pki.ca }, username: 'edge', password: 'secret' });
    await pub.start();
    await until('2 attempts', () => attempts(lines, new RegExp(`MQTT broker ${url.replace(/[.]/g, '\\.')}:`)).count >= 2);
    const [w] = attempts(lines, /MQTT broker/).warnings;
    t.equal(
      w,
      `MQTT broker ${url}: it ended the TLS handshake (TLS alert: certificate required): ` +
        'the broker requires a client certificate: set mqtt.tls.cert and mqtt.tls.key; retrying every 150 ms',
    );
  });
});

t.test('an expired broker certificate', async (t) => {
  const pki = await makePki(t);
  const broker = await startMosquitto(t, { config: tlsListener(pki, { expired: true }) });
  const url = `mqtts://127.0.0.1:${broker.port}`;
  const { pub, lines, problems } = publisher(t, url, { tls: { ca: pki.ca } });
  await pub.start();
  await until('3 attempts', () => attempts(lines, /has expired/).count >= 3);
  const a = attempts(lines, /has expired/);
  t.equal(a.warnings.length, 1);
  t.match(
    a.warnings[0],
    `MQTT broker ${url}: its TLS certificate has expired (certificate has expired): renew the broker's certificate; if it is valid, check this device's clock`,
  );
  t.equal(problems.list()[0]?.id, 'broker_unreachable');
});

t.test('mqtts:// to a plain MQTT port says the port does not speak TLS', async (t) => {
  const broker = await startMosquitto(t);
  const url = `mqtts://127.0.0.1:${broker.port}`;
  const { pub, lines } = publisher(t, url, {});
  await pub.start();
  await until('2 attempts', () => attempts(lines, /does not speak TLS/).count >= 2);
  const [w] = attempts(lines, /does not speak TLS/).warnings;
  t.equal(
    w,
    `MQTT broker ${url}: the port does not speak TLS: the connection was closed during the TLS handshake (read ECONNRESET): ` +
      'use mqtt:// for a plain MQTT port, or the port where the broker listens with TLS (often 8883); retrying every 150 ms',
  );
});

async function readPem(file: string): Promise<Buffer> {
  const { readFile } = await import('node:fs/promises');
  return readFile(file);
}
