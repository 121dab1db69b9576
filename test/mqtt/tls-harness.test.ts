import { readFile } from 'node:fs/promises';
import { connect } from 'mqtt';
import t from 'tap';
import { startMosquitto, tempDir, writePasswordFile } from '../helpers/mosquitto.js';
import { makePki, tlsListener } from '../helpers/tls.js';

// The harness itself, checked with a plain mqtt.js client: the daemon's own TLS tests build on it.
t.test('mosquitto with the test CA: valid, wrong CA, expired, client certificate, password', async (t) => {
  const pki = await makePki(t);
  const passwd = `${await tempDir(t)}/passwd`;
  await writePasswordFile(passwd, { edge: 'secret' });
  const broker = await startMosquitto(t, { config: tlsListener(pki, { requireCertificate: true, passwordFile: passwd }) });
  const expired = await startMosquitto(t, { config: tlsListener(pki, { expired: true }) });
  const url = `mqtts://127.0.0.1:${broker.port}`;
  const [ca, otherCa, cert, key] = await Promise.all([pki.ca, pki.otherCa, pki.clientCert, pki.clientKey].map((f) => readFile(f)));

  const attempt = (u: string, opts: Record<string, unknown>) =>
    new Promise<string>((resolve) => {
      const c = connect(u, { reconnectPeriod: 0, connectTimeout: 3000, ...opts });
      c.once('connect', () => {
        c.end(true);
        resolve('connected');
      });
      c.once('error', (err) => {
        c.end(true);
        resolve(`${(err as NodeJS.ErrnoException).code ?? ''} ${err.message}`);
      });
    });
  t.equal(await attempt(url, { ca, cert, key, username: 'edge', password: 'secret' }), 'connected');
  t.match(
    await attempt(url, { ca: otherCa, cert, key, username: 'edge', password: 'secret' }),
    /self[- ]signed certificate in certificate chain|unable to verify|UNABLE_TO_VERIFY/i,
  );
  t.match(await attempt(url, { ca, cert, key, username: 'edge', password: 'wrong' }), /Not authorized|Bad username or password/);
  t.match(
    await attempt(url, { ca, username: 'edge', password: 'secret' }),
    /alert|certificate required|ECONNRESET|socket disconnected/i,
    'no client certificate',
  );
  t.match(await attempt(`mqtts://127.0.0.1:${expired.port}`, { ca }), /CERT_HAS_EXPIRED|certificate has expired/);
});
