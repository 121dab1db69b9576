/**
 * What went wrong when connecting to a broker, in words a user can act on.
 * mqtt.js and Node.js report `read ECONNRESET`, `self-signed certificate in
 * certificate chain` or `Connection refused: Not authorized`; these turn
 * them into a kind, a message naming the broker and a hint.
 */

/** `refused`: the broker answered CONNECT with an error; `tls`: the TLS handshake failed; `network`: anything else. */
type ConnectionErrorKind = 'refused' | 'tls' | 'network' | 'protocol';

export interface DescribedError {
  readonly kind: ConnectionErrorKind;
  /** What happened, e.g. `nothing listens there (connect ECONNREFUSED 127.0.0.1:1883)`. */
  readonly reason: string;
  /** One sentence naming the broker and what happened: `MQTT broker <url>: <reason>`. */
  readonly message: string;
  /** What a user can do; '' when there is nothing specific. */
  readonly hint: string;
  /** Stable key for "log once per reason". */
  readonly key: string;
}

/** What `describeConnectionError` needs to know about the connection. */
export interface ConnectionContext {
  /** The broker URL with the password hidden. */
  readonly url: string;
  /** The URL asks for TLS (`mqtts:`, `wss:`, `tls:`, `ssl:`). */
  readonly tls: boolean;
  /** A user name was sent. */
  readonly hasUsername: boolean;
  /** `mqtt.tls.ca` when set (shown in hints). */
  readonly caFile?: string;
  /** `mqtt.tls.cert` is set. */
  readonly hasClientCert: boolean;
  /** MQTT version of the attempt: 5 or 4 (3.1.1). */
  readonly protocolVersion: 4 | 5;
}

const CREDENTIALS_HINT_SET = "check mqtt.username / EDGE_CLASSIFIER_MQTT_PASSWORD (or mqtt.password) against the broker's users";
const CREDENTIALS_HINT_UNSET = 'no mqtt.username is set and the broker may require one: set mqtt.username and EDGE_CLASSIFIER_MQTT_PASSWORD (or mqtt.password)';

/**
 * Hint for a CONNACK refusal: MQTT 3.1.1 return codes 1–5 and the MQTT 5
 * reason codes (0x80 and up) a broker sends for a CONNECT, or ''.
 */
function refusalHint(code: number, ctx: Pick<ConnectionContext, 'hasUsername' | 'protocolVersion'>): string {
  const credentials = ctx.hasUsername ? CREDENTIALS_HINT_SET : CREDENTIALS_HINT_UNSET;
  switch (code) {
    case 1:
    case 0x84:
      return ctx.protocolVersion === 5 ? 'the broker does not speak MQTT 5: set mqtt.protocol to 3.1.1 (or auto)' : 'the broker does not accept MQTT 3.1.1';
    case 2:
    case 0x85:
      return 'the broker rejects the client id: set mqtt.client_id to one it accepts';
    case 3:
    case 0x88:
    case 0x89:
      return 'the broker is unavailable or busy for now: it is retried';
    case 4:
    case 5:
    case 0x86:
    case 0x87:
    case 0x8c:
      return credentials;
    case 0x8a:
      return 'the broker has banned this client';
    case 0x9f:
      return 'the broker limits the connection rate: it is retried';
    default:
      return '';
  }
}

/** The CONNACK code of a refusal error from mqtt.js (`Connection refused: <reason>`), else undefined. */
export function refusalCode(err: Error): number | undefined {
  const code = (err as Error & { code?: unknown }).code;
  return typeof code === 'number' && err.message.startsWith('Connection refused:') ? code : undefined;
}

/** True when the refusal says the broker does not speak the protocol version asked for. */
export function isProtocolRefusal(code: number | undefined): boolean {
  return code === 1 || code === 0x84;
}

/** OpenSSL verification codes as Node.js reports them (`err.code`), grouped by what a user does about them. */
const UNTRUSTED = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
]);

/**
 * Describes one connection error. `handshakeDone`: whether this attempt's
 * TLS handshake completed (a reset before it, on a TLS URL, means the port
 * does not speak TLS).
 */
export function describeConnectionError(err: Error, ctx: ConnectionContext, handshakeDone = false): DescribedError {
  const code = (err as NodeJS.ErrnoException).code;
  const refused = refusalCode(err);
  const d = (kind: ConnectionErrorKind, reason: string, hint: string, key: string): DescribedError => ({
    kind,
    reason,
    message: `MQTT broker ${ctx.url}: ${reason}`,
    hint,
    key,
  });
  if (refused !== undefined) {
    return d(
      isProtocolRefusal(refused) ? 'protocol' : 'refused',
      `the connection was refused (${err.message})`,
      refusalHint(refused, ctx),
      `refused:${refused}`,
    );
  }
  const text = err.message;
  if (typeof code === 'string' && UNTRUSTED.has(code)) {
    return d(
      'tls',
      `its TLS certificate is not signed by a CA this device trusts (${text})`,
      ctx.caFile
        ? `mqtt.tls.ca (${ctx.caFile}) is not the CA that signed the broker's certificate: point it at that CA's PEM file`
        : "set mqtt.tls.ca to the PEM file of the CA that signed the broker's certificate",
      'tls:untrusted',
    );
  }
  if (code === 'CERT_HAS_EXPIRED') {
    return d(
      'tls',
      `its TLS certificate has expired (${text})`,
      `renew the broker's certificate; if it is valid, check this device's clock (it says ${new Date().toISOString()})`,
      'tls:expired',
    );
  }
  if (code === 'CERT_NOT_YET_VALID') {
    return d(
      'tls',
      `its TLS certificate is not valid yet (${text})`,
      `check this device's clock (it says ${new Date().toISOString()}); a Pi without network time starts at its last shutdown time`,
      'tls:not-yet-valid',
    );
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return d(
      'tls',
      `its TLS certificate is for another host name (${text})`,
      'connect with a host name the certificate holds (see its subjectAltName)',
      'tls:hostname',
    );
  }
  if (ctx.tls && /certificate required|alert number 116|handshake failure/i.test(text)) {
    // OpenSSL's text is long ("…:ssl3_read_bytes:tlsv13 alert certificate required:…"): keep the alert.
    const alert = /alert ([a-z ]+?)(?::|$| \()/i.exec(text)?.[1] ?? text;
    return d(
      'tls',
      `it ended the TLS handshake (TLS alert: ${alert})`,
      ctx.hasClientCert
        ? "the broker did not accept mqtt.tls.cert: it must be signed by a CA the broker's cafile holds"
        : 'the broker requires a client certificate: set mqtt.tls.cert and mqtt.tls.key',
      'tls:client-cert',
    );
  }
  if (ctx.tls && !handshakeDone && (code === 'ECONNRESET' || code === 'EPIPE' || /wrong version number|before secure TLS connection/i.test(text))) {
    return d(
      'tls',
      `the port does not speak TLS: the connection was closed during the TLS handshake (${text})`,
      'use mqtt:// for a plain MQTT port, or the port where the broker listens with TLS (often 8883)',
      'tls:plain-port',
    );
  }
  if (code === 'ECONNREFUSED') {
    return d('network', `nothing listens there (${text})`, 'start the broker, or check the host and port of mqtt.url', 'network:refused');
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return d('network', `the host name does not resolve (${text})`, 'check the host of mqtt.url and the DNS of this device', 'network:dns');
  }
  return d('network', `connection error (${text})`, '', `network:${code ?? text}`);
}
