/**
 * Credentials in URLs (`https://user:secret@mirror/…`, `https://TOKEN@host/…`, `?X-Amz-Signature=…`) are never
 * printed, logged or written: every message, log line and file that shows a URL shows it through redactUrl (one
 * URL) or redactText (any text that may contain URLs). The placeholder is `***`.
 */

export const REDACTED = '***';

/** Query parameters whose values are secrets (presigned URLs, tokens). Compared case-insensitively. */
const SECRET_PARAMS =
  /^(x-amz-signature|x-amz-credential|x-amz-security-token|signature|sig|token|access_token|auth|password|passwd|secret|api[_-]?key|key)$/i;

/** Schemes whose user name is not a secret (ssh://git@host); elsewhere a lone user name may be a token. */
const PLAIN_USER_SCHEMES = new Set(['ssh', 'sftp', 'git+ssh', 'file']);

// scheme://userinfo@ — userinfo may hold anything but '/', '@' (last '@' before the host wins), whitespace
const USERINFO = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#\s]*)@/;

function redactUserinfo(url: string): string {
  const m = USERINFO.exec(url);
  if (!m) return url;
  const scheme = m[1]!.toLowerCase();
  const info = m[2]!;
  const colon = info.indexOf(':');
  let shown: string;
  if (colon >= 0) shown = `${info.slice(0, colon)}:${REDACTED}`;
  else if (PLAIN_USER_SCHEMES.has(scheme)) shown = info;
  else shown = REDACTED;
  return `${m[1]}://${shown}@${url.slice(m[0].length)}`;
}

function redactQuery(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const hash = url.indexOf('#', q);
  const end = hash < 0 ? url.length : hash;
  const query = url
    .slice(q + 1, end)
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      if (eq < 0) return pair;
      let name = pair.slice(0, eq);
      try {
        name = decodeURIComponent(name);
      } catch {
        // keep it as it is
      }
      return SECRET_PARAMS.test(name) ? `${pair.slice(0, eq)}=${REDACTED}` : pair;
    })
    .join('&');
  return `${url.slice(0, q + 1)}${query}${url.slice(end)}`;
}

/** The URL as it may be shown: any password (or token-like user name) and secret query values replaced. */
export function redactUrl(url: string): string {
  return redactQuery(redactUserinfo(url));
}

// a URL inside free text: scheme://… up to whitespace or a closing quote/bracket, i.e. what
// /[A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s"'<>`()[\]{}]+/g matches (test/unit/redact-scan.test.ts compares the two)

/** Redact every URL found in a text (error messages, YAML, log lines). */
export function redactText(text: string): string {
  if (!text.includes('://')) return text;
  // the URLs, found from each "://" (the regular expression tries a scheme at every letter of a
  // long text, such as images.yaml, which takes milliseconds)
  // (the text is copied only up to the URLs that change)
  let out = '';
  let copied = 0;
  let scanned = 0;
  for (let i = text.indexOf('://'); i >= 0; i = text.indexOf('://', i + 3)) {
    if (i < scanned) continue;
    let start = i;
    while (start > scanned && isSchemeChar(text.charCodeAt(start - 1))) start--;
    while (start < i && !isLetter(text.charCodeAt(start))) start++;
    let end = i + 3;
    while (end < text.length && !isUrlEnd(text.charCodeAt(end))) end++;
    if (start === i || end === i + 3) continue;
    scanned = end;
    const url = text.slice(start, end);
    const shown = redactUrl(url);
    if (shown === url) continue;
    out += text.slice(copied, start) + shown;
    copied = end;
  }
  return copied === 0 ? text : out + text.slice(copied);
}

function isLetter(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}

/** [A-Za-z0-9+.-] */
function isSchemeChar(c: number): boolean {
  return isLetter(c) || (c >= 48 && c <= 57) || c === 43 || c === 46 || c === 45;
}

/** [\s"'<>`()[\]{}]: where a URL in text ends */
function isUrlEnd(c: number): boolean {
  return (
    c === 32 ||
    (c >= 9 && c <= 13) ||
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000 ||
    c === 0xfeff ||
    c === 34 ||
    c === 39 ||
    c === 60 ||
    c === 62 ||
    c === 96 ||
    c === 40 ||
    c === 41 ||
    c === 91 ||
    c === 93 ||
    c === 123 ||
    c === 125
  );
}

/** Does the URL carry credentials that redactUrl would hide? */
export function hasCredentials(url: string): boolean {
  return redactUrl(url) !== url;
}

/** The URL without its user name and password (what configs and images.yaml hold). */
export function stripCredentials(url: string): string {
  const m = USERINFO.exec(url);
  return m ? `${m[1]}://${url.slice(m[0].length)}` : url;
}

/**
 * Put the credentials of `originals` back into URLs of `text` that were kept without them: a URL that starts with
 * an original stripped of its credentials gets the original's prefix again. Used where a value read from
 * work/images.yaml is handed to what needs the real URL (the build's ISO download and package repositories).
 */
export function restoreCredentials(text: string, originals: readonly string[]): string {
  let out = text;
  for (const orig of originals) {
    const base = orig.replace(/\/+$/, '');
    const plain = stripCredentials(base);
    if (plain === base) continue;
    out = out.split(plain).join(base);
  }
  return out;
}

/**
 * fetch() refuses URLs with credentials: the URL without them, and the user name and password as a Basic
 * Authorization header.
 */
export function fetchTarget(url: string): { url: string; headers: Record<string, string> } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { url, headers: {} };
  }
  if (!parsed.username && !parsed.password) return { url, headers: {} };
  const user = decodeURIComponent(parsed.username);
  const pass = decodeURIComponent(parsed.password);
  parsed.username = '';
  parsed.password = '';
  return {
    url: parsed.href,
    headers: { Authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}` },
  };
}

/** A deep copy of a log argument with every string passed through redactText (depth-limited). */
export function redactValue(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redactText(value);
  if (depth > 6 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1));
  if (value instanceof Error) {
    const e = new Error(redactText(value.message));
    e.name = value.name;
    if (value.stack) e.stack = redactText(value.stack);
    for (const [k, v] of Object.entries(value))
      (e as unknown as Record<string, unknown>)[k] = redactValue(v, depth + 1);
    return e;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = redactValue(v, depth + 1);
  return out;
}
