/**
 * Hiding passwords of URLs (camera URLs such as
 * `rtsp://admin:secret@cam/stream`, broker URLs) before anything reaches a
 * log line, an error message, `--check-config` output or an MQTT payload.
 */

/** The password of `url` as written and decoded; empty when it has none or is not a URL. */
function secretsOf(url: string): string[] {
  try {
    const password = new URL(url).password;
    return password === '' ? [] : [...new Set([password, decodeURIComponent(password)])];
  } catch {
    return [];
  }
}

/**
 * `url` with its password replaced by `***`. Returns the text unchanged when
 * it has no password or is not a URL.
 */
export function redactUrl(url: string): string {
  if (secretsOf(url).length === 0) return url;
  const parsed = new URL(url);
  parsed.password = '***';
  const text = parsed.toString();
  return url.endsWith('/') ? text : text.replace(/\/$/, '');
}

/**
 * A function that replaces every occurrence of `url`'s password (as written
 * and percent-decoded) in a text with `***`: for lines a program prints about
 * the URL it was given (ffmpeg's stderr names the URL it failed to open).
 * The identity when the URL has no password.
 */
export function urlRedactor(url: string): (text: string) => string {
  const secrets = secretsOf(url);
  if (secrets.length === 0) return (text) => text;
  return (text) => secrets.reduce((acc, secret) => acc.split(secret).join('***'), text);
}
