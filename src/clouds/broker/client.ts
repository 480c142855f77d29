/**
 * Client for the identity broker (docs/broker.md): a small hypertext API that lists a user's cloud accounts, each
 * account's regions, and hands out short-lived per-region credentials.
 *
 * The API key goes only into the X-API-Key request header. It is kept in a private field (so serialising or
 * logging the client cannot show it), never logged, never written anywhere, and scrubbed from every error message.
 * Responses are cached until their Expires header; documents without credentials (the account and region lists)
 * are also cached on disk under the work directory, credentials only in memory.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { errorMessage, UserError } from '../../util/errors.js';
import { writeFileAtomic } from '../../util/fs.js';
import { sleep } from '../wait.js';

export const BROKER_ACCEPT = 'application/vnd.broker.v2+json';
export const ENV_ENDPOINT = 'IDENTITY_BROKER_ENDPOINT';
export const ENV_API_KEY = 'IDENTITY_BROKER_API_KEY';
export const ENV_ACCOUNT = 'IDENTITY_BROKER_ACCOUNT';
/** seconds to wait after a 429 that carries no Retry-After (the protocol asks for at least 30) */
export const ENV_RATE_LIMIT_WAIT = 'IDENTITY_BROKER_RATE_LIMIT_WAIT';

export interface BrokerAccount {
  short_name: string;
  account_number?: number | string;
  name?: string;
  credentials_url: string;
  global_credential_url?: string;
  [k: string]: unknown;
}

export interface BrokerRegion {
  name: string;
  enabled: boolean;
  default?: boolean;
  credentials_url?: string;
}

export interface BrokerCredentials {
  access_key: string;
  secret_key: string;
  session_token?: string;
  /** ISO timestamp */
  expiration?: string;
}

export interface BrokerClientOptions {
  /** the account entry point, e.g. https://broker.example/api/account */
  endpoint: string;
  apiKey: string;
  /** account short name; optional when the cloud has exactly one account */
  account?: string;
  log: Logger;
  /** directory for the on-disk cache of non-secret documents; no disk cache when absent */
  cacheDir?: string;
  now?: () => number;
  /** wait after a 429 without Retry-After (default 30 s) */
  rateLimitWaitMs?: number;
  /** 429 and 5xx answers tolerated per request before giving up (default 8) */
  maxRetries?: number;
}

interface CacheEntry {
  body: unknown;
  /** epoch ms; undefined = no Expires header: valid for the life of this client */
  expires?: number;
}

const MAX_REDIRECTS = 5;

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export class IdentityBrokerClient {
  readonly endpoint: string;
  readonly accountName?: string;
  readonly #apiKey: string;
  readonly #log: Logger;
  readonly #cacheDir?: string;
  readonly #now: () => number;
  readonly #rateLimitWaitMs: number;
  readonly #maxRetries: number;
  readonly #memory = new Map<string, CacheEntry>();
  readonly #inflight = new Map<string, Promise<unknown>>();
  /** requests actually sent (for tests and debug logs) */
  requests = 0;

  constructor(opts: BrokerClientOptions) {
    let url: URL;
    try {
      url = new URL(opts.endpoint);
    } catch {
      throw new UserError(
        `${ENV_ENDPOINT}: not a URL: "${opts.endpoint}" (expected https://HOST/api/account)`,
      );
    }
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url.hostname))) {
      throw new UserError(
        `${ENV_ENDPOINT}: ${url.origin} must use https (the API key is a bearer token; plain http only for localhost)`,
      );
    }
    if (!opts.apiKey) throw new UserError(`${ENV_API_KEY} is empty`);
    this.endpoint = url.toString();
    this.accountName = opts.account || undefined;
    this.#apiKey = opts.apiKey;
    this.#log = opts.log;
    this.#cacheDir = opts.cacheDir;
    this.#now = opts.now ?? Date.now;
    this.#rateLimitWaitMs = opts.rateLimitWaitMs ?? 30_000;
    this.#maxRetries = opts.maxRetries ?? 8;
  }

  /** Never show the key, even if someone logs or prints the client. */
  toJSON(): Record<string, unknown> {
    return { endpoint: this.endpoint, account: this.accountName };
  }

  /** Remove the API key from any text that is about to leave this module. */
  scrub(text: string): string {
    return this.#apiKey ? text.split(this.#apiKey).join('[redacted]') : text;
  }

  /** The accounts of `vendor` (e.g. "aws") the key gives access to. */
  async accounts(vendor: string): Promise<BrokerAccount[]> {
    const doc = await this.get(this.endpoint, true);
    const list = Array.isArray(doc)
      ? doc
      : doc && typeof doc === 'object'
        ? (doc as Record<string, unknown>)[vendor]
        : undefined;
    if (list === undefined) throw new UserError(`identity broker: no ${vendor} accounts for this API key`);
    if (!Array.isArray(list)) {
      throw new UserError(`identity broker: ${this.endpoint}: "${vendor}" is not a list of accounts`);
    }
    return list.filter(
      (a): a is BrokerAccount =>
        !!a && typeof a === 'object' && typeof (a as BrokerAccount).short_name === 'string',
    );
  }

  /** The account to use: the configured short name, or the only one there is. */
  async account(vendor: string): Promise<BrokerAccount> {
    const accounts = await this.accounts(vendor);
    const names = accounts.map((a) => a.short_name).join(', ') || '(none)';
    if (this.accountName) {
      const a = accounts.find((x) => x.short_name === this.accountName);
      if (!a) {
        throw new UserError(
          `identity broker: no ${vendor} account "${this.accountName}" (${ENV_ACCOUNT}); available: ${names}`,
        );
      }
      return a;
    }
    if (accounts.length === 1) return accounts[0]!;
    throw new UserError(`identity broker: set ${ENV_ACCOUNT} to one of the ${vendor} accounts: ${names}`);
  }

  /** Every region of the account, enabled (opted in) or not. */
  async regions(vendor: string): Promise<BrokerRegion[]> {
    const account = await this.account(vendor);
    if (typeof account.credentials_url !== 'string') {
      throw new UserError(`identity broker: account ${account.short_name} has no credentials_url`);
    }
    const doc = await this.get(this.resolve(account.credentials_url), true);
    if (!Array.isArray(doc)) {
      throw new UserError(`identity broker: region list of ${account.short_name} is not a list`);
    }
    return doc.filter(
      (r): r is BrokerRegion => !!r && typeof r === 'object' && typeof (r as BrokerRegion).name === 'string',
    );
  }

  async enabledRegions(vendor: string): Promise<string[]> {
    return (await this.regions(vendor)).filter((r) => r.enabled).map((r) => r.name);
  }

  async defaultRegion(vendor: string): Promise<string | undefined> {
    return (await this.regions(vendor)).find((r) => r.default && r.enabled)?.name;
  }

  /** Short-lived credentials for one region (cached in memory until the response's Expires). */
  async credentials(vendor: string, region: string): Promise<BrokerCredentials> {
    const r = (await this.regions(vendor)).find((x) => x.name === region);
    if (!r) throw new UserError(`identity broker: the ${vendor} account has no region ${region}`);
    if (!r.enabled || !r.credentials_url) {
      throw new UserError(`identity broker: region ${region} is not enabled (opted in) for this account`);
    }
    const doc = (await this.get(this.resolve(r.credentials_url), false)) as Partial<BrokerCredentials> | null;
    if (!doc || typeof doc.access_key !== 'string' || typeof doc.secret_key !== 'string') {
      throw new UserError(`identity broker: credentials for ${region} lack access_key/secret_key`);
    }
    return doc as BrokerCredentials;
  }

  private resolve(link: string): string {
    return new URL(link, this.endpoint).toString();
  }

  private cacheFile(url: string): string | undefined {
    if (!this.#cacheDir) return undefined;
    const h = createHash('sha256').update(this.#apiKey).update('\0').update(url).digest('hex');
    return join(this.#cacheDir, `${h.slice(0, 40)}.json`);
  }

  private async get(url: string, persist: boolean): Promise<unknown> {
    const mem = this.#memory.get(url);
    if (mem && (mem.expires === undefined || mem.expires > this.#now())) {
      this.#log.debug({ url }, 'identity broker: cached');
      return mem.body;
    }
    const pending = this.#inflight.get(url);
    if (pending) return pending;
    const p = this.load(url, persist).finally(() => this.#inflight.delete(url));
    this.#inflight.set(url, p);
    return p;
  }

  private async load(url: string, persist: boolean): Promise<unknown> {
    const file = persist ? this.cacheFile(url) : undefined;
    if (file) {
      try {
        const saved = JSON.parse(await readFile(file, 'utf8')) as {
          url: string;
          expires: number;
          body: unknown;
        };
        if (saved.url === url && typeof saved.expires === 'number' && saved.expires > this.#now()) {
          this.#memory.set(url, { body: saved.body, expires: saved.expires });
          this.#log.debug({ url }, 'identity broker: cached on disk');
          return saved.body;
        }
      } catch {
        // no usable cache entry
      }
    }
    const { body, expires } = await this.fetchJson(url);
    if (expires === undefined || expires > this.#now()) this.#memory.set(url, { body, expires });
    if (file && expires !== undefined && expires > this.#now()) {
      try {
        await mkdir(this.#cacheDir!, { recursive: true, mode: 0o700 });
        await writeFileAtomic(file, `${JSON.stringify({ url, expires, body })}\n`, 0o600);
      } catch (err) {
        this.#log.debug({ url, error: errorMessage(err) }, 'identity broker: cannot write cache');
      }
    }
    return body;
  }

  private async fetchJson(start: string): Promise<{ body: unknown; expires?: number }> {
    let url = start;
    let redirects = 0;
    let retries = 0;
    for (;;) {
      this.#log.debug({ url }, 'identity broker: GET');
      this.requests++;
      let res: Response;
      try {
        res = await fetch(url, {
          headers: { Accept: BROKER_ACCEPT, 'X-API-Key': this.#apiKey },
          redirect: 'manual',
        });
      } catch (err) {
        const cause = err instanceof Error && err.cause ? `: ${errorMessage(err.cause)}` : '';
        throw new UserError(this.scrub(`identity broker ${url} unreachable: ${errorMessage(err)}${cause}`));
      }
      const status = res.status;
      if (status >= 300 && status < 400) {
        await res.body?.cancel();
        const location = res.headers.get('location');
        if (!location)
          throw new UserError(`identity broker: ${url} redirected (${status}) without a Location`);
        const target = new URL(location, url);
        if (target.pathname === '/logout' || target.pathname.endsWith('/logout')) {
          throw new UserError(`identity broker: the API key has expired (redirected to /logout); ${renew}`);
        }
        if (++redirects > MAX_REDIRECTS)
          throw new UserError(`identity broker: too many redirects from ${start}`);
        url = target.toString();
        continue;
      }
      if (status === 401) {
        await res.body?.cancel();
        throw new UserError(
          `identity broker: the API key is expired or invalid (HTTP 401 from ${url}); ${renew}`,
        );
      }
      if (status === 406) {
        await res.body?.cancel();
        throw new UserError(
          `identity broker: the API key is malformed, or the broker does not speak ${BROKER_ACCEPT} (HTTP 406 from ${url}); check ${ENV_API_KEY}`,
        );
      }
      if (status === 429 || status >= 500) {
        await res.body?.cancel();
        if (++retries > this.#maxRetries) {
          throw new UserError(
            `identity broker: ${url} still answers HTTP ${status} after ${this.#maxRetries} retries`,
          );
        }
        const wait =
          status === 429
            ? (retryAfterMs(res.headers.get('retry-after'), this.#now()) ?? this.#rateLimitWaitMs)
            : Math.min(30_000, 500 * 2 ** retries);
        this.#log.warn(
          { url, status, waitMs: wait },
          status === 429
            ? `identity broker rate limit: waiting ${Math.round(wait / 100) / 10} s before retrying`
            : `identity broker error ${status}: retrying in ${Math.round(wait / 100) / 10} s`,
        );
        await sleep(wait);
        continue;
      }
      if (status !== 200) {
        const text = (await res.text().catch(() => '')).slice(0, 200);
        throw new UserError(
          this.scrub(`identity broker: HTTP ${status} from ${url}${text ? `: ${text}` : ''}`),
        );
      }
      const text = await res.text();
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        throw new UserError(`identity broker: ${url} did not answer with JSON`);
      }
      const exp = res.headers.get('expires');
      const parsed = exp ? Date.parse(exp) : Number.NaN;
      const expires = Number.isNaN(parsed) ? undefined : parsed;
      this.#log.debug(
        { url, expires: expires === undefined ? 'never' : new Date(expires).toISOString() },
        'identity broker: fetched',
      );
      return { body, expires };
    }
  }
}

const renew = `get a new key from the broker and set ${ENV_API_KEY}`;

/** Retry-After as seconds or an HTTP date; undefined when absent or unparsable. */
export function retryAfterMs(value: string | null, now: number): number | undefined {
  if (!value) return undefined;
  if (/^\d+(\.\d+)?$/.test(value.trim())) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** A client configured from IDENTITY_BROKER_* in `env`; a UserError naming what is missing otherwise. */
export function brokerFromEnv(
  env: NodeJS.ProcessEnv,
  log: Logger,
  cacheDir?: string,
  extra: Partial<BrokerClientOptions> = {},
): IdentityBrokerClient {
  const endpoint = env[ENV_ENDPOINT];
  const apiKey = env[ENV_API_KEY];
  if (!endpoint) {
    throw new UserError(
      `--use-broker needs ${ENV_ENDPOINT} (the broker's account entry point, .../api/account)`,
    );
  }
  if (!apiKey) throw new UserError(`--use-broker needs ${ENV_API_KEY} (your identity broker API key)`);
  let rateLimitWaitMs: number | undefined;
  const w = env[ENV_RATE_LIMIT_WAIT];
  if (w !== undefined && w !== '') {
    const n = Number(w);
    if (!Number.isFinite(n) || n < 0)
      throw new UserError(`${ENV_RATE_LIMIT_WAIT}: expected seconds, got "${w}"`);
    rateLimitWaitMs = n * 1000;
  }
  return new IdentityBrokerClient({
    endpoint,
    apiKey,
    account: env[ENV_ACCOUNT],
    log,
    cacheDir,
    rateLimitWaitMs,
    ...extra,
  });
}
