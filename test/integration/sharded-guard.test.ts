// What a sharded worker may write for an image: only while it holds the image's lease, and its metadata only
// over the version it loaded (compare-and-swap), on file:// storage.
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Image } from '../../src/state/image.js';
import { leasedPool, leaseUrl } from '../../src/steps/sharded.js';
import { createStoragePool } from '../../src/storage/index.js';
import { LeaseLostError, LeaseManager } from '../../src/storage/lease.js';
import type { StoragePool } from '../../src/storage/types.js';
import { sampleConfig } from '../fixtures/local/sample.js';

const log = pino({ level: 'silent' });
let root: string;
let pool: StoragePool;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'cib-guard-'));
  pool = createStoragePool({ log, env: process.env });
});
afterAll(async () => {
  await pool.close();
  await rm(root, { recursive: true, force: true });
});

async function setup(name: string) {
  const store = join(root, name, 'store');
  const image = new Image(sampleConfig({ storage_url: `file://${store}` }), join(root, name, 'work'));
  await mkdir(image.localDir, { recursive: true });
  await writeFile(image.metadataPath, 'name: first\n');
  await writeFile(join(image.localDir, 'data.bin'), 'data');
  let now = Date.parse('2026-11-29T10:00:00Z');
  const mgr = new LeaseManager({
    ttlMs: 10_000,
    renewEveryMs: 3_600_000,
    runId: 'r',
    log,
    now: () => new Date(now),
  });
  const url = leaseUrl(image.storageUrl!);
  const got = await mgr.acquire(pool.get(url).conditional!, image.config.image_key, url);
  if (got.kind !== 'acquired') throw new Error('no lease');
  return { store, image, lease: got.lease, advance: (ms: number) => (now += ms) };
}

describe('a sharded worker writes only under its lease', () => {
  it('stores and removes nothing once its lease has run out', async () => {
    const { store, image, lease, advance } = await setup('expired');
    const view = leasedPool(pool, image, lease, new Map()).get(image.storageUrl!);
    await view.store(image.localDir, ['data.bin']);
    expect(await readdir(store)).toContain('data.bin');
    advance(9_500); // past expiry minus the skew margin: counted as lost before anyone may take it over
    await expect(view.store(image.localDir, [image.metadataFile], { checksum: true })).rejects.toThrow(
      LeaseLostError,
    );
    await expect(view.remove(['data.bin'])).rejects.toThrow(/lease lost \(not renewed before it expired/);
    expect((await readdir(store)).sort()).toEqual(['.leases', 'data.bin']);
  });

  it('writes metadata compare-and-swap: a version it did not load is never overwritten', async () => {
    const { store, image, lease } = await setup('cas');
    const tags = new Map<string, string | null>([[image.metadataFile, null]]);
    const view = leasedPool(pool, image, lease, tags).get(image.storageUrl!);
    await view.store(image.localDir, [image.metadataFile], { checksum: true });
    expect(await readFile(join(store, image.metadataFile), 'utf8')).toBe('name: first\n');
    expect(await readFile(join(store, `${image.metadataFile}.sha512`), 'utf8')).toMatch(/^[0-9a-f]{128}\n$/);
    await writeFile(image.metadataPath, 'name: second\n');
    await view.store(image.localDir, [image.metadataFile], { checksum: true });
    expect(await readFile(join(store, image.metadataFile), 'utf8')).toBe('name: second\n');
    // someone else records something for this image (a worker that took the lease over, say)
    await writeFile(join(store, image.metadataFile), 'name: published-by-another-worker\n');
    await writeFile(image.metadataPath, 'name: third\n');
    await expect(view.store(image.localDir, [image.metadataFile], { checksum: true })).rejects.toThrow(
      /changed since this worker loaded it: another worker recorded something for this image/,
    );
    expect(await readFile(join(store, image.metadataFile), 'utf8')).toBe(
      'name: published-by-another-worker\n',
    );
    // a worker that believed the metadata absent cannot create it over another's
    const fresh = leasedPool(pool, image, lease, new Map([[image.metadataFile, null]])).get(
      image.storageUrl!,
    );
    await expect(fresh.store(image.localDir, [image.metadataFile])).rejects.toThrow(LeaseLostError);
    await lease.release();
    expect(await readdir(join(store, '.leases'))).toEqual([]);
  });
});
