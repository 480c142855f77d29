// Prune on a file:// storage tree and an in-memory cloud: dry run lists, `really` removes exactly the selection.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CloudImage, CloudPlugin } from '../../src/clouds/types.js';
import { formatPruneReport, type PruneItem, prune } from '../../src/release/index.js';
import type { Image } from '../../src/state/image.js';
import { createStoragePool } from '../../src/storage/index.js';
import type { StoragePool } from '../../src/storage/types.js';
import { silentLogger } from '../../src/util/log.js';
import {
  atRelease,
  imageOf,
  PROJECT,
  type StoredRevisionFixture,
  storeRevision,
  treeFiles,
  variant,
} from './release-fixtures.js';

const NOW = new Date('2025-06-01T00:00:00Z');

/** A cloud that keeps its images in memory and records deletions. */
function memoryCloud(images: CloudImage[], failIds: string[] = []): CloudPlugin & { deleted: string[] } {
  const deleted: string[] = [];
  return {
    name: 'aws',
    actions: new Set(['import', 'publish', 'delete', 'list']),
    deleted,
    async listImages(filter) {
      return images.filter((i) => i.tags.project === filter.project && !deleted.includes(i.id));
    },
    async deleteCloudImage(img) {
      if (failIds.includes(img.id)) throw new Error(`InvalidAMIID.Unavailable: ${img.id} is busy`);
      deleted.push(img.id);
    },
  };
}

function ami(
  id: string,
  region: string,
  name: string,
  tags: Record<string, string>,
  extra: Partial<CloudImage> = {},
): CloudImage {
  return {
    region,
    id,
    name,
    tags: { project: PROJECT, ...tags },
    public: false,
    snapshotIds: [`snap-${id.slice(4)}`],
    ...extra,
  };
}

let root: string;
let storageRoot: string;
let pool: StoragePool;
let images: Image[];
let s: Record<string, StoredRevisionFixture>;
let cloudImages: CloudImage[];

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'prune-test-'));
  storageRoot = join(root, 'storage');
  const work = join(root, 'work');
  const p = variant({ version: '3.21', release: '3.21.2', storageRoot, revision: 3 });
  const q = variant({ version: '3.21', release: '3.21.2', firmware: 'bios', storageRoot });
  const x = variant({ version: '3.18', release: '3.18.12', storageRoot, endOfLife: '2025-05-09' });
  const n = variant({ version: '3.21', release: '3.21.2', cloud: 'nocloud', storageRoot, revision: 2 });
  images = [p, q, x, n].map((c) => imageOf(c, work));
  s = {
    pOld: await storeRevision(atRelease(p, '3.21.1'), 0, { released: '2024-12-01T00:00:00Z' }),
    p0: await storeRevision(p, 0, {
      released: '2025-02-01T00:00:00Z',
      artifacts: { 'us-east-1': 'ami-p0e' },
    }),
    p1: await storeRevision(p, 1, { released: '2025-03-01T00:00:00Z', signed: '2025-03-01T00:00:00Z' }),
    // files left without metadata (an upload interrupted before its metadata)
    p2: await storeRevision(p, 2, { metadata: false }),
    p3: await storeRevision(p, 3, {}),
    q0: await storeRevision(q, 0, { released: '2025-03-01T00:00:00Z' }),
    x0: await storeRevision(x, 0, { released: '2024-01-01T00:00:00Z' }),
    x1: await storeRevision(x, 1, { released: '2024-02-01T00:00:00Z', artifacts: { 'us-east-1': 'ami-x1' } }),
    n0: await storeRevision(n, 0, {}),
    n1: await storeRevision(n, 1, {}),
    n2: await storeRevision(n, 2, {}),
  };
  const tags = (key: string, revision: number, more: Record<string, string> = {}) => ({
    image_key: key,
    revision: String(revision),
    end_of_life: '2099-11-01',
    version: '3.21',
    ...more,
  });
  const pk = p.image_key;
  cloudImages = [
    ami('ami-p0e', 'us-east-1', 'alpine-3.21.2-x86_64-uefi-tiny-r0', tags(pk, 0, { released: 'x' }), {
      public: true,
      lastLaunched: '2025-04-01T00:00:00Z',
    }),
    ami('ami-p0w', 'eu-west-1', 'alpine-3.21.2-x86_64-uefi-tiny-r0', tags(pk, 0), { public: true }),
    ami('snap-p0orphan', 'eu-west-1', 'alpine-3.21.2-x86_64-uefi-tiny-r0', tags(pk, 0), {
      kind: 'snapshot',
      snapshotIds: [],
    }),
    ami('ami-p1e', 'us-east-1', 'alpine-3.21.2-x86_64-uefi-tiny-r1', tags(pk, 1), { public: true }),
    ami('ami-p2', 'us-west-2', 'alpine-3.21.2-x86_64-uefi-tiny-r2', tags(pk, 2)),
    ami('ami-p3', 'us-east-1', 'alpine-3.21.2-x86_64-uefi-tiny-r3', tags(pk, 3)),
    ami('ami-x1', 'us-east-1', 'alpine-3.18.12-x86_64-uefi-tiny-r1', {
      ...tags(x.image_key, 1),
      version: '3.18',
      end_of_life: '2025-05-09',
    }),
    // a release storage knows nothing about: public images count as released
    ami(
      'ami-z0',
      'us-east-1',
      'alpine-3.21.0-x86_64-uefi-tiny-r0',
      tags('3.21.0-x86_64-uefi-tiny-vm-aws', 0),
      {
        public: true,
      },
    ),
    ami(
      'ami-z1',
      'us-east-1',
      'alpine-3.21.0-x86_64-uefi-tiny-r1',
      tags('3.21.0-x86_64-uefi-tiny-vm-aws', 1),
      {
        public: true,
      },
    ),
    // untagged and unknown: left alone
    ami('ami-odd', 'us-east-1', 'hand-made-image', {}),
  ];
  pool = createStoragePool({ log: silentLogger(), env: process.env });
});

afterEach(async () => {
  await pool.close();
  await rm(root, { recursive: true, force: true });
});

function ctxWith(cloud: CloudPlugin, really: boolean) {
  return {
    images,
    pool,
    clouds: (name: string) => {
      if (name === 'aws') return cloud;
      throw new Error(`unknown cloud ${name}`);
    },
    cloudContext: { log: silentLogger(), useBroker: false, env: {}, workDir: join(root, 'work') },
    really,
    now: NOW,
    log: silentLogger(),
  };
}

const storageKey = (i: PruneItem) => `${i.reason} ${i.name}`;
const cloudKey = (i: PruneItem) => `${i.reason} ${i.region}/${i.id}`;

const EXPECTED_STORAGE = [
  'end-of-life aws_alpine-3.18.12-x86_64-uefi-tiny-r0',
  'end-of-life aws_alpine-3.18.12-x86_64-uefi-tiny-r1',
  'old-revision aws_alpine-3.21.2-x86_64-uefi-tiny-r0',
  'unreleased aws_alpine-3.21.2-x86_64-uefi-tiny-r2',
  'unreleased nocloud_alpine-3.21.2-x86_64-uefi-tiny-r0',
  'unreleased nocloud_alpine-3.21.2-x86_64-uefi-tiny-r1',
];
const EXPECTED_CLOUD = [
  'end-of-life us-east-1/ami-x1',
  'old-revision eu-west-1/ami-p0w',
  'old-revision eu-west-1/snap-p0orphan',
  'old-revision us-east-1/ami-p0e',
  'old-revision us-east-1/ami-z0',
  'unreleased us-west-2/ami-p2',
];

describe('prune', () => {
  it('dry run lists what the policy selects and changes nothing', async () => {
    const before = await treeFiles(storageRoot);
    const cloud = memoryCloud(cloudImages);
    const items = await prune(ctxWith(cloud, false));
    expect(
      items
        .filter((i) => i.where === 'storage')
        .map(storageKey)
        .sort(),
    ).toEqual(EXPECTED_STORAGE);
    expect(
      items
        .filter((i) => i.where === 'cloud')
        .map(cloudKey)
        .sort(),
    ).toEqual(EXPECTED_CLOUD);
    expect(items.every((i) => !i.removed)).toBe(true);
    expect(await treeFiles(storageRoot)).toEqual(before);
    expect(cloud.deleted).toEqual([]);
    // what each item says
    const p0 = items.find((i) => i.id === 'ami-p0e')!;
    expect(p0.what).toBe(
      'aws us-east-1 ami-p0e alpine-3.21.2-x86_64-uefi-tiny-r0 (public, last launched 2025-04-01T00:00:00Z, snapshots snap-p0e)',
    );
    expect(p0).toMatchObject({
      public: true,
      lastLaunched: '2025-04-01T00:00:00Z',
      snapshotIds: ['snap-p0e'],
    });
    expect(items.find((i) => i.id === 'snap-p0orphan')!.what).toBe(
      'aws eu-west-1 snapshot snap-p0orphan of alpine-3.21.2-x86_64-uefi-tiny-r0 (left without an image)',
    );
    const p2 = items.find((i) => i.id === 'ami-p2')!;
    expect(p2.what).toContain('(private, never launched, snapshots snap-p2)');
    const st = items.find((i) => i.name === 'aws_alpine-3.21.2-x86_64-uefi-tiny-r0')!;
    expect(st.files).toEqual(s.p0!.files);
    expect(st.what).toBe(`${images[0]!.storageUrl}/aws_alpine-3.21.2-x86_64-uefi-tiny-r0.* (4 files)`);
    const orphan = items.find((i) => i.name === 'aws_alpine-3.21.2-x86_64-uefi-tiny-r2')!;
    expect(orphan.files).toEqual(s.p2!.files);
    const report = formatPruneReport(items, false);
    expect(report).toContain('storage\told-revision\twould remove\t');
    expect(report).toContain('(dry run: use --really to remove)');
  });

  it('really removes exactly the selected files and cloud images, and reports them removed', async () => {
    const before = await treeFiles(storageRoot);
    const cloud = memoryCloud(cloudImages);
    const items = await prune(ctxWith(cloud, true));
    expect(items.map((i) => (i.where === 'cloud' ? cloudKey(i) : storageKey(i))).sort()).toEqual(
      [...EXPECTED_STORAGE, ...EXPECTED_CLOUD].sort(),
    );
    expect(items.every((i) => i.removed && !i.error)).toBe(true);
    expect(cloud.deleted.sort()).toEqual([
      'ami-p0e',
      'ami-p0w',
      'ami-p2',
      'ami-x1',
      'ami-z0',
      'snap-p0orphan',
    ]);
    const gone = ['x0', 'x1', 'p0', 'p2', 'n0', 'n1'].flatMap((k) =>
      s[k]!.files.map((f) => relative(storageRoot, join(s[k]!.dir, f))),
    );
    expect(gone).toHaveLength(22);
    expect(await treeFiles(storageRoot)).toEqual(before.filter((f) => !gone.includes(f)));
    // kept: the older point release, the newest released and the newest revisions
    const after = await treeFiles(storageRoot);
    for (const k of ['pOld', 'p1', 'p3', 'q0', 'n2']) {
      for (const f of s[k]!.files) expect(after).toContain(relative(storageRoot, join(s[k]!.dir, f)));
    }
    // a second run finds nothing left to do
    const again = await prune(ctxWith(cloud, true));
    expect(again).toEqual([]);
    expect(formatPruneReport(again, true)).toBe('nothing to prune\n');
  });

  it('keeps the storage files of a revision whose cloud image could not be removed', async () => {
    const cloud = memoryCloud(cloudImages, ['ami-x1']);
    const items = await prune(ctxWith(cloud, true));
    const x1cloud = items.find((i) => i.id === 'ami-x1')!;
    expect(x1cloud.removed).toBe(false);
    expect(x1cloud.error).toContain('is busy');
    const x1 = items.find((i) => i.name === 'aws_alpine-3.18.12-x86_64-uefi-tiny-r1')!;
    expect(x1.removed).toBe(false);
    expect(x1.error).toBe('kept: some of its cloud images could not be removed');
    const x0 = items.find((i) => i.name === 'aws_alpine-3.18.12-x86_64-uefi-tiny-r0')!;
    expect(x0.removed).toBe(true);
    const after = await treeFiles(storageRoot);
    for (const f of s.x1!.files) expect(after).toContain(relative(storageRoot, join(s.x1!.dir, f)));
    for (const f of s.x0!.files) expect(after).not.toContain(relative(storageRoot, join(s.x0!.dir, f)));
    expect(formatPruneReport(items, true)).toContain(
      'NOT removed (kept: some of its cloud images could not be removed)',
    );
  });

  it('refuses to decide when some metadata in storage cannot be read', async () => {
    // r1 is the newest released revision: without its metadata r0 would look like the one to keep
    await writeFile(join(s.p1!.dir, `${s.p1!.name}.yaml`), 'released: tampered\n');
    const before = await treeFiles(storageRoot);
    const err = await prune(ctxWith(memoryCloud(cloudImages), true)).catch((e) => e);
    expect(err.name).toBe('UserError');
    expect(err.message).toContain('1 metadata file(s) in storage cannot be read');
    expect(err.message).toContain(`${s.p1!.name}.yaml: checksum mismatch`);
    expect(await treeFiles(storageRoot)).toEqual(before);
  });

  it('a cloud that cannot list images fails the prune with a clear error before anything is removed', async () => {
    const before = await treeFiles(storageRoot);
    const broken: CloudPlugin = {
      name: 'aws',
      actions: new Set(['list', 'delete']),
      async listImages() {
        throw new Error('AuthFailure: credentials expired');
      },
    };
    await expect(prune(ctxWith(broken, true))).rejects.toThrow(
      `prune: cannot list aws images of project ${PROJECT}: AuthFailure: credentials expired`,
    );
    expect(await treeFiles(storageRoot)).toEqual(before);
  });
});
