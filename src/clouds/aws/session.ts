/**
 * AWS sessions: which regions exist, which one is the default, and SDK clients per region, with credentials from
 * the SDK's default chain or from the identity broker (--use-broker).
 */

import { join } from 'node:path';
import { DescribeRegionsCommand, EC2Client, type EC2ClientConfig } from '@aws-sdk/client-ec2';
import { S3Client } from '@aws-sdk/client-s3';
import { ConfiguredRetryStrategy } from '@smithy/util-retry';
import { UserError } from '../../util/errors.js';
import { annotateEndpoint } from '../../util/http-error.js';
import { brokerFromEnv, type IdentityBrokerClient } from '../broker/client.js';
import type { CloudContext } from '../types.js';
import { type AwsTuning, tuningFromEnv } from './tuning.js';

export const BROKER_VENDOR = 'aws';

export interface AwsSession {
  readonly tuning: AwsTuning;
  /** where imports go (and the source of copies) */
  defaultRegion(): Promise<string>;
  /** regions this account can use (opted in, or not needing opt-in) */
  enabledRegions(): Promise<string[]>;
  ec2(region: string): EC2Client;
  s3(region: string): S3Client;
  /** release the SDK clients (only for sessions not kept in the run cache) */
  destroy(): void;
}

type Credentials = EC2ClientConfig['credentials'];
type StaticCredentials = { accessKeyId: string; secretAccessKey: string; sessionToken?: string };

function retryStrategy(t: AwsTuning): ConfiguredRetryStrategy {
  return new ConfiguredRetryStrategy(t.maxAttempts, (attempt) => {
    const base = Math.min(t.retryMaxMs, t.retryBaseMs * 2 ** Math.max(0, attempt - 1));
    return Math.round(base * (0.5 + Math.random() * 0.5));
  });
}

/** Static credentials from ctx.env when it carries them (tests inject them there); else the SDK's chain. */
function envCredentials(env: NodeJS.ProcessEnv): StaticCredentials | undefined {
  const id = env.AWS_ACCESS_KEY_ID;
  const secret = env.AWS_SECRET_ACCESS_KEY;
  if (!id || !secret) return undefined;
  return {
    accessKeyId: id,
    secretAccessKey: secret,
    ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
  };
}

function endpointFor(env: NodeJS.ProcessEnv, service: 'EC2' | 'S3'): string | undefined {
  return env[`AWS_ENDPOINT_URL_${service}`] || env.AWS_ENDPOINT_URL || undefined;
}

class Session implements AwsSession {
  readonly tuning: AwsTuning;
  private readonly ec2Clients = new Map<string, EC2Client>();
  private readonly s3Clients = new Map<string, S3Client>();
  private readonly ec2Endpoint?: string;
  private readonly s3Endpoint?: string;
  private regionsPromise?: Promise<string[]>;
  private defaultPromise?: Promise<string>;

  constructor(
    private readonly env: NodeJS.ProcessEnv,
    private readonly broker: IdentityBrokerClient | undefined,
  ) {
    this.tuning = tuningFromEnv(env);
    this.ec2Endpoint = endpointFor(env, 'EC2');
    this.s3Endpoint = endpointFor(env, 'S3');
  }

  private credentials(region: string): Credentials {
    const broker = this.broker;
    if (!broker) return envCredentials(this.env);
    return async () => {
      const c = await broker.credentials(BROKER_VENDOR, region);
      return {
        accessKeyId: c.access_key,
        secretAccessKey: c.secret_key,
        ...(c.session_token ? { sessionToken: c.session_token } : {}),
        ...(c.expiration ? { expiration: new Date(c.expiration) } : {}),
      };
    };
  }

  ec2(region: string): EC2Client {
    let c = this.ec2Clients.get(region);
    if (!c) {
      c = annotateEndpoint(
        new EC2Client({
          region,
          ...(this.ec2Endpoint ? { endpoint: this.ec2Endpoint } : {}),
          credentials: this.credentials(region),
          retryStrategy: retryStrategy(this.tuning),
        }),
      );
      this.ec2Clients.set(region, c);
    }
    return c;
  }

  s3(region: string): S3Client {
    let c = this.s3Clients.get(region);
    if (!c) {
      const custom = Boolean(this.s3Endpoint);
      c = annotateEndpoint(
        new S3Client({
          region,
          ...(this.s3Endpoint ? { endpoint: this.s3Endpoint } : {}),
          credentials: this.credentials(region),
          retryStrategy: retryStrategy(this.tuning),
          // custom endpoints (s3rver, MinIO, LocalStack) want path-style URLs and often lack flexible checksums
          forcePathStyle: custom || this.env.AWS_S3_FORCE_PATH_STYLE === 'true',
          ...(custom
            ? {
                requestChecksumCalculation: 'WHEN_REQUIRED' as const,
                responseChecksumValidation: 'WHEN_REQUIRED' as const,
              }
            : {}),
        }),
      );
      this.s3Clients.set(region, c);
    }
    return c;
  }

  defaultRegion(): Promise<string> {
    this.defaultPromise ??= this.findDefaultRegion();
    return this.defaultPromise;
  }

  private async findDefaultRegion(): Promise<string> {
    if (this.broker) {
      const r = await this.broker.defaultRegion(BROKER_VENDOR);
      if (r) return r;
      const env = this.env.AWS_REGION || this.env.AWS_DEFAULT_REGION;
      if (env) return env;
      throw new UserError('identity broker names no default region for the aws account; set AWS_REGION');
    }
    const env = this.env.AWS_REGION || this.env.AWS_DEFAULT_REGION;
    if (env) return env;
    // the SDK's own lookup (~/.aws/config profile)
    const probe = new EC2Client({});
    try {
      return await probe.config.region();
    } catch {
      throw new UserError('no AWS region configured: set AWS_REGION or a region in ~/.aws/config');
    } finally {
      probe.destroy();
    }
  }

  enabledRegions(): Promise<string[]> {
    this.regionsPromise ??= this.listRegions();
    return this.regionsPromise;
  }

  private async listRegions(): Promise<string[]> {
    if (this.broker) return (await this.broker.enabledRegions(BROKER_VENDOR)).sort();
    const region = await this.defaultRegion();
    const res = await this.ec2(region).send(new DescribeRegionsCommand({ AllRegions: true }));
    return (res.Regions ?? [])
      .filter((r) => r.RegionName && r.OptInStatus !== 'not-opted-in')
      .map((r) => r.RegionName!)
      .sort();
  }

  destroy(): void {
    for (const c of this.ec2Clients.values()) c.destroy();
    for (const c of this.s3Clients.values()) c.destroy();
    this.ec2Clients.clear();
    this.s3Clients.clear();
  }
}

const CACHE_KEY = 'aws:session';

/**
 * The session for this run: taken from ctx.cache when the pipeline provides one (so all images share clients and
 * broker credentials), else a fresh one that `release` destroys.
 */
export function openSession(ctx: CloudContext): { session: AwsSession; release: () => void } {
  const cached = ctx.cache?.get(CACHE_KEY) as AwsSession | undefined;
  if (cached) return { session: cached, release: () => {} };
  const broker = ctx.useBroker
    ? brokerFromEnv(ctx.env, ctx.log, join(ctx.workDir, '.cache', 'broker'))
    : undefined;
  const session = new Session(ctx.env, broker);
  if (ctx.cache) {
    ctx.cache.set(CACHE_KEY, session);
    return { session, release: () => {} };
  }
  return { session, release: () => session.destroy() };
}
