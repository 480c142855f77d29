// Conditional writes and leases against real stores: file://, ssh:// (a real sshd), S3 on moto_server (which
// implements If-None-Match / If-Match), and s3rver as the store that does not (the probe must refuse it).
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConditionalOps } from '../../src/storage/conditional.js';
import { createStoragePool } from '../../src/storage/index.js';
import { LeaseLostError, LeaseManager, probeConditionalWrites } from '../../src/storage/lease.js';
import type { Storage, StoragePool } from '../../src/storage/types.js';
import { type MotoHandle, motoUnavailableReason, startMoto } from '../helpers/moto.js';
import { type S3rverHandle, startS3rver } from '../helpers/s3rver.js';
import { type SshdHandle, sshdUnavailableReason, startSshd } from '../helpers/sshd.js';

const log = pino({ level: 'silent' });
const noMoto = motoUnavailableReason();
const noSshd = sshdUnavailableReason();
if (noMoto) console.warn(`skipping the S3 (moto) conditional-write tests: ${noMoto}`);
if (noSshd) console.warn(`skipping the ssh:// conditional-write tests: ${noSshd}`);

let root: string;
let moto: MotoHandle | undefined;
let sshd: SshdHandle | undefined;
const pools: StoragePool[] = [];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'cib-cond-'));
  [moto, sshd] = await Promise.all([noMoto ? undefined : startMoto(), noSshd ? undefined : startSshd()]);
  if (moto) await createBucket(moto.env, 'leases');
}, 60_000);

afterAll(async () => {
  for (const p of pools) await p.close();
  await moto?.stop();
  await sshd?.stop();
  await rm(root, { recursive: true, force: true });
});

async function createBucket(env: Record<string, string>, bucket: string): Promise<void> {
  const client = new S3Client({
    endpoint: env.AWS_ENDPOINT_URL!,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY! },
  });
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  client.destroy();
}

/** A fresh pool (one "worker") on the backend. */
function pool(env: Record<string, string> = {}): StoragePool {
  const p = createStoragePool({ log, env: { ...process.env, ...env } });
  pools.push(p);
  return p;
}

interface Backend {
  name: string;
  skip?: string | undefined;
  /** a storage URL and the env its pool needs */
  url(dir: string): { url: string; env: Record<string, string> };
}

const BACKENDS: Backend[] = [
  { name: 'file://', url: (dir) => ({ url: `file://${root}/${dir}`, env: {} }) },
  {
    name: 'ssh://',
    skip: noSshd,
    url: (dir) => ({ url: `${sshd!.urlPrefix}/${dir}`, env: sshd!.env }),
  },
  { name: 's3:// (moto)', skip: noMoto, url: (dir) => ({ url: `s3://leases/${dir}`, env: moto!.env }) },
];

for (const b of BACKENDS) {
  describe.skipIf(Boolean(b.skip))(`conditional writes on ${b.name}`, () => {
    const open = (dir: string): { storage: Storage; ops: ConditionalOps; other: () => ConditionalOps } => {
      const { url, env } = b.url(dir);
      const storage = pool(env).get(url);
      return { storage, ops: storage.conditional!, other: () => pool(env).get(url).conditional! };
    };

    it('create is create-only, replace and remove compare the version', async () => {
      const { ops, storage } = open('cas');
      const e1 = await ops.create('a.json', Buffer.from('{"v":1}'));
      expect(e1).toBeTruthy();
      expect(await ops.create('a.json', Buffer.from('{"v":2}'))).toBeUndefined();
      expect((await ops.read('a.json'))?.data.toString()).toBe('{"v":1}');
      expect((await ops.read('a.json'))?.etag).toBe(e1);
      const e2 = await ops.replace('a.json', Buffer.from('{"v":3}'), e1!);
      expect(e2).toBeTruthy();
      expect(e2).not.toBe(e1);
      // a stale version loses, and so does a replace of a missing object
      expect(await ops.replace('a.json', Buffer.from('{"v":4}'), e1!)).toBeUndefined();
      expect(await ops.replace('missing.json', Buffer.from('{"v":5}'), e2!)).toBeUndefined();
      expect(await ops.read('missing.json')).toBeUndefined();
      const e3 = await ops.replace('a.json', Buffer.from('{"v":6}'), e2!, { visible: true });
      expect(e3).toBeTruthy();
      expect(await ops.remove('a.json', e2!)).toBe(false);
      expect(await ops.remove('a.json', e3!)).toBe(true);
      expect(await ops.read('a.json')).toBeUndefined();
      // nothing is left beside the objects (temporary names, renamed-away versions)
      expect(await storage.list('*')).toEqual([]);
      if (b.name === 'file://') expect(await readdir(join(root, 'cas'))).toEqual([]);
    });

    it('of 8 workers racing for one create or one version, exactly one wins', async () => {
      const workers = Array.from({ length: 8 }, () => open('race').other());
      for (let round = 0; round < 5; round++) {
        const created = await Promise.all(
          workers.map((w, i) => w.create(`k${round}.json`, Buffer.from(`{"w":${i}}`))),
        );
        expect(created.filter(Boolean)).toHaveLength(1);
        const base = (await workers[0]!.read(`k${round}.json`))!;
        const replaced = await Promise.all(
          workers.map((w, i) => w.replace(`k${round}.json`, Buffer.from(`{"r":${i}}`), base.etag)),
        );
        expect(replaced.filter(Boolean)).toHaveLength(1);
        const winner = replaced.findIndex(Boolean);
        expect((await workers[0]!.read(`k${round}.json`))!.data.toString()).toBe(`{"r":${winner}}`);
      }
    });

    it('passes the probe and leaves nothing behind', async () => {
      const { ops, storage } = open('probe');
      expect(await probeConditionalWrites(ops, (n) => storage.remove(n))).toEqual([]);
      expect(await storage.list('*')).toEqual([]);
    });

    it('leases: busy for others, renewed, taken over once expired, lost by the old holder', async () => {
      const { ops, storage } = open('leases');
      let now = Date.parse('2026-11-29T10:00:00Z');
      const clock = () => new Date(now);
      const settings = { ttlMs: 10_000, renewEveryMs: 3_600_000, runId: 'run-1', log, now: clock };
      const a = new LeaseManager({ ...settings, holder: 'worker-a' });
      const b = new LeaseManager({ ...settings, holder: 'worker-b' });
      const ga = await a.acquire(ops, 'img-1', storage.url);
      expect(ga.kind).toBe('acquired');
      const lease = ga.kind === 'acquired' ? ga.lease : undefined;
      const gb = await b.acquire(ops, 'img-1', storage.url);
      expect(gb).toMatchObject({ kind: 'busy', holder: { holder: 'worker-a', run_id: 'run-1' } });
      // renewal pushes the expiry on
      now += 5_000;
      await lease!.renew();
      expect(lease!.record.expires).toBe(new Date(now + 10_000).toISOString());
      now += 9_000;
      expect((await b.acquire(ops, 'img-1', storage.url)).kind).toBe('busy');
      // a's clock passes the expiry (minus the skew): a counts its lease lost before anyone may take it
      now += 10_000;
      expect(() => lease!.check()).toThrow(LeaseLostError);
      const taken = await b.acquire(ops, 'img-1', storage.url);
      expect(taken).toMatchObject({ kind: 'acquired', tookOver: { holder: 'worker-a' } });
      // a late renewal by a cannot win the lease back
      await lease!.renew();
      expect(lease!.lost).toBe(true);
      if (taken.kind === 'acquired') await taken.lease.release();
      await lease!.release();
      expect(await storage.list('*')).toEqual([]);
    });

    it('leases: a failed image is skipped by its run and taken over by the next run', async () => {
      const { ops, storage } = open('failed');
      const settings = { ttlMs: 60_000, runId: 'run-1', log };
      const a = new LeaseManager({ ...settings, holder: 'worker-a' });
      const got = await a.acquire(ops, 'img-2', storage.url);
      if (got.kind !== 'acquired') throw new Error('not acquired');
      await got.lease.fail('local: packer build failed');
      const sameRun = await new LeaseManager({ ...settings, holder: 'worker-b' }).acquire(
        ops,
        'img-2',
        storage.url,
      );
      expect(sameRun).toMatchObject({ kind: 'failed', holder: { error: 'local: packer build failed' } });
      const next = await new LeaseManager({ ...settings, runId: 'run-2' }).acquire(ops, 'img-2', storage.url);
      expect(next.kind).toBe('acquired');
      if (next.kind === 'acquired') await next.lease.release();
      expect(await storage.list('*')).toEqual([]);
    });
  });
}

describe('a store without conditional writes (s3rver)', () => {
  let s3: S3rverHandle;
  beforeAll(async () => {
    s3 = await startS3rver({ buckets: ['bad'] });
  }, 60_000);
  afterAll(async () => {
    await s3?.stop();
  });

  it('fails the probe, which says what is missing', async () => {
    const storage = pool(s3.env).get('s3://bad/x/.leases');
    const problems = await probeConditionalWrites(storage.conditional!, (n) => storage.remove(n));
    expect(problems).toEqual([
      'a create-only write (If-None-Match: *) of an existing key succeeded; expected 412 Precondition Failed',
      'a compare-and-swap write (If-Match) with a stale ETag succeeded; expected 412 Precondition Failed',
      'a compare-and-swap write (If-Match) against a missing key succeeded; expected it to fail',
    ]);
    expect(await storage.list('*')).toEqual([]);
  });
});
