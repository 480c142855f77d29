/**
 * An identity broker emulator (protocol in docs/broker.md): the account index, each account's region list and
 * per-region short-lived credentials, guarded by X-API-Key, with Expires headers and injectable faults
 * (rate limiting with 429, server errors, expired keys answered with 401 or a redirect to /logout).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { DEFAULT_REGIONS } from '../ec2/state.js';

export const BROKER_MEDIA_TYPE = 'application/vnd.broker.v2+json';

export interface BrokerEmuAccount {
  vendor: string;
  short_name: string;
  account_number: string;
  name: string;
}

export interface BrokerEmuRegion {
  name: string;
  enabled: boolean;
  default?: boolean;
}

export interface BrokerFaults {
  /** answer the next N requests with 429 */
  rateLimitNext?: number;
  /** Retry-After sent with 429 (seconds); none when undefined */
  retryAfter?: number;
  /** answer the next N requests with 500 */
  serverErrorNext?: number;
}

export interface BrokerEmulatorOptions {
  host?: string;
  port?: number;
  /** keys that work */
  apiKeys?: string[];
  /** keys that have expired: 401, or a redirect to /logout with `logoutRedirect` */
  expiredKeys?: string[];
  logoutRedirect?: boolean;
  accounts?: BrokerEmuAccount[];
  regions?: BrokerEmuRegion[];
  /** Expires header lifetimes in seconds; 0 sends no Expires header */
  ttl?: { accounts?: number; regions?: number; credentials?: number };
  faults?: BrokerFaults;
  /** hand out these keys for a region instead of generated ones (e.g. what a local S3 accepts) */
  credentialsFor?: (region: string) => { access_key: string; secret_key: string } | undefined;
  now?: () => number;
  log?: (line: string) => void;
}

export interface BrokerRequest {
  path: string;
  status: number;
  at: number;
}

type Answer = [number, unknown, Record<string, string>?];

export const DEFAULT_BROKER_KEY = 'emulated-broker-key-0123456789';

const KEY_FORMAT = /^[A-Za-z0-9_-]{16,128}$/;

export class BrokerEmulator {
  readonly requests: BrokerRequest[] = [];
  faults: BrokerFaults;
  readonly accounts: BrokerEmuAccount[];
  readonly regions: BrokerEmuRegion[];
  private readonly secret = randomBytes(20).toString('base64');
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  private base = '';

  constructor(private readonly opts: BrokerEmulatorOptions = {}) {
    this.faults = { ...opts.faults };
    this.accounts = opts.accounts ?? [
      { vendor: 'aws', short_name: 'image-builder', account_number: '123456789012', name: 'Image builds' },
    ];
    this.regions =
      opts.regions ??
      DEFAULT_REGIONS.map((r) => ({
        name: r.name,
        enabled: r.optInStatus !== 'not-opted-in',
        ...(r.name === 'us-west-2' ? { default: true } : {}),
      }));
  }

  get url(): string {
    return this.base;
  }

  /** the account entry point: what IDENTITY_BROKER_ENDPOINT is set to */
  get endpoint(): string {
    return `${this.base}/api/account`;
  }

  now(): number {
    return this.opts.now ? this.opts.now() : Date.now();
  }

  /** The access key id handed out for a region (what the EC2 emulator can insist on). */
  accessKeyFor(region: string): string {
    const fixed = this.opts.credentialsFor?.(region);
    if (fixed) return fixed.access_key;
    const h = createHash('sha256').update(region).digest('hex').slice(0, 12).toUpperCase();
    return `ASIABROKER${h}`;
  }

  /** The secret key handed out for a region (tests check it never appears in logs or files). */
  secretKeyFor(region: string): string {
    const fixed = this.opts.credentialsFor?.(region);
    if (fixed) return fixed.secret_key;
    return createHash('sha256').update(this.secret).update(region).digest('base64').slice(0, 40);
  }

  /** how many requests reached a path (exactly), or all when omitted */
  hits(path?: string): number {
    return this.requests.filter((r) => path === undefined || r.path === path).length;
  }

  async listen(): Promise<string> {
    const server = createServer((req, res) => this.handle(req, res));
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port ?? 0, this.opts.host ?? '127.0.0.1', () => resolve());
    });
    const a = server.address() as AddressInfo;
    this.base = `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
    return this.base;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private reply(
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ): void {
    const path = (req.url ?? '').split('?')[0] ?? '';
    this.requests.push({ path, status, at: this.now() });
    this.opts.log?.(`GET ${path} -> ${status}`);
    res.writeHead(status, { 'content-type': BROKER_MEDIA_TYPE, ...headers });
    res.end(body === undefined ? '' : JSON.stringify(body));
  }

  private expires(seconds: number | undefined): Record<string, string> {
    if (!seconds) return {};
    return { expires: new Date(this.now() + seconds * 1000).toUTCString() };
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const [status, payload, headers] = this.route(req);
    this.reply(req, res, status, payload, headers);
  }

  private route(req: IncomingMessage): Answer {
    const path = (req.url ?? '').split('?')[0] ?? '';
    if (path === '/logout') return [200, { logged_out: true }];
    const f = this.faults;
    if (f.rateLimitNext && f.rateLimitNext > 0) {
      f.rateLimitNext--;
      return [
        429,
        { error: 'rate limit exceeded' },
        f.retryAfter !== undefined ? { 'retry-after': String(f.retryAfter) } : {},
      ];
    }
    if (f.serverErrorNext && f.serverErrorNext > 0) {
      f.serverErrorNext--;
      return [500, { error: 'internal error' }];
    }
    const key = String(req.headers['x-api-key'] ?? '');
    const accept = String(req.headers.accept ?? '');
    if (!accept.split(',').some((a) => a.trim() === BROKER_MEDIA_TYPE)) {
      return [406, { error: `only ${BROKER_MEDIA_TYPE} is served` }];
    }
    if (!KEY_FORMAT.test(key)) return [406, { error: 'malformed API key' }];
    if ((this.opts.expiredKeys ?? []).includes(key)) {
      if (this.opts.logoutRedirect) return [302, undefined, { location: '/logout' }];
      return [401, { error: 'API key expired' }];
    }
    if (!(this.opts.apiKeys ?? [DEFAULT_BROKER_KEY]).includes(key)) {
      return [401, { error: 'invalid API key' }];
    }
    const ttl = this.opts.ttl ?? {};
    if (path === '/api/account') {
      const byVendor: Record<string, unknown[]> = {};
      for (const a of this.accounts) {
        const base = `${this.base}/api/account/${a.short_name}`;
        const list = byVendor[a.vendor] ?? [];
        byVendor[a.vendor] = list;
        list.push({
          short_name: a.short_name,
          account_number: a.account_number,
          name: a.name,
          console_redirect_url: `${base}/console?redirect=1`,
          get_console_url: `${base}/console`,
          credentials_url: `${base}/credentials`,
          global_credential_url: `${base}/credentials/global`,
        });
      }
      return [200, byVendor, this.expires(ttl.accounts ?? 3600)];
    }
    const m = /^\/api\/account\/([^/]+)\/credentials(?:\/([^/]+))?$/.exec(path);
    const account = m ? this.accounts.find((a) => a.short_name === m[1]) : undefined;
    if (!m || !account) return [404, { error: 'not found' }];
    if (!m[2]) {
      const list = this.regions.map((r) => ({
        name: r.name,
        enabled: r.enabled,
        default: Boolean(r.default),
        ...(r.enabled
          ? { credentials_url: `${this.base}/api/account/${account.short_name}/credentials/${r.name}` }
          : {}),
      }));
      return [200, list, this.expires(ttl.regions ?? 3600)];
    }
    const region = this.regions.find((r) => r.name === m[2]);
    if (!region?.enabled) return [400, { error: `region ${m[2]} is not enabled` }];
    const life = ttl.credentials ?? 3600;
    return [
      200,
      {
        access_key: this.accessKeyFor(region.name),
        secret_key: this.secretKeyFor(region.name),
        session_token: `session-${this.secretKeyFor(`${region.name}/token`)}`,
        expiration: new Date(this.now() + (life || 3600) * 1000).toISOString(),
      },
      this.expires(life),
    ];
  }
}

export async function startBrokerEmulator(opts: BrokerEmulatorOptions = {}): Promise<BrokerEmulator> {
  const b = new BrokerEmulator(opts);
  await b.listen();
  return b;
}
