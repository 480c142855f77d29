// The release catalog from a file:// storage tree with several versions, releases, revisions and clouds.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { getCloud } from '../../src/clouds/index.js';
import type { CloudPlugin } from '../../src/clouds/types.js';
import type { Catalog, CatalogEntry } from '../../src/release/index.js';
import { generateCatalog, writeCatalog } from '../../src/release/index.js';
import type { Image } from '../../src/state/image.js';
import { createStoragePool } from '../../src/storage/index.js';
import type { StoragePool } from '../../src/storage/types.js';
import { silentLogger } from '../../src/util/log.js';
import {
  atRelease,
  imageOf,
  type StoredRevisionFixture,
  storeRevision,
  variant,
} from './release-fixtures.js';

const NOW = new Date('2025-06-01T00:00:00Z');
const FP = '0123456789ABCDEF0123456789ABCDEF01234567';
const CDN = 'https://cdn.example.org/alpine';

let root: string;
let pool: StoragePool;
let images: Image[];
const stored: Record<string, StoredRevisionFixture> = {};

/** what the AWS plugin (the default registry) makes of a region and image id */
function awsLinks(region: string, id: string) {
  const aws = getCloud('aws');
  return {
    region_url: aws.regionUrl!(images[0]!, region, id),
    launch_url: aws.launchUrl!(images[0]!, region, id),
  };
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'catalog-test-'));
  const storageRoot = join(root, 'storage');
  const work = join(root, 'work');
  // in images.yaml order
  const a = variant({ version: '3.21', release: '3.21.2', storageRoot, revision: 2 });
  const b = variant({ version: '3.21', release: '3.21.2', firmware: 'bios', storageRoot });
  const f = variant({
    version: '3.21',
    release: '3.21.2',
    arch: 'aarch64',
    bootstrap: 'cloudinit',
    storageRoot,
  });
  const d = variant({ version: '3.21', release: '3.21.2', cloud: 'nocloud', storageRoot });
  const c = variant({ version: '3.20', release: '3.20.5', storageRoot, endOfLife: '2026-04-01' });
  const e = variant({ version: 'edge', release: '20250301', storageRoot, endOfLife: '2025-07-01' });
  const g = variant({
    version: '3.19',
    release: '3.19.7',
    cloud: 'nocloud',
    storageRoot,
    endOfLife: '2025-05-01',
  });
  images = [a, b, f, d, c, e, g].map((cfg) => imageOf(cfg, work));

  // A: r0 and r1 released (r1 signed, 3 regions), r2 built and uploaded only
  stored.a0 = await storeRevision(a, 0, {
    released: '2025-02-01T10:00:00Z',
    artifacts: { 'us-east-1': 'ami-a0east', 'eu-west-1': 'ami-a0west' },
  });
  stored.a1 = await storeRevision(a, 1, {
    released: '2025-03-05T12:30:00Z',
    signed: '2025-03-05T11:00:00Z',
    fingerprint: FP,
    artifacts: { 'us-west-2': 'ami-a1usw2', 'us-east-1': 'ami-a1use1', 'eu-west-1': 'ami-a1euw1' },
  });
  stored.a2 = await storeRevision(a, 2, {
    published: '2025-05-01T00:00:00Z',
    artifacts: { 'us-east-1': 'ami-a2' },
  });
  // B: never released
  stored.b0 = await storeRevision(b, 0, {});
  // F: released, unsigned, and its checksum file is missing
  stored.f0 = await storeRevision(f, 0, {
    released: '2025-03-06T00:00:00Z',
    artifacts: { 'us-east-1': 'ami-f0' },
    sha512: false,
  });
  // D: nocloud, released, no artifacts
  stored.d0 = await storeRevision(d, 0, {
    released: '2025-03-07T00:00:00Z',
    signed: '2025-03-07T00:00:00Z',
    fingerprint: FP,
  });
  // C: the configured release 3.20.5 is not released yet; 3.20.4 r1 is
  stored.c_old0 = await storeRevision(atRelease(c, '3.20.4'), 0, { released: '2024-12-01T00:00:00Z' });
  stored.c_old1 = await storeRevision(atRelease(c, '3.20.4'), 1, {
    released: '2025-01-10T00:00:00Z',
    artifacts: { 'us-east-1': 'ami-c1' },
  });
  stored.c0 = await storeRevision(c, 0, {});
  // E: edge, released
  stored.e0 = await storeRevision(e, 0, {
    released: '2025-03-01T00:00:00Z',
    artifacts: { 'us-west-2': 'ami-e0' },
  });
  // G: 3.19 (end of life) nocloud, released
  stored.g0 = await storeRevision(g, 0, { released: '2024-06-01T00:00:00Z' });
  // noise in a shared directory: another project's file and a stray temporary
  await writeFile(join(stored.a0.dir, 'README'), 'not an image');
  await writeFile(join(stored.a0.dir, 'aws_alpine-3.21.2-x86_64-uefi-tiny-r9.yaml.partial'), 'x');

  pool = createStoragePool({ log: silentLogger(), env: process.env });
});

afterAll(async () => {
  await pool?.close();
  await rm(root, { recursive: true, force: true });
});

describe('writeCatalog', () => {
  let catalog: Catalog;
  let site: {
    filters: Record<string, Record<string, unknown>[]>;
    versions: {
      version: string;
      release: string;
      end_of_life: string;
      images: {
        variant: string;
        arch: string;
        released: string;
        downloads: Record<string, unknown>[];
        regions: Record<string, unknown>[];
      }[];
    }[];
  };
  let files: string[];
  const entry = (id: string): CatalogEntry => {
    const e = catalog.images.find((i) => i.id === id);
    if (!e) throw new Error(`no catalog entry ${id}`);
    return e;
  };

  beforeAll(async () => {
    const out = join(root, 'out');
    files = await writeCatalog({ images, pool, outDir: out, log: silentLogger(), now: () => NOW });
    catalog = JSON.parse(await readFile(join(out, 'catalog.json'), 'utf8'));
    site = parse(await readFile(join(out, 'releases.yaml'), 'utf8'));
  });

  it('writes releases.yaml and catalog.json', () => {
    expect(files.map((f) => f.slice(root.length))).toEqual(['/out/releases.yaml', '/out/catalog.json']);
    expect(catalog.format).toBe(1);
    expect(catalog.generated).toBe(NOW.toISOString());
  });

  it('has one entry per variant with a released revision, newest release and revision first', () => {
    expect(catalog.images.map((e) => `${e.id}@${e.release}-r${e.revision}`)).toEqual([
      '3.21/x86_64/uefi/tiny/vm/aws@3.21.2-r1',
      '3.21/aarch64/uefi/cloudinit/vm/aws@3.21.2-r0',
      '3.21/x86_64/uefi/tiny/vm/nocloud@3.21.2-r0',
      '3.20/x86_64/uefi/tiny/vm/aws@3.20.4-r1',
      '3.19/x86_64/uefi/tiny/vm/nocloud@3.19.7-r0',
      'edge/x86_64/uefi/tiny/vm/aws@20250301-r0',
    ]);
  });

  it('gives every field of an AWS entry', () => {
    const a = entry('3.21/x86_64/uefi/tiny/vm/aws');
    const base = `${CDN}/v3.21/releases/cloud`;
    const file = 'aws_alpine-3.21.2-x86_64-uefi-tiny-r1.vhd';
    expect(a).toEqual({
      id: '3.21/x86_64/uefi/tiny/vm/aws',
      version: '3.21',
      release: '3.21.2',
      revision: 1,
      arch: 'x86_64',
      firmware: 'uefi',
      bootstrap: 'tiny',
      machine: 'vm',
      cloud: 'aws',
      image_key: '3.21.2-x86_64-uefi-tiny-vm-aws',
      name: 'aws_alpine-3.21.2-x86_64-uefi-tiny-r1',
      description: 'Alpine Linux 3.21.2 x86_64 uefi tiny - r1',
      end_of_life: '2099-11-01',
      built: '2025-01-02T02:00:00.000Z',
      uploaded: '2025-01-02T03:04:05.000Z',
      released: '2025-03-05T12:30:00Z',
      signed: '2025-03-05T11:00:00Z',
      image_format: 'vhd',
      file,
      download_url: `${base}/${file}`,
      checksum: { sha512: stored.a1!.sha512 },
      checksum_url: `${base}/${file}.sha512`,
      signature_url: `${base}/${file}.asc`,
      signing_key_fingerprint: FP,
      metadata_url: `${base}/aws_alpine-3.21.2-x86_64-uefi-tiny-r1.yaml`,
      // the release catalog carries the boot time of the image's test
      boot_seconds: 36.8,
      boot_tested: '2025-01-02T02:10:00.000Z',
      regions: [
        { region: 'eu-west-1', image_id: 'ami-a1euw1', ...awsLinks('eu-west-1', 'ami-a1euw1') },
        { region: 'us-east-1', image_id: 'ami-a1use1', ...awsLinks('us-east-1', 'ami-a1use1') },
        { region: 'us-west-2', image_id: 'ami-a1usw2', ...awsLinks('us-west-2', 'ami-a1usw2') },
      ],
      supply: null,
    });
  });

  it('leaves out what is missing: no .sha512, no signature, no regions', () => {
    const f = entry('3.21/aarch64/uefi/cloudinit/vm/aws');
    expect(f.checksum).toBeNull();
    expect(f.checksum_url).toBeNull();
    expect(f.signature_url).toBeNull();
    expect(f.signed).toBeNull();
    expect(f.signing_key_fingerprint).toBeNull();
    expect(f.download_url).toBe(
      `${CDN}/v3.21/releases/cloud/aws_alpine-3.21.2-aarch64-uefi-cloudinit-r0.vhd`,
    );
    const d = entry('3.21/x86_64/uefi/tiny/vm/nocloud');
    expect(d.file).toBe('nocloud_alpine-3.21.2-x86_64-uefi-tiny-r0.qcow2');
    expect(d.image_format).toBe('qcow2');
    expect(d.regions).toEqual([]);
    expect(d.checksum).toEqual({ sha512: stored.d0!.sha512 });
    expect(d.signature_url).toBe(
      `${CDN}/v3.21/releases/cloud/nocloud_alpine-3.21.2-x86_64-uefi-tiny-r0.qcow2.asc`,
    );
  });

  it('falls back to an older point release when the configured one is not released yet', () => {
    const c = entry('3.20/x86_64/uefi/tiny/vm/aws');
    expect(c.release).toBe('3.20.4');
    expect(c.name).toBe('aws_alpine-3.20.4-x86_64-uefi-tiny-r1');
    expect(c.image_key).toBe('3.20.4-x86_64-uefi-tiny-vm-aws');
    expect(c.checksum).toEqual({ sha512: stored.c_old1!.sha512 });
    expect(c.regions.map((r) => r.image_id)).toEqual(['ami-c1']);
  });

  it('lists versions newest first with end of life, and "latest" aliases', () => {
    expect(catalog.latest_stable).toBe('3.21');
    expect(catalog.versions).toEqual([
      { version: '3.21', release: '3.21.2', end_of_life: '2099-11-01', eol: false },
      { version: '3.20', release: '3.20.4', end_of_life: '2026-04-01', eol: false },
      { version: '3.19', release: '3.19.7', end_of_life: '2025-05-01', eol: true },
      { version: 'edge', release: '20250301', end_of_life: '2025-07-01', eol: false },
    ]);
    expect(Object.keys(catalog.latest).sort()).toEqual(
      [
        '3.21/x86_64/uefi/tiny/vm/aws',
        '3.21/aarch64/uefi/cloudinit/vm/aws',
        '3.21/x86_64/uefi/tiny/vm/nocloud',
        '3.20/x86_64/uefi/tiny/vm/aws',
        '3.19/x86_64/uefi/tiny/vm/nocloud',
        'edge/x86_64/uefi/tiny/vm/aws',
        'stable/x86_64/uefi/tiny/vm/aws',
        'stable/aarch64/uefi/cloudinit/vm/aws',
        'stable/x86_64/uefi/tiny/vm/nocloud',
      ].sort(),
    );
    expect(catalog.latest['stable/x86_64/uefi/tiny/vm/aws']).toEqual(entry('3.21/x86_64/uefi/tiny/vm/aws'));
    expect(catalog.latest['stable/x86_64/uefi/tiny/vm/nocloud']?.release).toBe('3.21.2');
    expect(catalog.latest['3.20/x86_64/uefi/tiny/vm/aws']?.name).toBe(
      'aws_alpine-3.20.4-x86_64-uefi-tiny-r1',
    );
  });

  it('writes the site data: filters in images.yaml order, edge and end-of-life versions left out', () => {
    expect(site.filters.clouds).toEqual([
      { cloud: 'aws', cloud_name: 'Amazon Web Services' },
      { cloud: 'nocloud', cloud_name: 'NoCloud' },
    ]);
    expect(site.filters.archs).toEqual([
      { arch: 'x86_64', arch_name: 'x86_64' },
      { arch: 'aarch64', arch_name: 'aarch64' },
    ]);
    expect(site.filters.firmwares).toEqual([{ firmware: 'uefi', firmware_name: 'uefi' }]);
    expect(site.filters.bootstraps).toEqual([
      { bootstrap: 'tiny', bootstrap_name: 'tiny' },
      { bootstrap: 'cloudinit', bootstrap_name: 'cloudinit' },
    ]);
    expect(site.filters.machines).toEqual([{ machine: 'vm', machine_name: 'vm' }]);
    expect(site.filters.regions).toEqual([
      { region: 'eu-west-1', clouds: [{ cloud: 'aws' }] },
      { region: 'us-east-1', clouds: [{ cloud: 'aws' }] },
      { region: 'us-west-2', clouds: [{ cloud: 'aws' }] },
    ]);
    expect(site.versions.map((v) => [v.version, v.release, v.end_of_life])).toEqual([
      ['3.21', '3.21.2', '2099-11-01'],
      ['3.20', '3.20.4', '2026-04-01'],
    ]);
  });

  it('groups clouds of one variant into one site image with downloads and regions', () => {
    const v321 = site.versions[0]!;
    expect(v321.images.map((i) => i.variant)).toEqual([
      '3.21.2 x86_64 uefi tiny vm',
      '3.21.2 aarch64 uefi cloudinit vm',
    ]);
    const img = v321.images[0]!;
    expect(img.released).toBe('2025-03-05');
    expect(img.downloads).toEqual([
      {
        cloud: 'aws',
        image_name: 'aws_alpine-3.21.2-x86_64-uefi-tiny-r1',
        image_format: 'vhd',
        image_url: `${CDN}/v3.21/releases/cloud/aws_alpine-3.21.2-x86_64-uefi-tiny-r1`,
        image_file: 'aws_alpine-3.21.2-x86_64-uefi-tiny-r1.vhd',
        download_url: `${CDN}/v3.21/releases/cloud/aws_alpine-3.21.2-x86_64-uefi-tiny-r1.vhd`,
      },
      {
        cloud: 'nocloud',
        image_name: 'nocloud_alpine-3.21.2-x86_64-uefi-tiny-r0',
        image_format: 'qcow2',
        image_url: `${CDN}/v3.21/releases/cloud/nocloud_alpine-3.21.2-x86_64-uefi-tiny-r0`,
        image_file: 'nocloud_alpine-3.21.2-x86_64-uefi-tiny-r0.qcow2',
        download_url: `${CDN}/v3.21/releases/cloud/nocloud_alpine-3.21.2-x86_64-uefi-tiny-r0.qcow2`,
      },
    ]);
    expect(img.regions.map((r) => [r.cloud, r.region])).toEqual([
      ['aws', 'eu-west-1'],
      ['aws', 'us-east-1'],
      ['aws', 'us-west-2'],
    ]);
    expect(img.regions[1]).toEqual({
      cloud: 'aws',
      region: 'us-east-1',
      ...awsLinks('us-east-1', 'ami-a1use1'),
    });
  });
});

describe('region and launch URLs', () => {
  it('come from cloud_region_url/cloud_launch_url, else from the plugin, else the AWS defaults', async () => {
    const storageRoot = join(root, 'urls');
    const withTemplate = variant({
      version: '3.21',
      release: '3.21.2',
      storageRoot,
      extra: {
        cloud_region_url: 'https://console.example/{region}/images/{image_id}?v={version}',
        cloud_launch_url: 'https://console.example/{region}/launch/{image_id}',
      },
    });
    const viaPlugin = variant({ version: '3.21', release: '3.21.2', firmware: 'bios', storageRoot });
    await storeRevision(withTemplate, 0, {
      released: '2025-03-01T00:00:00Z',
      artifacts: { 'ap-south-1': 'ami-t' },
    });
    await storeRevision(viaPlugin, 0, {
      released: '2025-03-01T00:00:00Z',
      artifacts: { 'ap-south-1': 'ami-p' },
    });
    const plugin: CloudPlugin = {
      name: 'aws',
      actions: new Set(),
      regionUrl: (_i, region, id) => `plugin://${region}/${id}`,
    };
    const { catalog } = await generateCatalog({
      images: [withTemplate, viaPlugin].map((c) => imageOf(c, join(root, 'work2'))),
      pool,
      outDir: join(root, 'out2'),
      log: silentLogger(),
      clouds: () => plugin,
      now: () => NOW,
    });
    const [t, p] = catalog.images;
    expect(t!.regions[0]).toEqual({
      region: 'ap-south-1',
      image_id: 'ami-t',
      region_url: 'https://console.example/ap-south-1/images/ami-t?v=3.21',
      launch_url: 'https://console.example/ap-south-1/launch/ami-t',
    });
    expect(p!.regions[0]).toEqual({
      region: 'ap-south-1',
      image_id: 'ami-p',
      region_url: 'plugin://ap-south-1/ami-p',
      // the catalog knows no cloud's console: a plugin without launchUrl gives none
      launch_url: null,
    });
  });

  it('unreadable metadata is reported and its revision left out; the next older one is listed', async () => {
    const storageRoot = join(root, 'corrupt');
    const cfg = variant({ version: '3.21', release: '3.21.2', storageRoot });
    await storeRevision(cfg, 0, { released: '2025-03-01T00:00:00Z' });
    const r1 = await storeRevision(cfg, 1, { released: '2025-04-01T00:00:00Z' });
    await writeFile(join(r1.dir, `${r1.name}.yaml`), 'not: the stored content\n');
    const { catalog, problems } = await generateCatalog({
      images: [imageOf(cfg, join(root, 'work4'))],
      pool,
      outDir: join(root, 'out4'),
      log: silentLogger(),
      now: () => NOW,
    });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(`${r1.name}.yaml: checksum mismatch`);
    expect(catalog.images.map((e) => e.revision)).toEqual([0]);
  });

  it('an empty storage gives an empty catalog, still written', async () => {
    const cfg = variant({ version: '3.22', release: '3.22.0', storageRoot: join(root, 'empty') });
    const out = join(root, 'out3');
    const { catalog, files } = await generateCatalog({
      images: [imageOf(cfg, join(root, 'work3'))],
      pool,
      outDir: out,
      log: silentLogger(),
      now: () => NOW,
    });
    expect(files).toHaveLength(2);
    expect(catalog.images).toEqual([]);
    expect(catalog.latest_stable).toBeNull();
    expect(parse(await readFile(join(out, 'releases.yaml'), 'utf8'))).toEqual({
      filters: { clouds: [], regions: [], archs: [], firmwares: [], bootstraps: [], machines: [] },
      versions: [],
    });
  });
});
