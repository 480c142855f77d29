import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { Logger } from 'pino';
import { errorMessage, UserError } from '../util/errors.js';
import { annotateEndpoint, foreignResponse } from '../util/http-error.js';
import { BaseStorage, type BaseStorageOptions, NotFoundError } from './base.js';
import type { ConditionalOps, VersionedObject } from './conditional.js';
import type { S3Location } from './url.js';

/** Parts of 16 MiB, 4 in flight: large images go up as a multipart upload. */
export const DEFAULT_PART_SIZE = 16 * 1024 * 1024;
const CONNECT_TIMEOUT_MS = 10_000;
/** a request with no traffic for this long fails (and is retried by the SDK) instead of hanging */
const IDLE_TIMEOUT_MS = 60_000;

interface ClientEntry {
  client: S3Client;
  /** what to call the service in messages */
  endpointName: string;
}

/** `region` for the profile from the AWS config file (AWS_CONFIG_FILE or ~/.aws/config), if any. */
export function profileRegion(iniText: string, profile: string): string | undefined {
  const wanted = profile === 'default' ? ['default', 'profile default'] : [`profile ${profile}`, profile];
  let section: string | undefined;
  for (const raw of iniText.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const sec = /^\[\s*(.+?)\s*\]$/.exec(line);
    if (sec) {
      section = sec[1];
      continue;
    }
    const kv = /^([A-Za-z0-9_]+)\s*=\s*(.*)$/.exec(line);
    if (kv && section !== undefined && wanted.includes(section) && kv[1]!.toLowerCase() === 'region') {
      return kv[2]!.trim() || undefined;
    }
  }
  return undefined;
}

/**
 * The S3 clients of one run: one per endpoint + region + profile (in practice one, since they all come from the
 * same environment). Honours the standard AWS environment: AWS_PROFILE, AWS_REGION / AWS_DEFAULT_REGION (else
 * the profile's region, else us-east-1; buckets elsewhere are followed by region redirects),
 * AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, and AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL
 * for S3-compatible stores (path-style addressing is used when an endpoint is set).
 */
export class S3Clients {
  private readonly env: NodeJS.ProcessEnv;
  private readonly clients = new Map<string, ClientEntry>();
  readonly partSize: number;

  constructor(opts: { env: NodeJS.ProcessEnv; partSize?: number }) {
    this.env = opts.env;
    this.partSize = opts.partSize ?? DEFAULT_PART_SIZE;
  }

  get(url: string): ClientEntry {
    const env = this.env;
    const endpoint = env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS
      ? undefined
      : env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined;
    if (endpoint) {
      try {
        new URL(endpoint);
      } catch {
        throw new UserError(
          `${url}: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL "${endpoint}" is not a valid URL`,
        );
      }
    }
    const profile = env.AWS_PROFILE || undefined;
    const envRegion = env.AWS_REGION || env.AWS_DEFAULT_REGION || undefined;
    const key = `${endpoint ?? ''}|${envRegion ?? ''}|${profile ?? ''}`;
    let entry = this.clients.get(key);
    if (!entry) {
      const config: S3ClientConfig = {
        region: envRegion ?? (() => this.defaultRegion(profile ?? 'default')),
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        followRegionRedirects: true,
        requestHandler: { connectionTimeout: CONNECT_TIMEOUT_MS, socketTimeout: IDLE_TIMEOUT_MS },
      };
      if (endpoint) {
        config.endpoint = endpoint;
        config.forcePathStyle = true;
      }
      if (profile) config.profile = profile;
      if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) {
        config.credentials = {
          accessKeyId: env.AWS_ACCESS_KEY_ID,
          secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
          ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
        };
      }
      entry = { client: annotateEndpoint(new S3Client(config)), endpointName: endpoint ?? 'AWS S3' };
      this.clients.set(key, entry);
    }
    return entry;
  }

  private async defaultRegion(profile: string): Promise<string> {
    const file = this.env.AWS_CONFIG_FILE || `${this.env.HOME || homedir()}/.aws/config`;
    try {
      return profileRegion(await readFile(file, 'utf8'), profile) ?? 'us-east-1';
    } catch {
      return 'us-east-1';
    }
  }

  close(): void {
    for (const e of this.clients.values()) e.client.destroy();
    this.clients.clear();
  }
}

function errName(err: unknown): string {
  const e = err as { name?: string; Code?: string } | undefined;
  return e?.Code ?? e?.name ?? '';
}

function netCode(err: unknown): string | undefined {
  let e = err as { code?: unknown; cause?: unknown; errors?: unknown[] } | undefined;
  for (let i = 0; e && i < 4; i++) {
    if (typeof e.code === 'string') return e.code;
    if (Array.isArray(e.errors) && e.errors.length) e = e.errors[0] as typeof e;
    else e = e.cause as typeof e;
  }
  return undefined;
}

/**
 * The ETags S3 can give the local file: the MD5 of a single PUT, and the multipart form (MD5 of the parts'
 * MD5s, with and without the `-N` suffix some S3-compatible stores leave out) for parts of `partSize`.
 */
export async function expectedEtags(path: string, partSize: number): Promise<Set<string>> {
  const whole = createHash('md5');
  const parts: Buffer[] = [];
  let part = createHash('md5');
  let inPart = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) {
    let buf = chunk as Buffer;
    whole.update(buf);
    while (buf.length > 0) {
      const take = Math.min(buf.length, partSize - inPart);
      part.update(buf.subarray(0, take));
      inPart += take;
      buf = buf.subarray(take);
      if (inPart === partSize) {
        parts.push(part.digest());
        part = createHash('md5');
        inPart = 0;
      }
    }
  }
  if (inPart > 0 || parts.length === 0) parts.push(part.digest());
  const multi = createHash('md5').update(Buffer.concat(parts)).digest('hex');
  return new Set([whole.digest('hex'), `${multi}-${parts.length}`, multi]);
}

/** `s3://bucket/prefix`: objects `<prefix>/<file>`. */
export class S3Storage extends BaseStorage {
  protected override readonly leavesTemps = false;
  private readonly loc: S3Location;
  private readonly clients: S3Clients;

  constructor(url: string, loc: S3Location, clients: S3Clients, log: Logger, opts: BaseStorageOptions = {}) {
    super(url, log, opts);
    this.loc = loc;
    this.clients = clients;
  }

  private key(name: string): string {
    return this.loc.prefix ? `${this.loc.prefix}/${name}` : name;
  }

  private get client(): S3Client {
    return this.clients.get(this.url).client;
  }

  protected async putFile(localPath: string, name: string, metadata?: Record<string, string>): Promise<void> {
    // a single PUT, or a multipart upload that only becomes visible when completed
    const upload = new Upload({
      client: this.client,
      params: {
        Bucket: this.loc.bucket,
        Key: this.key(name),
        Body: createReadStream(localPath),
        ...(metadata ? { Metadata: metadata } : {}),
      },
      partSize: this.clients.partSize,
      queueSize: 4,
      leavePartsOnError: false,
    });
    await upload.done();
  }

  private async head(name: string): Promise<HeadObjectCommandOutput> {
    try {
      return await this.client.send(new HeadObjectCommand({ Bucket: this.loc.bucket, Key: this.key(name) }));
    } catch (err) {
      if (errName(err) === 'NotFound' || errName(err) === 'NoSuchKey') throw new NotFoundError(name);
      throw err;
    }
  }

  /**
   * The data object carries its sha512 as object metadata (written atomically with the data), and is checked
   * right after the upload: size, that metadata, and the ETag against the MD5s of the local file (except for
   * KMS-encrypted objects, whose ETag is no MD5). Only then is its .sha512 written (putChecksum).
   */
  protected override async putData(localPath: string, name: string, sha512: string): Promise<void> {
    await this.putFile(localPath, name, { sha512 });
    const [size, etags] = await Promise.all([
      stat(localPath).then((st) => st.size),
      expectedEtags(localPath, this.clients.partSize),
    ]);
    let problem = '';
    // a store that is being written by another writer may briefly show a half-updated object: look again
    for (let attempt = 0; attempt < 3; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, 100 * attempt));
      const h = await this.head(name);
      if (h.Metadata?.sha512 !== sha512) {
        throw new UserError(
          `${this.where(name)}: replaced by another writer right after this upload (is another run storing the ` +
            'same image?); its checksum is not written, run again',
        );
      }
      const etag = (h.ETag ?? '').replace(/"/g, '');
      const kms = String(h.ServerSideEncryption ?? '').startsWith('aws:kms');
      if (h.ContentLength === size && (kms || etags.has(etag))) return;
      problem = `size ${h.ContentLength} of ${size}, ETag ${etag || 'none'}`;
    }
    throw new UserError(
      `${this.where(name)}: the stored object does not match the uploaded file (${problem}); its checksum is ` +
        'not written, run again',
    );
  }

  /**
   * Write `<name>.sha512` from the checksum the stored data object carries, then check that the data object
   * still carries it: when another writer replaced the data meanwhile, write its checksum instead. Whoever
   * writes the checksum last checks after writing, so the pair cannot end up disagreeing.
   */
  protected override async putChecksum(
    localSum: string,
    sumName: string,
    name: string,
    sha512: string,
  ): Promise<void> {
    let written: string | undefined;
    for (let attempt = 0; attempt < 5; attempt++) {
      const current = (await this.head(name)).Metadata?.sha512;
      if (current === undefined) {
        // written by something else than this tool: nothing to compare with
        await this.putFile(localSum, sumName);
        return;
      }
      if (current === written) {
        if (current !== sha512) {
          this.log.warn(
            { storage: this.url, file: name },
            `${name} was stored by another writer at the same time; the store keeps its copy and checksum`,
          );
        }
        return;
      }
      await this.client.send(
        new PutObjectCommand({ Bucket: this.loc.bucket, Key: this.key(sumName), Body: `${current}\n` }),
      );
      written = current;
    }
    throw new UserError(`${this.where(name)}: keeps changing while its checksum is written; run again`);
  }

  protected async getFile(name: string, localPath: string): Promise<void> {
    const out = await this.get(name);
    await pipeline(out, createWriteStream(localPath, { flags: 'wx' }));
  }

  protected async readSmall(name: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const c of await this.get(name)) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  private async get(name: string): Promise<Readable> {
    try {
      const res = await this.client.send(
        new GetObjectCommand({ Bucket: this.loc.bucket, Key: this.key(name) }),
      );
      if (!(res.Body instanceof Readable)) throw new Error('GetObject returned no stream body');
      return res.Body;
    } catch (err) {
      if (errName(err) === 'NoSuchKey') throw new NotFoundError(name);
      throw err;
    }
  }

  protected async listNames(): Promise<string[]> {
    const prefix = this.loc.prefix ? `${this.loc.prefix}/` : '';
    const names: string[] = [];
    let token: string | undefined;
    do {
      const res: ListObjectsV2CommandOutput = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.loc.bucket,
          Prefix: prefix,
          Delimiter: '/',
          ...(token ? { ContinuationToken: token } : {}),
        }),
      );
      for (const o of res.Contents ?? []) {
        if (o.Key?.startsWith(prefix)) names.push(o.Key.slice(prefix.length));
      }
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
    return names.filter((n) => n !== '' && !n.includes('/'));
  }

  protected async removeName(name: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.loc.bucket, Key: this.key(name) }));
    } catch (err) {
      if (errName(err) !== 'NoSuchKey') throw err;
    }
  }

  protected describe(err: unknown): string {
    const foreign = foreignResponse(err);
    if (foreign) return foreign;
    const name = errName(err);
    const endpoint = this.clients.get(this.url).endpointName;
    if (name === 'NoSuchBucket') return `bucket "${this.loc.bucket}" does not exist`;
    if (['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken'].includes(name)) {
      return `access denied (${name}); check the AWS credentials`;
    }
    if (name === 'CredentialsProviderError') return `no AWS credentials found (${errorMessage(err)})`;
    const code = netCode(err);
    if (code === 'ECONNREFUSED') return `cannot reach ${endpoint}: connection refused`;
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN')
      return `cannot reach ${endpoint}: host name does not resolve`;
    if (code === 'ETIMEDOUT' || name === 'TimeoutError')
      return `cannot reach ${endpoint}: connection timed out`;
    if (code) return `cannot reach ${endpoint}: ${code}`;
    return name && !errorMessage(err).includes(name) ? `${name}: ${errorMessage(err)}` : errorMessage(err);
  }

  private cond: ConditionalOps | undefined;

  /**
   * Create-only and compare-and-swap writes: PutObject with If-None-Match: * or If-Match: <ETag>, DeleteObject
   * with If-Match. A store that does not honour these headers accepts every write; the probe (lease.ts) finds
   * that out before sharded work starts.
   */
  get conditional(): ConditionalOps {
    if (this.cond) return this.cond;
    const bucket = this.loc.bucket;
    let count = 0;
    const failedCondition = (err: unknown) => {
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      const name = errName(err);
      // 412: the condition did not hold; 409 ConditionalRequestConflict: a concurrent conditional write won;
      // 404 on If-Match: the object is gone
      return (
        status === 412 ||
        status === 409 ||
        name === 'PreconditionFailed' ||
        name === 'NoSuchKey' ||
        status === 404
      );
    };
    const guard = async <T>(what: string, name: string, fn: () => Promise<T>): Promise<T> => {
      count++;
      try {
        return await fn();
      } catch (err) {
        throw new UserError(`${this.where(name)}: ${what} failed: ${this.describe(err)}`);
      }
    };
    this.cond = {
      get requests() {
        return count;
      },
      read: (name) =>
        guard('conditional read', name, async (): Promise<VersionedObject | undefined> => {
          try {
            const res = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: this.key(name) }));
            if (!(res.Body instanceof Readable)) throw new Error('GetObject returned no stream body');
            const chunks: Buffer[] = [];
            for await (const c of res.Body) chunks.push(c as Buffer);
            if (!res.ETag) throw new Error('GetObject returned no ETag');
            return { data: Buffer.concat(chunks), etag: res.ETag };
          } catch (err) {
            if (errName(err) === 'NoSuchKey') return undefined;
            throw err;
          }
        }),
      create: (name, data) =>
        guard('create-only write', name, async () => {
          try {
            const res = await this.client.send(
              new PutObjectCommand({ Bucket: bucket, Key: this.key(name), Body: data, IfNoneMatch: '*' }),
            );
            if (!res.ETag) throw new Error('PutObject returned no ETag');
            return res.ETag;
          } catch (err) {
            if (failedCondition(err)) return undefined;
            throw err;
          }
        }),
      replace: (name, data, etag) =>
        guard('compare-and-swap write', name, async () => {
          try {
            const res = await this.client.send(
              new PutObjectCommand({ Bucket: bucket, Key: this.key(name), Body: data, IfMatch: etag }),
            );
            if (!res.ETag) throw new Error('PutObject returned no ETag');
            return res.ETag;
          } catch (err) {
            if (failedCondition(err)) return undefined;
            throw err;
          }
        }),
      remove: (name, etag) =>
        guard('conditional delete', name, async () => {
          try {
            await this.client.send(
              new DeleteObjectCommand({ Bucket: bucket, Key: this.key(name), IfMatch: etag }),
            );
            return true;
          } catch (err) {
            if (failedCondition(err)) return false;
            throw err;
          }
        }),
    };
    return this.cond;
  }
}
