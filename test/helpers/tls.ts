/**
 * TLS material for broker tests, made with `openssl` (Debian package
 * `openssl`) in a temporary folder: a test CA, a server certificate for
 * `localhost` / 127.0.0.1 signed by it, a client certificate signed by it,
 * an expired server certificate, and a second CA that signed nothing the
 * broker uses ("wrong CA"). EC P-256 keys, so making all of them takes a
 * fraction of a second.
 *
 *   const pki = await makePki(t);
 *   const broker = await startMosquitto(t, { config: tlsListener(pki, { requireCertificate: true }) });
 *   // connect with mqtts://127.0.0.1:PORT, ca: pki.ca, cert: pki.clientCert, key: pki.clientKey
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from './mosquitto.js';

const run = promisify(execFile);
const OPENSSL_BIN = process.env.OPENSSL_BIN ?? 'openssl';

export interface Pki {
  readonly dir: string;
  /** The CA that signed the server and client certificates (PEM path). */
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
  /** Server certificate for localhost whose validity ended a day before it began (expired). */
  readonly expiredServerCert: string;
  readonly expiredServerKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  /** Another CA: trusting it instead of `ca` must fail verification. */
  readonly otherCa: string;
}

interface TeardownTarget {
  teardown(fn: () => unknown): void;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run(OPENSSL_BIN, args, { cwd });
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`openssl ${args.slice(0, 2).join(' ')} failed: ${e.stderr?.trim() || e.message} (is the openssl package installed?)`);
  }
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function makeCa(dir: string, name: string): Promise<void> {
  await openssl(['req', '-x509', ...EC, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=edge-classifier test ${name}`], dir);
}

/** A key and certificate `name` signed by CA `ca`, valid for `days` (negative: already expired), with extensions from `ext`. */
async function makeLeaf(dir: string, ca: string, name: string, cn: string, ext: string, days: number): Promise<void> {
  await openssl(['req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], dir);
  await writeFile(path.join(dir, `${name}.ext`), ext);
  await openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${ca}.pem`,
      '-CAkey',
      `${ca}.key`,
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      String(days),
      '-extfile',
      `${name}.ext`,
    ],
    dir,
  );
}

/** Makes the CA, certificates and keys in a new temporary folder (removed in `t.teardown`). */
export async function makePki(t?: TeardownTarget): Promise<Pki> {
  const dir = await tempDir(t);
  const serverExt = 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n';
  await makeCa(dir, 'ca');
  await makeCa(dir, 'other-ca');
  await makeLeaf(dir, 'ca', 'server', 'localhost', serverExt, 2);
  await makeLeaf(dir, 'ca', 'expired-server', 'localhost', serverExt, -1);
  await makeLeaf(dir, 'ca', 'client', 'edge-classifier', 'extendedKeyUsage=clientAuth\n', 2);
  const p = (f: string) => path.join(dir, f);
  return {
    dir,
    ca: p('ca.pem'),
    serverCert: p('server.pem'),
    serverKey: p('server.key'),
    expiredServerCert: p('expired-server.pem'),
    expiredServerKey: p('expired-server.key'),
    clientCert: p('client.pem'),
    clientKey: p('client.key'),
    otherCa: p('other-ca.pem'),
  };
}

/** Options of `tlsListener`. */
export interface TlsListenerOptions {
  /** Serve the expired certificate instead of the valid one. */
  readonly expired?: boolean;
  /** Require a client certificate signed by the CA (mutual TLS). */
  readonly requireCertificate?: boolean;
  /** A Mosquitto password file (see `writePasswordFile`); anonymous clients are then refused. */
  readonly passwordFile?: string;
}

/**
 * mosquitto.conf lines that turn the listener `startMosquitto` writes into a
 * TLS listener with the PKI's server certificate (for `startMosquitto`'s
 * `config` option).
 */
export function tlsListener(pki: Pki, o: TlsListenerOptions = {}): string[] {
  const lines = [
    `cafile ${pki.ca}`,
    `certfile ${o.expired ? pki.expiredServerCert : pki.serverCert}`,
    `keyfile ${o.expired ? pki.expiredServerKey : pki.serverKey}`,
    `require_certificate ${o.requireCertificate ? 'true' : 'false'}`,
  ];
  if (o.passwordFile !== undefined) lines.push('allow_anonymous false', `password_file ${o.passwordFile}`);
  else lines.push('allow_anonymous true');
  return lines;
}
