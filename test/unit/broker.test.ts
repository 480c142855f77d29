/** The identity broker client against the broker emulator over HTTP on 127.0.0.1. */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { brokerFromEnv, IdentityBrokerClient } from '../../src/clouds/broker/client.js';
import { UserError } from '../../src/util/errors.js';
import { REDACT_PATHS } from '../../src/util/log.js';
import {
  type BrokerEmulator,
  brokerEnv,
  DEFAULT_BROKER_KEY,
  startBroker,
} from '../helpers/broker-emulator.js';

let dir: string;
let broker: BrokerEmulator | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'broker-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});
afterEach(async () => {
  await broker?.close();
  broker = undefined;
});

function capture() {
  const lines: string[] = [];
  const log = pino(
    { level: 'debug', redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: undefined },
    { write: (s: string) => lines.push(s) },
  );
  return { log, lines };
}

describe('identity broker client', () => {
  it('walks accounts -> regions -> per-region credentials', async () => {
    broker = await startBroker();
    const { log } = capture();
    const c = brokerFromEnv(brokerEnv(broker), log);
    expect((await c.account('aws')).short_name).toBe('image-builder');
    expect(await c.defaultRegion('aws')).toBe('us-west-2');
    const enabled = await c.enabledRegions('aws');
    expect(enabled).toContain('ap-east-1');
    expect(enabled).not.toContain('af-south-1');
    const creds = await c.credentials('aws', 'eu-west-1');
    expect(creds.access_key).toBe(broker.accessKeyFor('eu-west-1'));
    expect(creds.secret_key).toBe(broker.secretKeyFor('eu-west-1'));
    expect(creds.session_token).toBeTruthy();
    await expect(c.credentials('aws', 'af-south-1')).rejects.toThrow(/not enabled/);
  });

  it('caches every response until its Expires header, and only non-secret ones on disk', async () => {
    let now = Date.now();
    broker = await startBroker({ ttl: { accounts: 600, regions: 600, credentials: 60 } });
    const cacheDir = join(dir, 'cache-expires');
    const { log } = capture();
    const c = brokerFromEnv(brokerEnv(broker), log, cacheDir, { now: () => now });
    await c.credentials('aws', 'us-east-1');
    await c.credentials('aws', 'us-east-1');
    await c.enabledRegions('aws');
    expect(broker.hits()).toBe(3); // accounts, regions, credentials: once each
    now += 61_000; // credentials expired, the lists not yet
    await c.credentials('aws', 'us-east-1');
    expect(broker.hits()).toBe(4);
    expect(broker.hits('/api/account/image-builder/credentials/us-east-1')).toBe(2);

    // a new client (next run) takes the lists from disk but asks for credentials again
    const c2 = brokerFromEnv(brokerEnv(broker), log, cacheDir, { now: () => now });
    await c2.credentials('aws', 'us-east-1');
    expect(broker.hits('/api/account')).toBe(1);
    expect(broker.hits('/api/account/image-builder/credentials')).toBe(1);
    expect(broker.hits()).toBe(5);
    const files = await readdir(cacheDir);
    expect(files.length).toBe(2);
    for (const f of files) {
      const text = await readFile(join(cacheDir, f), 'utf8');
      expect(text).not.toContain(DEFAULT_BROKER_KEY);
      expect(text).not.toContain(broker.secretKeyFor('us-east-1'));
      expect(text).not.toContain('secret_key');
    }
    // past the lists' Expires the disk cache is not used either
    now += 600_000;
    const c3 = brokerFromEnv(brokerEnv(broker), log, cacheDir, { now: () => now });
    await c3.enabledRegions('aws');
    expect(broker.hits('/api/account')).toBe(2);
  });

  it('waits and retries when rate-limited (429), honouring Retry-After', async () => {
    broker = await startBroker({ faults: { rateLimitNext: 2, retryAfter: 0 } });
    const { log, lines } = capture();
    const c = brokerFromEnv(brokerEnv(broker), log);
    expect(await c.defaultRegion('aws')).toBe('us-west-2');
    expect(broker.requests.filter((r) => r.status === 429)).toHaveLength(2);
    expect(lines.filter((l) => l.includes('rate limit'))).toHaveLength(2);
  });

  it('waits IDENTITY_BROKER_RATE_LIMIT_WAIT seconds after a 429 without Retry-After', async () => {
    broker = await startBroker({ faults: { rateLimitNext: 1 } });
    const { log } = capture();
    const c = brokerFromEnv({ ...brokerEnv(broker), IDENTITY_BROKER_RATE_LIMIT_WAIT: '0.3' }, log);
    const t0 = Date.now();
    await c.accounts('aws');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(280);
  });

  it('gives up after too many 429s', async () => {
    broker = await startBroker({ faults: { rateLimitNext: 100, retryAfter: 0 } });
    const c = new IdentityBrokerClient({
      endpoint: broker.endpoint,
      apiKey: DEFAULT_BROKER_KEY,
      log: capture().log,
      maxRetries: 3,
    });
    await expect(c.accounts('aws')).rejects.toThrow(/HTTP 429 after 3 retries/);
  });

  it('explains 401 (expired or invalid key) without showing the key', async () => {
    broker = await startBroker({ expiredKeys: ['expired-key-0000000000'] });
    const { log, lines } = capture();
    const bad = brokerFromEnv(brokerEnv(broker, 'expired-key-0000000000'), log);
    const err = await bad.accounts('aws').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/expired or invalid \(HTTP 401/);
    expect((err as Error).message).toContain('IDENTITY_BROKER_API_KEY');
    expect((err as Error).message).not.toContain('expired-key-0000000000');
    expect(lines.join('')).not.toContain('expired-key-0000000000');
  });

  it('treats a redirect to /logout as an expired key', async () => {
    broker = await startBroker({ expiredKeys: ['expired-key-0000000000'], logoutRedirect: true });
    const c = brokerFromEnv(brokerEnv(broker, 'expired-key-0000000000'), capture().log);
    await expect(c.accounts('aws')).rejects.toThrow(/expired \(redirected to \/logout\)/);
  });

  it('explains 406 (malformed key)', async () => {
    broker = await startBroker();
    const c = brokerFromEnv(brokerEnv(broker, 'short key!'), capture().log);
    await expect(c.accounts('aws')).rejects.toThrow(/malformed.*HTTP 406/);
  });

  it('names what is missing from the environment, and refuses plain http to remote hosts', () => {
    const { log } = capture();
    expect(() => brokerFromEnv({}, log)).toThrow(/IDENTITY_BROKER_ENDPOINT/);
    expect(() =>
      brokerFromEnv({ IDENTITY_BROKER_ENDPOINT: 'https://broker.example/api/account' }, log),
    ).toThrow(/IDENTITY_BROKER_API_KEY/);
    expect(() =>
      brokerFromEnv(
        { IDENTITY_BROKER_ENDPOINT: 'http://broker.example/api/account', IDENTITY_BROKER_API_KEY: 'k' },
        log,
      ),
    ).toThrow(/must use https/);
    expect(() =>
      brokerFromEnv({ IDENTITY_BROKER_ENDPOINT: 'not a url', IDENTITY_BROKER_API_KEY: 'k' }, log),
    ).toThrow(/not a URL/);
  });

  it('asks for IDENTITY_BROKER_ACCOUNT when there are several accounts', async () => {
    broker = await startBroker({
      accounts: [
        { vendor: 'aws', short_name: 'prod', account_number: '111111111111', name: 'Production' },
        { vendor: 'aws', short_name: 'test', account_number: '222222222222', name: 'Testing' },
      ],
    });
    const { log } = capture();
    await expect(brokerFromEnv(brokerEnv(broker), log).account('aws')).rejects.toThrow(
      /IDENTITY_BROKER_ACCOUNT.*prod, test/,
    );
    const c = brokerFromEnv({ ...brokerEnv(broker), IDENTITY_BROKER_ACCOUNT: 'test' }, log);
    expect((await c.account('aws')).account_number).toBe('222222222222');
    const wrong = brokerFromEnv({ ...brokerEnv(broker), IDENTITY_BROKER_ACCOUNT: 'nope' }, log);
    await expect(wrong.account('aws')).rejects.toThrow(/no aws account "nope".*prod, test/);
  });

  it('never logs the key or the secrets, even at debug level and when the client itself is logged', async () => {
    broker = await startBroker();
    const { log, lines } = capture();
    const c = brokerFromEnv(brokerEnv(broker), log);
    await c.credentials('aws', 'us-west-2');
    log.info({ client: c }, 'the client');
    const text = lines.join('');
    expect(lines.length).toBeGreaterThan(3);
    expect(text).not.toContain(DEFAULT_BROKER_KEY);
    expect(text).not.toContain(broker.secretKeyFor('us-west-2'));
    expect(JSON.stringify(c)).not.toContain(DEFAULT_BROKER_KEY);
  });
});
