/**
 * AWS import and publish under crashes and races, through the real ./build against the EC2 emulator and s3rver
 * (issue #13 items 1, 5, 10): SIGKILL at every point of an import leaves nothing behind once the import is run
 * again (no import bucket, no snapshot that no AMI uses) and prune removes what a killed run left; two publishes
 * of one image at once both succeed; a missing vmimport role is explained.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { Image } from '../../src/state/image.js';
import { emptyState, stateAfter } from '../../src/state/image-state.js';
import { writeMetadata } from '../../src/state/metadata.js';
import { BUILD, ROOT, runBuild } from '../helpers/cli.js';
import { awsTestEnv, type Ec2Emulator, startEc2, writeFixedVhd } from '../helpers/ec2-emulator.js';
import { makeOverlay, passedBootTest, RELEASES_URL, readImages } from '../helpers/overlay.js';
import { type S3rverHandle, startS3rver } from '../helpers/s3rver.js';

let root: string;
let overlay: string;
let s3: S3rverHandle;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'aws-hardening-'));
  s3 = await startS3rver({ buckets: [] });
  overlay = await makeOverlay({
    storageUrl: 'file://{work_dir}/storage/{v_version}/{cloud}/{arch}',
    clouds: ['aws'],
    cloudSettings: { aws: { image_format: 'vhd', access: { PUBLIC: true }, regions: { 'us-west-2': true } } },
    parent: root,
  });
});
afterAll(async () => {
  await s3?.stop();
  await rm(root, { recursive: true, force: true });
});

const args = (work: string, ...extra: string[]) => [
  '--work-dir',
  work,
  '--custom',
  overlay,
  '--releases-url',
  RELEASES_URL,
  ...extra,
];

async function prepare(name: string): Promise<{ work: string; image: Image }> {
  const work = join(root, name);
  const r = await runBuild(['configs', ...args(work)]);
  expect(r.code, r.stderr).toBe(0);
  const config = Object.values(await readImages(work))[0]!;
  const image = new Image(
    config,
    work,
    passedBootTest(stateAfter.built(emptyState(0), '2026-11-20T10:00:00.000Z')),
  );
  await writeFixedVhd(image.imagePath, 1);
  const sum = createHash('sha512')
    .update(await readFile(image.imagePath))
    .digest('hex');
  await writeFile(`${image.imagePath}.sha512`, `${sum}\n`);
  await writeMetadata(image, new Date('2026-11-20T10:00:00.000Z'));
  return { work, image };
}

async function buckets(): Promise<string[]> {
  const c = new S3Client(s3.clientConfig);
  try {
    return ((await c.send(new ListBucketsCommand({}))).Buckets ?? []).map((b) => b.Name ?? '');
  } finally {
    c.destroy();
  }
}

/** snapshots that no AMI uses */
function orphans(emu: Ec2Emulator): string[] {
  const used = new Set(emu.images().flatMap((i) => i.blockDevices.map((b) => b.snapshotId)));
  return emu
    .snapshots()
    .map((s) => s.id)
    .filter((id) => !used.has(id));
}

async function metaOf(image: Image): Promise<Record<string, unknown>> {
  return parse(await readFile(image.metadataPath, 'utf8')) as Record<string, unknown>;
}

describe('aws hardening through ./build', { timeout: 240_000 }, () => {
  it.each([
    'aws-import:after-bucket',
    'aws-import:after-upload',
    'aws-import:after-task',
    'aws-import:after-snapshot',
  ])('SIGKILL at %s, then import again: one AMI, no import bucket, no orphan snapshot', async (point) => {
    const emu = await startEc2({ s3Endpoint: s3.endpoint });
    try {
      const { work, image } = await prepare(`kill-${point.split(':')[1]}`);
      const env = { ...s3.env, ...awsTestEnv(emu.url) };
      const killed = await runBuild(['import', ...args(work)], { env: { ...env, CIB_CRASH_AT: point } });
      expect(killed.code).not.toBe(0);
      const again = await runBuild(['import', ...args(work)], { env });
      expect(again.code, again.stderr).toBe(0);
      expect(emu.images().map((i) => i.name)).toEqual([image.imageName]);
      expect((await metaOf(image)).import_id).toBe(emu.images()[0]!.id);
      expect((await buckets()).filter((b) => b.startsWith('cib-import-'))).toEqual([]);
      expect(orphans(emu)).toEqual([]);
      // the kept snapshot is tagged as this image's
      expect(emu.snapshots()[0]!.tags.get('image_key')).toBe(image.config.image_key);
    } finally {
      await emu.close();
    }
  });

  it('SIGKILL from outside mid-import (bucket made; import task running), each followed by a rerun: nothing left', async () => {
    const emu = await startEc2({ s3Endpoint: s3.endpoint, latency: { importMs: 3000 } });
    try {
      const { work, image } = await prepare('kill-outside');
      const env = { ...process.env, NO_COLOR: '1', ...s3.env, ...awsTestEnv(emu.url) };
      const moments: [string, () => Promise<boolean>][] = [
        ['the import bucket exists', async () => (await buckets()).some((b) => b.startsWith('cib-import-'))],
        ['an import task is running', async () => emu.importTasks('us-west-2').length > 0],
      ];
      for (const [moment, reached] of moments) {
        const child = spawn(BUILD, ['import', ...args(work)], {
          cwd: ROOT,
          env,
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        let err = '';
        child.stderr?.on('data', (d) => {
          err += String(d);
        });
        const exited = new Promise((r) => child.on('exit', r));
        const deadline = Date.now() + 60_000;
        while (!(await reached()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        expect(await reached(), `${moment}\n${err}`).toBe(true);
        child.kill('SIGKILL');
        await exited;
      }
      const again = await runBuild(['import', ...args(work)], { env });
      expect(again.code, again.stderr).toBe(0);
      expect(emu.images().map((i) => i.name)).toEqual([image.imageName]);
      expect((await buckets()).filter((b) => b.startsWith('cib-import-'))).toEqual([]);
      expect(orphans(emu)).toEqual([]);
    } finally {
      await emu.close();
    }
  });

  it('prune removes what a killed import left: its bucket and its untagged snapshot', async () => {
    const emu = await startEc2({ s3Endpoint: s3.endpoint });
    try {
      const { work } = await prepare('prune-leftovers');
      const env = { ...s3.env, ...awsTestEnv(emu.url) };
      // one run killed with its bucket made, one killed with its snapshot imported but not yet tagged
      expect(
        (
          await runBuild(['import', ...args(work)], {
            env: { ...env, CIB_CRASH_AT: 'aws-import:after-bucket' },
          })
        ).code,
      ).not.toBe(0);
      expect(
        (
          await runBuild(['import', ...args(work)], {
            env: { ...env, CIB_CRASH_AT: 'aws-import:after-snapshot' },
          })
        ).code,
      ).not.toBe(0);
      expect((await buckets()).filter((b) => b.startsWith('cib-import-')).length).toBeGreaterThan(0);
      expect(orphans(emu)).toHaveLength(1);
      await new Promise((r) => setTimeout(r, 1100));
      // the untagged snapshot counts as left over once older than the import timeout
      const dry = await runBuild(['prune', ...args(work)], { env: { ...env, CLOUD_IMPORT_TIMEOUT_S: '1' } });
      expect(dry.code, dry.stderr).toBe(0);
      expect(dry.stdout).toMatch(/leftover\twould remove\taws temporary import bucket cib-import-/);
      expect(dry.stdout).toMatch(/leftover\twould remove\taws us-west-2 snapshot snap-/);
      const really = await runBuild(['prune', '--really', ...args(work)], {
        env: { ...env, CLOUD_IMPORT_TIMEOUT_S: '1' },
      });
      expect(really.code, really.stderr).toBe(0);
      expect((await buckets()).filter((b) => b.startsWith('cib-import-'))).toEqual([]);
      expect(orphans(emu)).toEqual([]);
    } finally {
      await emu.close();
    }
  });

  it('a missing vmimport role: the import says so and points to docs/clouds.md', async () => {
    const emu = await startEc2({
      s3Endpoint: s3.endpoint,
      faults: {
        failImport:
          'ClientError: The service role vmimport provided does not exist or does not have sufficient permissions',
      },
    });
    try {
      const { work } = await prepare('vmimport');
      const r = await runBuild(['import', ...args(work)], { env: { ...s3.env, ...awsTestEnv(emu.url) } });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('service role vmimport');
      expect(r.stderr).toContain('docs/clouds.md#the-vmimport-service-role');
      expect((await buckets()).filter((b) => b.startsWith('cib-import-'))).toEqual([]);
    } finally {
      await emu.close();
    }
  });

  it("two publishes of one image at once: the loser adopts the winner's copy; both succeed", async () => {
    const regions = { 'us-west-2': true, 'us-east-1': true, 'eu-west-1': true };
    const ov = await makeOverlay({
      storageUrl: 'file://{work_dir}/storage/{v_version}/{cloud}/{arch}',
      clouds: ['aws'],
      cloudSettings: { aws: { image_format: 'vhd', access: { PUBLIC: true }, regions } },
      parent: root,
    });
    // CopyImage is held, so both runs look for a copy, find none, and copy: the second one gets the duplicate
    const emu = await startEc2({
      s3Endpoint: s3.endpoint,
      faults: { delay: [{ action: 'CopyImage', ms: 3000 }] },
    });
    try {
      const env = { ...process.env, NO_COLOR: '1', ...s3.env, ...awsTestEnv(emu.url) };
      const works: string[] = [];
      for (const name of ['race-a', 'race-b']) {
        const work = join(root, name);
        const a = ['--work-dir', work, '--custom', ov, '--releases-url', RELEASES_URL];
        expect((await runBuild(['configs', ...a])).code).toBe(0);
        const config = Object.values(await readImages(work))[0]!;
        const image = new Image(
          config,
          work,
          passedBootTest(stateAfter.built(emptyState(0), '2026-11-20T10:00:00.000Z')),
        );
        await writeFixedVhd(image.imagePath, 1);
        await writeFile(
          `${image.imagePath}.sha512`,
          `${createHash('sha512')
            .update(await readFile(image.imagePath))
            .digest('hex')}\n`,
        );
        await writeMetadata(image, new Date('2026-11-20T10:00:00.000Z'));
        works.push(work);
      }
      const a0 = ['--work-dir', works[0]!, '--custom', ov, '--releases-url', RELEASES_URL];
      const a1 = ['--work-dir', works[1]!, '--custom', ov, '--releases-url', RELEASES_URL];
      // both imported beforehand (the second adopts the first's AMI), so both publishes start at once
      expect((await runBuild(['import', ...a0], { env })).code).toBe(0);
      expect((await runBuild(['import', ...a1], { env })).code).toBe(0);
      const [p0, p1] = await Promise.all([
        runBuild(['publish', ...a0], { env }),
        new Promise((r) => setTimeout(r, 400)).then(() => runBuild(['publish', ...a1], { env })),
      ]);
      expect(p0.code, p0.stderr).toBe(0);
      expect(p1.code, p1.stderr).toBe(0);
      expect(`${p0.stderr}${p1.stderr}`).toContain('copied it at the same time');
      for (const region of Object.keys(regions)) expect(emu.images(region)).toHaveLength(1);
    } finally {
      await emu.close();
    }
  });

  it('deprecation of a public image is capped two years after its creation date in the region, not from now', async () => {
    const ov = await makeOverlay({
      storageUrl: 'file://{work_dir}/storage/{v_version}/{cloud}/{arch}',
      clouds: ['aws'],
      cloudSettings: {
        aws: {
          image_format: 'vhd',
          access: { PUBLIC: true },
          regions: { 'us-west-2': true },
          end_of_life: '2031-01-01',
        },
      },
      parent: root,
    });
    const DAY = 86_400_000;
    let offset = -400 * DAY; // the import happened 400 days ago
    const emu = await startEc2({ s3Endpoint: s3.endpoint, now: () => Date.now() + offset });
    try {
      const work = join(root, 'deprecation');
      const a = ['--work-dir', work, '--custom', ov, '--releases-url', RELEASES_URL];
      expect((await runBuild(['configs', ...a])).code).toBe(0);
      const config = Object.values(await readImages(work))[0]!;
      const image = new Image(
        config,
        work,
        passedBootTest(stateAfter.built(emptyState(0), '2026-11-20T10:00:00.000Z')),
      );
      await writeFixedVhd(image.imagePath, 1);
      await writeFile(
        `${image.imagePath}.sha512`,
        `${createHash('sha512')
          .update(await readFile(image.imagePath))
          .digest('hex')}\n`,
      );
      await writeMetadata(image, new Date('2026-11-20T10:00:00.000Z'));
      const env = { ...s3.env, ...awsTestEnv(emu.url) };
      expect((await runBuild(['import', ...a], { env })).code).toBe(0);
      offset = 0;
      const pub = await runBuild(['publish', ...a], { env });
      expect(pub.code, pub.stderr).toBe(0);
      expect(pub.stderr).not.toContain('cannot set deprecation time');
      expect(pub.stderr).toContain("counted from the image's creation date");
      const ami = emu.images('us-west-2')[0]!;
      const at = Date.parse(ami.deprecationTime!);
      expect(at).toBeLessThanOrEqual(ami.createdAt + 730 * DAY);
      expect(at).toBeGreaterThan(ami.createdAt + 727 * DAY);
    } finally {
      await emu.close();
    }
  });

  it('an endpoint answering with an HTML page: endpoint, HTTP status and first line, once, no XML parse error', async () => {
    const emu = await startEc2({ s3Endpoint: s3.endpoint, faults: { html: { status: 502 } } });
    try {
      const { work } = await prepare('html');
      const r = await runBuild(['import', ...args(work)], {
        env: { ...s3.env, ...awsTestEnv(emu.url, { AWS_MAX_ATTEMPTS: '2' }) },
      });
      expect(r.code).not.toBe(0);
      const out = `${r.stdout}${r.stderr}`;
      expect(out).not.toMatch(/XML parse error|Deserialization error/);
      expect(r.stderr).toMatch(
        new RegExp(`${emu.url.replace(/[/.]/g, '\\$&')}/? answered HTTP 502 \\(502 Bad Gateway\\)`),
      );
      expect(r.stderr.split('answered HTTP 502').length - 1).toBe(1);
    } finally {
      await emu.close();
    }
  });
});
