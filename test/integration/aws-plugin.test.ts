/**
 * The AWS plugin over the wire: the real @aws-sdk/client-ec2 and client-s3 against the EC2 emulator and s3rver.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { getCloud } from '../../src/clouds/index.js';
import { formatPublishSummary } from '../../src/clouds/summary.js';
import type { CloudPlugin } from '../../src/clouds/types.js';
import type { ImageConfig } from '../../src/config/types.js';
import {
  awsImage,
  awsTestEnv,
  captureContext,
  type Ec2Emulator,
  startEc2,
  writeFixedVhd,
} from '../helpers/ec2-emulator.js';
import { type S3rverHandle, startS3rver } from '../helpers/s3rver.js';

let s3: S3rverHandle;
let emu: Ec2Emulator | undefined;
let workDir: string;
const aws: CloudPlugin = getCloud('aws');
const YEAR = 365 * 86_400_000;

beforeAll(async () => {
  s3 = await startS3rver({ buckets: [] });
  workDir = await mkdtemp(join(tmpdir(), 'aws-plugin-'));
});

afterAll(async () => {
  await s3?.stop();
  await rm(workDir, { recursive: true, force: true });
});

afterEach(async () => {
  await emu?.close();
  emu = undefined;
});

async function setup(opts: Parameters<typeof startEc2>[0] = {}, config: Partial<ImageConfig> = {}) {
  emu = await startEc2({ s3Endpoint: s3.endpoint, ...opts });
  const env = { ...s3.env, ...awsTestEnv(emu.url) };
  const image = awsImage(join(workDir, String(Math.random()).slice(2)), config);
  await writeFixedVhd(image.imagePath, 2);
  const cap = captureContext({ env, workDir: image.workDir });
  return { emu, image, ...cap };
}

function calls(e: Ec2Emulator, action: string) {
  return e.calls.filter((c) => c.action === action && c.status === 200);
}

async function bucketCount(): Promise<number> {
  const c = new S3Client(s3.clientConfig);
  try {
    return (await c.send(new ListBucketsCommand({}))).Buckets?.length ?? 0;
  } finally {
    c.destroy();
  }
}

describe('aws plugin against the EC2 emulator', () => {
  it('imports a VHD, then publishes it to several regions', async () => {
    const { emu, image, ctx } = await setup();
    expect(aws.actions).toEqual(new Set(['import', 'publish', 'delete', 'list']));
    const imp = await aws.importImage!(image, ctx);
    expect(imp.import_region).toBe('us-west-2');
    expect(imp.import_id).toMatch(/^ami-/);

    const [ami] = emu.images('us-west-2');
    expect(ami?.id).toBe(imp.import_id);
    expect(ami?.name).toBe('aws_alpine-20260101-x86_64-bios-tiny-r0');
    expect(ami?.architecture).toBe('x86_64');
    expect(ami?.bootMode).toBe('legacy-bios');
    expect(ami?.enaSupport).toBe(true);
    expect(ami?.sriovNetSupport).toBe('simple');
    expect(ami?.imdsSupport).toBe('v2.0');
    expect(ami?.rootDeviceName).toBe('/dev/xvda');
    expect(ami?.blockDevices[0]).toMatchObject({ deviceName: '/dev/xvda', volumeType: 'gp3', volumeSize: 1 });
    expect(Object.fromEntries(ami!.tags)).toMatchObject({
      project: 'test-cloud-images',
      image_key: 'edge-x86_64-bios-tiny-aws',
      revision: '0',
      Name: image.imageName,
      import_id: imp.import_id,
      import_region: 'us-west-2',
      imported: imp.imported,
    });
    const snaps = emu.snapshots('us-west-2');
    expect(snaps).toHaveLength(1);
    expect(snaps[0]?.tags.get('image_key')).toBe('edge-x86_64-bios-tiny-aws');
    const task = emu.importTasks('us-west-2')[0];
    expect(task).toMatchObject({ format: 'VHD', encrypted: false });
    // named after the project, the image and this run (a killed run's bucket is found by the next one)
    expect(task?.bucket).toMatch(/^cib-import-[0-9a-f]{6}-[0-9a-f]{10}-[0-9a-f]{6}-\d+-[0-9a-f]{4}$/);
    // the temporary bucket and its object are gone
    expect(await bucketCount()).toBe(0);

    Object.assign(image.config, imp);
    const pub = await aws.publishImage!(image, ctx);
    expect(pub.failures).toEqual([]);
    expect(Object.keys(pub.artifacts).sort()).toEqual(['eu-west-1', 'us-east-1', 'us-west-2']);
    expect(pub.artifacts['us-west-2']).toBe(imp.import_id);
    expect(pub.published).toMatch(/^\d{4}-/);
    for (const [region, id] of Object.entries(pub.artifacts)) {
      const [img] = emu.images(region);
      expect(img?.id).toBe(id);
      expect(img?.state).toBe('available');
      expect(img?.launchGroups.has('all')).toBe(true);
      expect(img?.deprecationTime).toBe('2027-06-30T23:59:00Z');
      expect(img?.description).toBe(image.imageDescription);
      expect(img?.tags.get('published')).toBeTruthy();
      expect(img?.tags.get('Name')).toBe(image.imageName);
      const snap = emu.snapshots(region).find((s) => s.id === img?.blockDevices[0]?.snapshotId);
      expect(snap?.tags.get('published')).toBeTruthy();
    }
    expect(calls(emu, 'CopyImage')).toHaveLength(2);
    expect(formatPublishSummary(image.imageName, pub)).toContain('3 of 3 region(s) ok');

    // publishing again copies nothing and keeps the first publication time
    const again = await aws.publishImage!(image, ctx);
    expect(again.artifacts).toEqual(pub.artifacts);
    expect(again.published).toBe(pub.published);
    expect(calls(emu, 'CopyImage')).toHaveLength(2);
  });

  it('is idempotent: a second import finds the AMI by its tags', async () => {
    const { emu, image, ctx } = await setup();
    const first = await aws.importImage!(image, ctx);
    const second = await aws.importImage!(image, ctx);
    expect(second).toEqual(first);
    expect(emu.images('us-west-2')).toHaveLength(1);
    expect(calls(emu, 'ImportSnapshot')).toHaveLength(1);
  });

  it('after a crash right after RegisterImage, a rerun finds the AMI: exactly one AMI', async () => {
    const { emu, image, ctx } = await setup({ faults: { after: { action: 'RegisterImage', mode: 'hold' } } });
    const env = ctx.env as Record<string, string>;
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(import.meta.dirname, '../helpers/aws-import-child.ts')],
      {
        env: {
          ...process.env,
          AWS_CHILD_INPUT: JSON.stringify({
            config: image.config,
            revision: image.revision,
            workDir: image.workDir,
            env,
          }),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    // wait until the child's RegisterImage has taken effect (its answer is held back), then kill it
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`child never registered an image:\n${stderr}`)), 30_000);
      emu.on('call', (c: { action: string }) => {
        if (c.action === 'RegisterImage') {
          clearTimeout(t);
          resolve();
        }
      });
    });
    child.kill('SIGKILL');
    await exited;
    expect(emu.images('us-west-2')).toHaveLength(1);
    const orphan = emu.images('us-west-2')[0]!;
    expect(orphan.tags.get('import_id')).toBeUndefined(); // the crash came before the final tagging

    emu.faults.after = undefined;
    const r = await aws.importImage!(image, ctx);
    expect(r.import_id).toBe(orphan.id);
    expect(emu.images('us-west-2')).toHaveLength(1);
    expect(emu.images('us-west-2')[0]?.tags.get('import_id')).toBe(orphan.id);
    expect(calls(emu, 'ImportSnapshot')).toHaveLength(1);
  });

  it('survives a connection dropped after RegisterImage took effect (exactly one AMI)', async () => {
    const { emu, image, ctx } = await setup({
      faults: { after: { action: 'RegisterImage', mode: 'reset', times: 1 } },
    });
    const r = await aws.importImage!(image, ctx);
    const amis = emu.images('us-west-2');
    expect(amis).toHaveLength(1);
    expect(amis[0]?.id).toBe(r.import_id);
    expect(emu.snapshots('us-west-2')).toHaveLength(1);
  });

  it('finds the snapshot of a run that crashed before RegisterImage and imports nothing again', async () => {
    const { emu, image, ctx } = await setup({
      faults: { errors: [{ action: 'RegisterImage', code: 'Unavailable', status: 400, times: 1 }] },
    });
    // the first attempt fails at RegisterImage and cleans up its snapshot
    await expect(aws.importImage!(image, ctx)).rejects.toThrow(/Unavailable|injected/);
    expect(emu.snapshots('us-west-2')).toHaveLength(0);
    expect(emu.images('us-west-2')).toHaveLength(0);
    // a leftover tagged snapshot (as a crash would leave) is used instead of a new import
    const s = emu.region('us-west-2');
    s.snapshots.set('snap-0123456789abcdef0', {
      id: 'snap-0123456789abcdef0',
      region: 'us-west-2',
      ownerId: emu.ownerId,
      volumeSize: 1,
      encrypted: false,
      startedAt: Date.now(),
      completedAt: Date.now(),
      tags: new Map([
        ['project', 'test-cloud-images'],
        ['image_key', 'edge-x86_64-bios-tiny-aws'],
        ['revision', '0'],
      ]),
    });
    const r = await aws.importImage!(image, ctx);
    expect(emu.images('us-west-2')[0]?.blockDevices[0]?.snapshotId).toBe('snap-0123456789abcdef0');
    expect(r.import_id).toBe(emu.images('us-west-2')[0]?.id);
    expect(calls(emu, 'ImportSnapshot')).toHaveLength(1);
  });

  it('cleans up the snapshot when tagging it fails', async () => {
    const { emu, image, ctx } = await setup({
      faults: { errors: [{ action: 'CreateTags', code: 'InvalidParameterValue', message: 'tag rejected' }] },
    });
    await expect(aws.importImage!(image, ctx)).rejects.toThrow(/tag rejected/);
    expect(emu.snapshots('us-west-2')).toHaveLength(0);
    expect(emu.images('us-west-2')).toHaveLength(0);
    expect(await bucketCount()).toBe(0);
  });

  it('reports a failed import task, removing the temporary bucket', async () => {
    const { emu, image, ctx, messages } = await setup({ faults: { failImport: true } });
    await expect(aws.importImage!(image, ctx)).rejects.toThrow(
      /snapshot import .* failed: deleted - ClientError/,
    );
    expect(emu.snapshots('us-west-2')).toHaveLength(0);
    expect(await bucketCount()).toBe(0);
    // progress was reported while waiting
    expect(messages().some((m) => /snapshot import .*: (pending|active)/.test(m))).toBe(true);
  });

  it('rejects a file that is not a VHD (the import service reads the footer)', async () => {
    const { image, ctx } = await setup();
    const { writeFile } = await import('node:fs/promises');
    await writeFile(image.imagePath, Buffer.alloc(4096));
    await expect(aws.importImage!(image, ctx)).rejects.toThrow(/Unsupported VHD Footer/);
  });

  it('refuses a variant whose image_format is not vhd at configs, long before touching AWS', async () => {
    const { emu, image } = await setup({}, { image_format: 'qcow2' });
    expect(aws.checkConfig!(image.config)).toMatchObject([
      { key: 'image_format', expected: 'vhd (AWS imports VHD images)', found: 'qcow2' },
    ]);
    expect(emu.calls).toHaveLength(0);
  });

  it('encrypts with the KMS key given as `encrypted`', async () => {
    const key = 'arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';
    const { emu, image, ctx } = await setup({}, { encrypted: key });
    await aws.importImage!(image, ctx);
    const p = calls(emu, 'ImportSnapshot')[0]?.params;
    expect(p).toMatchObject({ Encrypted: 'true', KmsKeyId: key });
    await aws.publishImage!(image, ctx);
    for (const c of calls(emu, 'CopyImage'))
      expect(c.params).toMatchObject({ Encrypted: 'true', KmsKeyId: key });
  });

  it('publishes the other regions when one fails, and lists the failure', async () => {
    const { emu, image, ctx } = await setup({ faults: { failCopyRegions: ['eu-west-1'] } });
    Object.assign(image.config, await aws.importImage!(image, ctx));
    const pub = await aws.publishImage!(image, ctx);
    expect(Object.keys(pub.artifacts).sort()).toEqual(['us-east-1', 'us-west-2']);
    expect(pub.failures).toHaveLength(1);
    expect(pub.failures[0]).toMatchObject({ region: 'eu-west-1', code: 'ImageFailed' });
    expect(pub.failures[0]?.error).toMatch(/emulated copy failure/);
    expect(pub.published).toBeUndefined();
    // the failed copy is gone, so the next run can copy again
    expect(emu.images('eu-west-1')).toHaveLength(0);
    const summary = formatPublishSummary(image.imageName, pub);
    expect(summary).toMatch(/eu-west-1\s+FAILED/);
    expect(summary).toContain('2 of 3 region(s) ok, 1 FAILED');

    emu.faults.failCopyRegions = [];
    const retry = await aws.publishImage!(image, ctx);
    expect(retry.failures).toEqual([]);
    expect(Object.keys(retry.artifacts)).toHaveLength(3);
  });

  it('survives throttling (RequestLimitExceeded) on every third request', async () => {
    const { emu, image, ctx } = await setup({ faults: { throttleEvery: 3 } });
    Object.assign(image.config, await aws.importImage!(image, ctx));
    const pub = await aws.publishImage!(image, ctx);
    expect(pub.failures).toEqual([]);
    expect(Object.keys(pub.artifacts)).toHaveLength(3);
    expect(emu.calls.filter((c) => c.code === 'RequestLimitExceeded').length).toBeGreaterThan(5);
    expect(emu.images('us-east-1')).toHaveLength(1);
  });

  it('reports the public-AMI quota as ResourceLimitExceeded in the region that hit it', async () => {
    const { emu, image, ctx } = await setup({ faults: { publicQuota: 2 } });
    emu.seedImage('us-east-1', { name: 'old-1', public: true });
    emu.seedImage('us-east-1', { name: 'old-2', public: true });
    Object.assign(image.config, await aws.importImage!(image, ctx));
    const pub = await aws.publishImage!(image, ctx);
    expect(pub.failures).toEqual([
      expect.objectContaining({ region: 'us-east-1', code: 'ResourceLimitExceeded' }),
    ]);
    expect(pub.failures[0]?.error).toMatch(/public AMI quota reached in us-east-1/);
    // the copy exists (recorded) but is not public; the others are
    const copy = emu.images('us-east-1').find((i) => i.id === pub.artifacts['us-east-1']);
    expect(copy?.launchGroups.has('all')).toBe(false);
    expect(emu.images('eu-west-1')[0]?.launchGroups.has('all')).toBe(true);
    expect(formatPublishSummary(image.imageName, pub)).toMatch(
      /us-east-1\s+FAILED\s+ami-\S+\s+ResourceLimitExceeded/,
    );
  });

  it('caps the deprecation of public AMIs at 2 years, with a warning', async () => {
    const eol = new Date(Date.now() + 5 * YEAR).toISOString().slice(0, 10);
    const { emu, image, ctx, messages } = await setup(
      {},
      { end_of_life: eol, regions: { 'us-west-2': true } },
    );
    Object.assign(image.config, await aws.importImage!(image, ctx));
    const pub = await aws.publishImage!(image, ctx);
    expect(pub.failures).toEqual([]);
    const at = Date.parse(emu.images('us-west-2')[0]?.deprecationTime ?? '');
    expect(at).toBeGreaterThan(Date.now() + 1.99 * YEAR);
    expect(at).toBeLessThanOrEqual(Date.now() + 2 * YEAR);
    expect(pub.warnings?.join('\n')).toMatch(/beyond AWS's 2-year limit/);
    expect(messages(40).some((m) => /2-year limit/.test(m))).toBe(true);
  });

  it('keeps end_of_life for private AMIs shared with accounts', async () => {
    const eol = new Date(Date.now() + 5 * YEAR).toISOString().slice(0, 10);
    const { emu, image, ctx } = await setup(
      {},
      { end_of_life: eol, regions: { 'us-west-2': true }, access: { '111122223333': true, PUBLIC: false } },
    );
    Object.assign(image.config, await aws.importImage!(image, ctx));
    const pub = await aws.publishImage!(image, ctx);
    expect(pub.warnings).toEqual([]);
    const img = emu.images('us-west-2')[0];
    expect(img?.deprecationTime).toBe(`${eol}T23:59:00Z`);
    expect([...(img?.launchUsers ?? [])]).toEqual(['111122223333']);
    expect(img?.launchGroups.size).toBe(0);
  });

  it('publishes to ALL enabled regions', async () => {
    const { emu, image, ctx } = await setup({}, { regions: { ALL: true } });
    Object.assign(image.config, await aws.importImage!(image, ctx));
    const pub = await aws.publishImage!(image, ctx);
    expect(pub.failures).toEqual([]);
    expect(Object.keys(pub.artifacts).sort()).toEqual(emu.enabledRegions().sort());
  });

  it('re-imports when the source AMI is missing at publish time', async () => {
    const { emu, image, ctx } = await setup({}, { regions: { 'us-west-2': true, 'us-east-1': true } });
    const pub = await aws.publishImage!(image, ctx);
    expect(pub.failures).toEqual([]);
    expect(pub.reimported?.import_id).toBe(pub.artifacts['us-west-2']);
    expect(calls(emu, 'ImportSnapshot')).toHaveLength(1);
  });

  it('deletes an import (rollback): AMI and snapshot', async () => {
    const { emu, image, ctx } = await setup();
    const r = await aws.importImage!(image, ctx);
    Object.assign(image.config, r);
    await aws.deleteImage!(image, r.import_id, ctx);
    expect(emu.images()).toHaveLength(0);
    expect(emu.snapshots()).toHaveLength(0);
    // deleting again is harmless
    await aws.deleteImage!(image, r.import_id, ctx);
  });

  it('finds the latest imported revision, and lists and removes images for prune', async () => {
    const { emu, image, ctx } = await setup({}, { regions: { 'us-west-2': true, 'eu-west-1': true } });
    expect(await aws.latestImported!(image, ctx)).toBeUndefined();
    Object.assign(image.config, await aws.importImage!(image, ctx));
    const r1 = awsImage(image.workDir, { revision: 1, regions: image.config.regions });
    await writeFixedVhd(r1.imagePath, 1);
    await aws.importImage!(r1, ctx);
    const latest = await aws.latestImported!(image, ctx);
    expect(latest?.revision).toBe(1);
    expect(latest?.name).toBe('aws_alpine-20260101-x86_64-bios-tiny-r1');

    await aws.publishImage!(image, ctx);
    const listed = await aws.listImages!({ project: 'test-cloud-images' }, ctx);
    expect(
      listed
        .filter((i) => i.kind === 'image')
        .map((i) => `${i.region}:${i.name}`)
        .sort(),
    ).toEqual([
      'eu-west-1:aws_alpine-20260101-x86_64-bios-tiny-r0',
      'us-west-2:aws_alpine-20260101-x86_64-bios-tiny-r0',
      'us-west-2:aws_alpine-20260101-x86_64-bios-tiny-r1',
    ]);
    const eu = listed.find((i) => i.region === 'eu-west-1')!;
    expect(eu.public).toBe(true);
    expect(eu.snapshotIds).toHaveLength(1);
    await aws.deleteCloudImage!(eu, ctx);
    expect(emu.images('eu-west-1')).toHaveLength(0);
    expect(emu.snapshots('eu-west-1')).toHaveLength(0);
  });

  it('warns when project is still the placeholder', async () => {
    const { image, ctx, messages } = await setup({}, { project: 'CHANGE-ME-cloud-images-project' });
    await aws.importImage!(image, ctx);
    expect(messages(40).some((m) => /placeholder/.test(m))).toBe(true);
  });
});
