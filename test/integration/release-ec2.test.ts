/**
 * Catalog and prune with real AWS artifacts: the AWS plugin imports and publishes revisions into the EC2 emulator
 * (over the SDK, with s3rver for the import bucket); their artifacts go into file:// storage metadata as the
 * pipeline records them; then the catalog is written and prune lists and removes from storage and the emulator.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getCloud } from '../../src/clouds/index.js';
import type { CloudContext } from '../../src/clouds/types.js';
import type { ImageConfig } from '../../src/config/types.js';
import { generateCatalog, type PruneItem, prune } from '../../src/release/index.js';
import { Image } from '../../src/state/image.js';
import { emptyState } from '../../src/state/image-state.js';
import { createStoragePool } from '../../src/storage/index.js';
import type { StoragePool } from '../../src/storage/types.js';
import { silentLogger } from '../../src/util/log.js';
import {
  awsTestEnv,
  captureContext,
  type Ec2Emulator,
  startEc2,
  writeFixedVhd,
} from '../helpers/ec2-emulator.js';
import { type S3rverHandle, startS3rver } from '../helpers/s3rver.js';
import { type StoredRevisionFixture, storeRevision, treeFiles, variant } from '../unit/release-fixtures.js';

const aws = getCloud('aws');
const REGIONS = { 'us-west-2': true, 'us-east-1': true };

let s3: S3rverHandle;
let emu: Ec2Emulator;
let root: string;
let storageRoot: string;
let pool: StoragePool;
let ctx: CloudContext;
let p: ImageConfig;
let x: ImageConfig;
const artifacts: Record<string, Record<string, string>> = {};
const importIds: Record<string, string> = {};
const stored: Record<string, StoredRevisionFixture> = {};

async function importAndPublish(cfg: ImageConfig, revision: number, publish: boolean): Promise<void> {
  const image = new Image(cfg, join(root, 'work'), emptyState(revision));
  await writeFixedVhd(image.imagePath, 1);
  const imp = await aws.importImage!(image, ctx);
  Object.assign(image.config, imp);
  importIds[image.imageName] = imp.import_id;
  if (!publish) return;
  const pub = await aws.publishImage!(image, ctx);
  expect(pub.failures).toEqual([]);
  artifacts[image.imageName] = pub.artifacts;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'release-ec2-'));
  storageRoot = join(root, 'storage');
  s3 = await startS3rver({ buckets: [] });
  emu = await startEc2({ s3Endpoint: s3.endpoint });
  const env = { ...s3.env, ...awsTestEnv(emu.url) };
  ctx = captureContext({ env, workDir: join(root, 'work') }).ctx;
  const extra = { regions: REGIONS, access: { PUBLIC: true } };
  p = variant({ version: '3.21', release: '3.21.2', storageRoot, revision: 3, extra });
  x = variant({
    version: '3.18',
    release: '3.18.12',
    firmware: 'bios',
    storageRoot,
    endOfLife: '2024-05-09',
    extra,
  });

  // P: r0 and r1 published and released, r2 imported then abandoned, r3 imported (in progress)
  await importAndPublish(p, 0, true);
  await importAndPublish(p, 1, true);
  await importAndPublish(p, 2, false);
  await importAndPublish(p, 3, false);
  // X: an end-of-life version, published and released
  await importAndPublish(x, 0, true);

  const name = (cfg: ImageConfig, r: number) => new Image(cfg, root, emptyState(r)).imageName;
  stored.p0 = await storeRevision(p, 0, {
    released: '2025-02-01T00:00:00Z',
    artifacts: artifacts[name(p, 0)]!,
  });
  stored.p1 = await storeRevision(p, 1, {
    released: '2025-03-01T00:00:00Z',
    artifacts: artifacts[name(p, 1)]!,
  });
  stored.p2 = await storeRevision(p, 2, {});
  stored.p3 = await storeRevision(p, 3, {});
  stored.x0 = await storeRevision(x, 0, {
    released: '2024-01-01T00:00:00Z',
    artifacts: artifacts[name(x, 0)]!,
  });
  // someone launched r0 in us-east-1
  const launched = emu.region('us-east-1').images.get(artifacts[name(p, 0)]!['us-east-1']!)!;
  launched.lastLaunchedTime = '2025-04-01T12:00:00Z';
  pool = createStoragePool({ log: silentLogger(), env: process.env });
}, 120_000);

afterAll(async () => {
  await pool?.close();
  await emu?.close();
  await s3?.stop();
  await rm(root, { recursive: true, force: true });
});

const images = () => [p, x].map((c) => new Image(c, join(root, 'work')));

describe('catalog from emulator-published artifacts', () => {
  it('lists the newest released revision with the AMI ids publish recorded, per region', async () => {
    const { catalog } = await generateCatalog({
      images: images(),
      pool,
      outDir: join(root, 'catalog'),
      log: silentLogger(),
    });
    const e = catalog.latest['stable/x86_64/uefi/tiny/vm/aws']!;
    expect(e.name).toBe('aws_alpine-3.21.2-x86_64-uefi-tiny-r1');
    const published = artifacts['aws_alpine-3.21.2-x86_64-uefi-tiny-r1']!;
    expect(Object.keys(published).sort()).toEqual(['us-east-1', 'us-west-2']);
    expect(e.regions.map((r) => [r.region, r.image_id])).toEqual([
      ['us-east-1', published['us-east-1']],
      ['us-west-2', published['us-west-2']],
    ]);
    for (const r of e.regions) {
      expect(emu.images(r.region).find((i) => i.id === r.image_id)?.state).toBe('available');
      expect(r.region_url).toContain(r.image_id);
      expect(r.launch_url).toContain(r.image_id);
    }
    expect(e.checksum).toEqual({ sha512: stored.p1!.sha512 });
  });
});

describe('prune against the EC2 emulator', () => {
  const pruneCtx = (really: boolean) => ({
    images: images(),
    pool,
    clouds: getCloud,
    cloudContext: ctx,
    really,
    now: new Date(),
    log: silentLogger(),
  });
  const amiIds = (names: string[]) =>
    names.flatMap((n) => (artifacts[n] ? Object.values(artifacts[n]!) : [importIds[n]!])).sort();
  const selected = () =>
    amiIds([
      'aws_alpine-3.21.2-x86_64-uefi-tiny-r0',
      'aws_alpine-3.21.2-x86_64-uefi-tiny-r2',
      'aws_alpine-3.18.12-x86_64-bios-tiny-r0',
    ]);
  let dry: PruneItem[];

  it('dry run lists old, unreleased and end-of-life AMIs (every region) and storage revisions', async () => {
    const before = await treeFiles(storageRoot);
    const amisBefore = emu.images().length;
    dry = await prune(pruneCtx(false));
    const cloud = dry.filter((i) => i.where === 'cloud');
    expect(cloud.map((i) => i.id).sort()).toEqual(selected());
    expect(cloud).toHaveLength(5);
    expect(
      cloud
        .filter((i) => i.reason === 'old-revision')
        .map((i) => i.region)
        .sort(),
    ).toEqual(['us-east-1', 'us-west-2']);
    const r2 = cloud.find((i) => i.reason === 'unreleased')!;
    expect(r2).toMatchObject({ region: 'us-west-2', public: false, revision: 2 });
    expect(cloud.filter((i) => i.reason === 'end-of-life')).toHaveLength(2);
    const launched = cloud.find((i) => i.lastLaunched)!;
    expect(launched.what).toContain('(public, last launched 2025-04-01T12:00:00');
    for (const i of cloud) {
      const ami = emu.images(i.region).find((a) => a.id === i.id)!;
      expect(i.snapshotIds).toEqual([ami.blockDevices[0]!.snapshotId]);
    }
    expect(
      dry
        .filter((i) => i.where === 'storage')
        .map((i) => `${i.reason} ${i.name}`)
        .sort(),
    ).toEqual([
      'end-of-life aws_alpine-3.18.12-x86_64-bios-tiny-r0',
      'old-revision aws_alpine-3.21.2-x86_64-uefi-tiny-r0',
      'unreleased aws_alpine-3.21.2-x86_64-uefi-tiny-r2',
    ]);
    expect(await treeFiles(storageRoot)).toEqual(before);
    expect(emu.images()).toHaveLength(amisBefore);
    expect(emu.calls.filter((c) => c.action === 'DeregisterImage')).toHaveLength(0);
  });

  it('really deregisters exactly those AMIs, deletes their snapshots, and removes their storage files', async () => {
    const snapsOf = (ids: string[]) =>
      emu
        .images()
        .filter((i) => ids.includes(i.id))
        .map((i) => i.blockDevices[0]!.snapshotId!);
    const selectedAmis = selected();
    const doomedSnaps = snapsOf(selectedAmis);
    const keptAmis = emu
      .images()
      .map((i) => i.id)
      .filter((id) => !selectedAmis.includes(id))
      .sort();
    expect(keptAmis).toEqual(
      amiIds(['aws_alpine-3.21.2-x86_64-uefi-tiny-r1', 'aws_alpine-3.21.2-x86_64-uefi-tiny-r3']),
    );
    const before = await treeFiles(storageRoot);

    const items = await prune(pruneCtx(true));
    expect(items.map((i) => i.what)).toEqual(dry.map((i) => i.what));
    expect(items.every((i) => i.removed && !i.error)).toBe(true);
    expect(
      emu
        .images()
        .map((i) => i.id)
        .sort(),
    ).toEqual(keptAmis);
    const snapsLeft = emu.snapshots().map((s) => s.id);
    for (const s of doomedSnaps) expect(snapsLeft).not.toContain(s);
    expect(snapsLeft.sort()).toEqual(snapsOf(keptAmis).sort());
    const gone = ['p0', 'p2', 'x0'].flatMap((k) =>
      stored[k]!.files.map((f) => relative(storageRoot, join(stored[k]!.dir, f))),
    );
    expect(await treeFiles(storageRoot)).toEqual(before.filter((f) => !gone.includes(f)));

    // nothing left to prune
    expect(await prune(pruneCtx(false))).toEqual([]);
  });
});
