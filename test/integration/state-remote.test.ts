import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { BUILD, ROOT, runBuild } from '../helpers/cli.js';
import { fakeLocalBuild, makeOverlay, RELEASES_URL, readImages } from '../helpers/overlay.js';
import { type S3rverHandle, startS3rver } from '../helpers/s3rver.js';
import { type SshdHandle, sshdUnavailableReason, startSshd } from '../helpers/sshd.js';

const sshSkip = sshdUnavailableReason();
if (sshSkip) console.warn(`skipping ssh:// state tests: ${sshSkip}`);

function sha512(data: Buffer | string): string {
  return createHash('sha512').update(data).digest('hex');
}

/** a work directory with its own overlay; the overlay lives under `root` so it goes with it */
async function setup(root: string, name: string, storageUrl: string) {
  const work = join(root, name);
  const overlay = await makeOverlay({ storageUrl, parent: root });
  const args = ['--work-dir', work, '--custom', overlay, '--releases-url', RELEASES_URL];
  const r = await runBuild(['configs', ...args]);
  expect(r.code, r.stderr).toBe(0);
  const config = Object.values(await readImages(work))[0]!;
  return { work, overlay, args, config };
}

describe.skipIf(Boolean(sshSkip))('state and upload over ssh:// (real sshd on 127.0.0.1)', () => {
  let sshd: SshdHandle;
  let root: string;
  beforeAll(async () => {
    sshd = await startSshd();
    root = await mkdtemp(join(tmpdir(), 'cib-ssh-state-'));
  });
  afterAll(async () => {
    await sshd?.stop();
    await rm(root, { recursive: true, force: true });
  });

  it('uploads, and a fresh work directory picks the state up over one connection', async () => {
    const { work, args, config } = await setup(
      root,
      'a',
      `${sshd.urlPrefix}/store-a/{v_version}/{cloud}/{arch}`,
    );
    const image = await fakeLocalBuild(config, work);
    const before = sshd.acceptedConnections();
    const up = await runBuild(['upload', ...args], { env: sshd.env });
    expect(up.code, up.stderr).toBe(0);
    expect(sshd.acceptedConnections() - before).toBe(1);
    const dir = join(sshd.home, 'store-a', image.vVersion, 'nocloud', 'x86_64');
    const stored = (await readdir(dir)).sort();
    expect(stored).toEqual(
      [
        image.uploadFile,
        `${image.uploadFile}.sha512`,
        image.metadataFile,
        `${image.metadataFile}.sha512`,
      ].sort(),
    );
    expect(parse(await readFile(join(dir, image.metadataFile), 'utf8')).uploaded).toBeTruthy();

    const other = join(root, 'a-other');
    const st = await runBuild(['state', '--work-dir', other, ...args.slice(2)], { env: sshd.env });
    expect(st.code, st.stderr).toBe(0);
    expect(st.stdout).toMatch(new RegExp(`${image.imageName}\\s+\\S+\\s+release\\s+upload`));
  });

  it('a run killed mid-transfer resumes with exactly one complete, checksum-valid copy', async () => {
    const { work, args, config } = await setup(
      root,
      'b',
      `${sshd.urlPrefix}/store-b/{v_version}/{cloud}/{arch}`,
    );
    // large enough that the transfer is under way when the process is killed
    const image = await fakeLocalBuild(config, work, 64 * 1024 * 1024);
    const dir = join(sshd.home, 'store-b', image.vVersion, 'nocloud', 'x86_64');
    const child = spawn(BUILD, ['upload', ...args], { cwd: ROOT, env: { ...process.env, ...sshd.env } });
    let err = '';
    child.stderr.on('data', (d) => {
      err += String(d);
    });
    const killedWhileUploading = await new Promise<boolean>((resolve) => {
      const timer = setInterval(async () => {
        const files = await readdir(dir).catch(() => [] as string[]);
        if (err.includes('upload: ') && files.some((f) => f.endsWith('.tmp'))) {
          clearInterval(timer);
          child.kill('SIGKILL');
          resolve(true);
        }
      }, 20);
      child.on('exit', () => {
        clearInterval(timer);
        resolve(false);
      });
    });
    await new Promise((r) =>
      child.exitCode !== null || child.signalCode !== null ? r(null) : child.on('exit', r),
    );
    expect(killedWhileUploading, err).toBe(true);
    expect((await readdir(dir)).filter((f) => !f.startsWith('.'))).not.toContain(image.metadataFile);

    const resumed = await runBuild(['upload', ...args], { env: sshd.env, timeoutMs: 300_000 });
    expect(resumed.code, resumed.stderr).toBe(0);
    const stored = (await readdir(dir)).sort();
    expect(stored).toEqual(
      [
        image.uploadFile,
        `${image.uploadFile}.sha512`,
        image.metadataFile,
        `${image.metadataFile}.sha512`,
      ].sort(),
    );
    const data = await readFile(join(dir, image.uploadFile));
    expect(sha512(data)).toBe((await readFile(join(dir, `${image.uploadFile}.sha512`), 'utf8')).trim());
    expect(sha512(data)).toBe(sha512(await readFile(image.uploadPath)));
  }, 300_000);
});

describe('state and upload over s3:// (s3rver)', () => {
  let s3: S3rverHandle;
  let root: string;
  beforeAll(async () => {
    s3 = await startS3rver({ buckets: ['images'] });
    root = await mkdtemp(join(tmpdir(), 'cib-s3-state-'));
  });
  afterAll(async () => {
    await s3?.stop();
    await rm(root, { recursive: true, force: true });
  });

  it('uploads image, checksum and metadata; a fresh work directory reads the state back', async () => {
    const { work, args, config } = await setup(root, 'a', 's3://images/cloud/{v_version}/{cloud}/{arch}');
    const image = await fakeLocalBuild(config, work);
    const up = await runBuild(['upload', ...args], { env: s3.env });
    expect(up.code, up.stderr).toBe(0);

    const client = new S3Client(s3.clientConfig);
    const prefix = `cloud/${image.vVersion}/nocloud/x86_64/`;
    const listed = await client.send(new ListObjectsV2Command({ Bucket: 'images', Prefix: prefix }));
    expect((listed.Contents ?? []).map((o) => o.Key!.slice(prefix.length)).sort()).toEqual(
      [
        image.uploadFile,
        `${image.uploadFile}.sha512`,
        image.metadataFile,
        `${image.metadataFile}.sha512`,
      ].sort(),
    );
    const got = await client.send(new GetObjectCommand({ Bucket: 'images', Key: prefix + image.uploadFile }));
    const body = Buffer.from(await got.Body!.transformToByteArray());
    expect(sha512(body)).toBe(sha512(await readFile(image.uploadPath)));
    client.destroy();

    const st = await runBuild(['state', '--work-dir', join(root, 'a-other'), ...args.slice(2)], {
      env: s3.env,
    });
    expect(st.code, st.stderr).toBe(0);
    expect(st.stdout).toMatch(new RegExp(`${image.imageName}\\s+\\S+\\s+release\\s+upload`));
  });

  it('a missing bucket is one clear error naming the URL', async () => {
    const { args } = await setup(root, 'b', 's3://no-such-bucket/x/{v_version}');
    const st = await runBuild(['state', ...args], { env: s3.env });
    expect(st.code).toBe(1);
    expect(st.stderr).toContain('s3://no-such-bucket/x/');
  });
});
