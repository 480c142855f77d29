/**
 * import / publish / rollback of an aws variant through the real ./build, against the EC2 emulator (and s3rver for
 * the import bucket). The local build is faked: a small fixed VHD and its metadata, as the local step leaves them.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { ImageConfig } from '../../src/config/types.js';
import { Image } from '../../src/state/image.js';
import { emptyState, stateAfter } from '../../src/state/image-state.js';
import { writeMetadata } from '../../src/state/metadata.js';
import {
  type BrokerEmulator,
  brokerEnv,
  DEFAULT_BROKER_KEY,
  startBroker,
} from '../helpers/broker-emulator.js';
import { BUILD, runBuild } from '../helpers/cli.js';
import { awsTestEnv, type Ec2Emulator, startEc2, writeFixedVhd } from '../helpers/ec2-emulator.js';
import { makeOverlay, passedBootTest, RELEASES_URL, readImages } from '../helpers/overlay.js';
import { type S3rverHandle, startS3rver } from '../helpers/s3rver.js';

const REGIONS = { 'us-west-2': true, 'us-east-1': true, 'eu-west-1': true };

let root: string;
let overlay: string;
let s3: S3rverHandle;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'aws-cli-'));
  s3 = await startS3rver({ buckets: [] });
  overlay = await makeOverlay({
    storageUrl: 'file://{work_dir}/storage/{v_version}/{cloud}/{arch}',
    clouds: ['aws'],
    cloudSettings: { aws: { image_format: 'vhd', access: { PUBLIC: true }, regions: REGIONS } },
  });
});

afterAll(async () => {
  await s3?.stop();
  await rm(root, { recursive: true, force: true });
  if (overlay) await rm(overlay, { recursive: true, force: true });
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

function envFor(emu: Ec2Emulator, extra: Record<string, string> = {}): Record<string, string> {
  return { ...s3.env, ...awsTestEnv(emu.url), ...extra };
}

/** `./build configs`, then a fake local build of revision `revision` (a 1 MiB fixed VHD). */
async function prepare(name: string, revision = 0): Promise<{ work: string; image: Image }> {
  const work = join(root, name);
  const r = await runBuild(['configs', ...args(work)]);
  expect(r.code, r.stderr).toBe(0);
  const config = Object.values(await readImages(work))[0]!;
  const image = await fakeBuild(config, work, revision);
  return { work, image };
}

async function fakeBuild(config: ImageConfig, work: string, revision: number): Promise<Image> {
  const image = new Image(
    config,
    work,
    passedBootTest(stateAfter.built(emptyState(revision), '2026-11-20T10:00:00.000Z')),
  );
  await writeFixedVhd(image.imagePath, 1);
  const sum = createHash('sha512')
    .update(await readFile(image.imagePath))
    .digest('hex');
  await writeFile(`${image.imagePath}.sha512`, `${sum}\n`);
  await writeMetadata(image, new Date('2026-11-20T10:00:00.000Z'));
  return image;
}

async function meta(image: Image, revision = image.revision) {
  const img = new Image(image.config, image.workDir, emptyState(revision));
  return parse(await readFile(img.metadataPath, 'utf8')) as Record<string, unknown>;
}

// several ./build runs per test, each a fresh Node process: allow for a busy machine
describe('aws through ./build', { timeout: 180_000 }, () => {
  it('import, publish to three regions, then rollback is refused; --revise publishes r1 next to r0', async () => {
    const emu = await startEc2({ s3Endpoint: s3.endpoint });
    try {
      const { work, image } = await prepare('full');
      const env = envFor(emu);

      const imp = await runBuild(['import', ...args(work)], { env });
      expect(imp.code, imp.stderr).toBe(0);
      const m0 = await meta(image);
      expect(m0.import_id).toMatch(/^ami-/);
      expect(m0.import_region).toBe('us-west-2');
      expect(emu.images('us-west-2').map((i) => i.name)).toEqual([image.imageName]);

      const pub = await runBuild(['publish', ...args(work)], { env });
      expect(pub.code, pub.stderr).toBe(0);
      const m1 = await meta(image);
      expect(Object.keys(m1.artifacts as object).sort()).toEqual(Object.keys(REGIONS).sort());
      expect(m1.published).toBeTruthy();
      for (const [region, id] of Object.entries(m1.artifacts as Record<string, string>)) {
        const img = emu.images(region).find((i) => i.id === id);
        expect(img?.state).toBe('available');
        expect(img?.launchGroups.has('all')).toBe(true);
      }

      const rb = await runBuild(['rollback', ...args(work)], { env });
      expect(rb.code, rb.stderr).toBe(0);
      expect(rb.stderr).toMatch(/rollback refused/);
      expect(emu.images()).toHaveLength(3);
      expect((await meta(image)).import_id).toBe(m0.import_id);

      // the state step proposes the bump; a build already made for r1 is picked up and published beside r0
      const st = await runBuild(['state', '--revise', ...args(work)], { env });
      expect(st.code, st.stderr).toBe(0);
      expect(st.stderr).toMatch(/would bump revision to r1/);
      const r1 = await fakeBuild(image.config, work, 1);
      const rev = await runBuild(['publish', '--revise', ...args(work)], { env });
      expect(rev.code, rev.stderr).toBe(0);
      const n1 = await meta(r1);
      expect(n1.revision).toBe(1);
      expect(n1.import_id).not.toBe(m0.import_id);
      for (const region of Object.keys(REGIONS)) {
        expect(
          emu
            .images(region)
            .map((i) => i.name)
            .sort(),
        ).toEqual([image.imageName, r1.imageName].sort());
      }
      expect((await meta(image, 0)).import_id).toBe(m0.import_id);
    } finally {
      await emu.close();
    }
  });

  it('rolls back an unpublished import: the AMI and its snapshot go', async () => {
    const emu = await startEc2({ s3Endpoint: s3.endpoint });
    try {
      const { work, image } = await prepare('rollback');
      const env = envFor(emu);
      const im = await runBuild(['import', ...args(work)], { env });
      expect(im.code, im.stderr).toBe(0);
      expect(emu.images('us-west-2')).toHaveLength(1);
      const rb = await runBuild(['rollback', ...args(work)], { env });
      expect(rb.code, rb.stderr).toBe(0);
      expect(emu.images()).toHaveLength(0);
      expect(emu.snapshots()).toHaveLength(0);
      expect(calls(emu, 'DeregisterImage')).toBe(1);
      expect(image.imageName).toMatch(/-r0$/);
    } finally {
      await emu.close();
    }
  });

  it('one failing region: the others are published, the exit code is non-zero and the summary names it', async () => {
    const emu = await startEc2({ s3Endpoint: s3.endpoint, faults: { failCopyRegions: ['eu-west-1'] } });
    try {
      const { work, image } = await prepare('region-failure');
      const env = envFor(emu);
      const pub = await runBuild(['publish', ...args(work)], { env });
      expect(pub.code).not.toBe(0);
      expect(pub.stdout).toMatch(/Publishing failed in these regions/);
      expect(pub.stdout).toMatch(new RegExp(`${image.imageName}\\s+eu-west-1\\s+ImageFailed`));
      const m = await meta(image);
      expect(Object.keys(m.artifacts as object).sort()).toEqual(['us-east-1', 'us-west-2']);
      expect(m.published ?? null).toBeNull();

      // the region recovers: publishing again completes it without copying the others again
      emu.faults.failCopyRegions = [];
      const again = await runBuild(['publish', ...args(work)], { env });
      expect(again.code, again.stdout + again.stderr).toBe(0);
      expect(Object.keys((await meta(image)).artifacts as object)).toHaveLength(3);
      expect(calls(emu, 'CopyImage')).toBe(3);
    } finally {
      await emu.close();
    }
  });

  it('a crash right after RegisterImage, then a rerun: exactly one AMI', async () => {
    const emu = await startEc2({
      s3Endpoint: s3.endpoint,
      faults: { after: { action: 'RegisterImage', mode: 'hold' } },
    });
    try {
      const { work, image } = await prepare('crash');
      const env = envFor(emu);
      const child = spawn(BUILD, ['import', ...args(work)], {
        env: { ...process.env, NO_COLOR: '1', ...env },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(
          () => reject(new Error(`./build never registered an image:\n${stderr}`)),
          60_000,
        );
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
      expect((await meta(image)).import_id ?? null).toBeNull();

      emu.faults.after = undefined;
      const rerun = await runBuild(['import', ...args(work)], { env });
      expect(rerun.code, rerun.stderr).toBe(0);
      expect(rerun.stderr).toMatch(/already imported as ami-/);
      const amis = emu.images('us-west-2');
      expect(amis).toHaveLength(1);
      expect((await meta(image)).import_id).toBe(amis[0]?.id);
      expect(calls(emu, 'ImportSnapshot')).toBe(1);
    } finally {
      await emu.close();
    }
  });

  it('--use-broker: per-region credentials from the identity broker, no secret in output or files', async () => {
    let broker: BrokerEmulator | undefined;
    let emu: Ec2Emulator | undefined;
    try {
      broker = await startBroker({
        credentialsFor: (r) =>
          r === 'us-west-2' ? { access_key: 'S3RVER', secret_key: 'S3RVER' } : undefined,
      });
      const b = broker;
      emu = await startEc2({ s3Endpoint: s3.endpoint, accessKeyFor: (r) => b.accessKeyFor(r) });
      const { work, image } = await prepare('broker');
      // no AWS keys and no region in the environment: everything comes from the broker
      const env = {
        ...envFor(emu),
        AWS_ACCESS_KEY_ID: '',
        AWS_SECRET_ACCESS_KEY: '',
        AWS_REGION: '',
        ...brokerEnv(broker),
      };
      const pub = await runBuild(['publish', '--use-broker', '--debug', ...args(work)], { env });
      expect(pub.code, pub.stderr).toBe(0);
      const m = await meta(image);
      expect(Object.keys(m.artifacts as object).sort()).toEqual(Object.keys(REGIONS).sort());
      for (const region of Object.keys(REGIONS)) {
        const keys = new Set(emu.calls.filter((c) => c.region === region).map((c) => c.accessKeyId));
        expect([...keys]).toEqual([broker.accessKeyFor(region)]);
      }
      const secrets = [
        DEFAULT_BROKER_KEY,
        broker.secretKeyFor('eu-west-1'),
        broker.secretKeyFor('us-east-1'),
      ];
      const files = [join(work, 'images.yaml'), image.metadataPath];
      for (const s of secrets) {
        expect(pub.stdout + pub.stderr).not.toContain(s);
        for (const f of files) expect(await readFile(f, 'utf8')).not.toContain(s);
      }

      const bad = await runBuild(['publish', '--use-broker', ...args(work)], {
        env: { ...env, IDENTITY_BROKER_API_KEY: 'revoked-key-0000000000' },
      });
      expect(bad.code).not.toBe(0);
      expect(bad.stdout + bad.stderr).toMatch(/expired or invalid \(HTTP 401/);
      expect(bad.stdout + bad.stderr).not.toContain('revoked-key-0000000000');
    } finally {
      await emu?.close();
      await broker?.close();
    }
  });
});

function calls(emu: Ec2Emulator, action: string): number {
  return emu.calls.filter((c) => c.action === action && c.status === 200).length;
}
