// Many workers over one storage through the real CLI: `./build publish --shard I/N` in four processes, each
// with its own work directory, over one file:// storage and 12 images whose local build is a stand-in of fixed
// duration (test/helpers/scale-out.ts); aws images go through the EC2 emulator (imports via s3rver).
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { BUILD, type RunResult, runBuild } from '../helpers/cli.js';
import { awsTestEnv, type Ec2Emulator, startEc2 } from '../helpers/ec2-emulator.js';
import { type MotoHandle, motoUnavailableReason, startMoto } from '../helpers/moto.js';
import { makeOverlay, RELEASES_URL } from '../helpers/overlay.js';
import { type S3rverHandle, startS3rver } from '../helpers/s3rver.js';
import { SCALE_OUT_IMAGES, type ScaleOutFixture, scaleOutFixture } from '../helpers/scale-out.js';
import { type SshdHandle, sshdUnavailableReason, startSshd } from '../helpers/sshd.js';

const hasQemuImg = existsSync('/usr/bin/qemu-img');
if (!hasQemuImg) console.warn('skipping the sharded CLI tests: qemu-img is not installed');

const noMoto = motoUnavailableReason();
const noSshd = sshdUnavailableReason();
if (noMoto) console.warn(`skipping the sharded run over S3: ${noMoto}`);
if (noSshd) console.warn(`skipping the sharded run over ssh: ${noSshd}`);

const REGIONS = { 'us-west-2': true, 'eu-west-1': true };

/** every file under dir, relative, recursively */
async function walk(dir: string, prefix = ''): Promise<string[]> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const e of entries) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await walk(join(dir, e.name), rel)));
    else out.push(rel);
  }
  return out;
}

/** name -> number of stand-in builds started / finished (from every worker) */
async function builds(trace: string): Promise<{ started: Map<string, number>; ended: Map<string, number> }> {
  const started = new Map<string, number>();
  const ended = new Map<string, number>();
  for (const line of (await readFile(trace, 'utf8')).split('\n')) {
    const [what, name] = line.split(' ');
    if (!name) continue;
    const m = what === 'start' ? started : ended;
    m.set(name, (m.get(name) ?? 0) + 1);
  }
  return { started, ended };
}

async function storedMetadata(store: string): Promise<Record<string, Record<string, unknown>>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const f of await walk(store)) {
    if (f.endsWith('.yaml') && !f.includes('/.')) {
      out[
        f
          .split('/')
          .pop()!
          .replace(/\.yaml$/, '')
      ] = parse(await readFile(join(store, f), 'utf8'));
    }
  }
  return out;
}

const leaseFiles = async (store: string) => (await walk(store)).filter((f) => f.includes('.leases/'));

function worker(
  args: string[],
  env: Record<string, string>,
): { child: ChildProcess; done: Promise<RunResult> } {
  // its own process group, so SIGKILL takes the stand-in build with it, like a machine going away
  const child = spawn(BUILD, args, {
    env: { ...process.env, NO_COLOR: '1', ...env },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => {
    stdout += String(d);
  });
  child.stderr!.on('data', (d) => {
    stderr += String(d);
  });
  const done = new Promise<RunResult>((resolve) =>
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr })),
  );
  return { child, done };
}

describe.skipIf(!hasQemuImg)('sharded workers through ./build', { timeout: 300_000 }, () => {
  let s3: S3rverHandle;
  let emu: Ec2Emulator;
  let moto: MotoHandle | undefined;
  let sshd: SshdHandle | undefined;
  const fixtures: ScaleOutFixture[] = [];

  beforeAll(async () => {
    s3 = await startS3rver({ buckets: ['no-conditional-writes'] });
    emu = await startEc2({ s3Endpoint: s3.endpoint });
  }, 60_000);

  afterAll(async () => {
    await moto?.stop();
    await sshd?.stop();
    await emu?.close();
    await s3?.stop();
    for (const f of fixtures) await f.cleanup();
  });

  it('four workers, 12 images: each built, uploaded and published exactly once; no lease left', async () => {
    const fx = await scaleOutFixture({ buildSeconds: 1, awsRegions: REGIONS });
    fixtures.push(fx);
    const store = fx.store;
    const env = { ...fx.env, ...s3.env, ...awsTestEnv(emu.url) };
    const results = await Promise.all(
      [1, 2, 3, 4].map((i) =>
        runBuild(
          [
            'publish',
            '--shard',
            `${i}/4`,
            '--run-id',
            'run-1',
            '--lease-ttl',
            '10',
            ...fx.args(join(fx.base, `w${i}`)),
          ],
          {
            env,
            timeoutMs: 240_000,
          },
        ),
      ),
    );
    for (const r of results) expect(r.code, r.stderr.slice(-4000)).toBe(0);

    // built exactly once (the stand-in build's trace is shared by all workers)
    const { started, ended } = await builds(fx.trace);
    expect(started.size).toBe(SCALE_OUT_IMAGES);
    for (const [name, n] of started) expect([name, n, ended.get(name)]).toEqual([name, 1, 1]);

    // uploaded exactly once: one upload per image among all the workers' logs, and complete in storage
    const logs = results.map((r) => r.stderr).join('\n');
    const meta = await storedMetadata(store);
    expect(Object.keys(meta)).toHaveLength(SCALE_OUT_IMAGES);
    for (const name of Object.keys(meta)) {
      expect(logs.split(`upload: ${name} done`).length - 1, name).toBe(1);
      expect(meta[name]!.uploaded, name).toBeTruthy();
    }

    // the aws images published exactly once: one image per region in the cloud, one publish recorded
    const aws = Object.keys(meta).filter((n) => n.startsWith('aws_'));
    expect(aws).toHaveLength(4);
    for (const region of Object.keys(REGIONS)) {
      expect(
        emu
          .images(region)
          .map((i) => i.name)
          .sort(),
      ).toEqual(aws.sort());
    }
    for (const name of aws) {
      expect(meta[name]!.published, name).toBeTruthy();
      expect(Object.keys(meta[name]!.artifacts as object).sort()).toEqual(Object.keys(REGIONS).sort());
      expect(logs.split(`publish: ${name} done`).length - 1, name).toBe(1);
    }

    // every image was done by exactly one worker, and each worker did its own share
    const done = results.map((r) => Number(/(\d+) image\(s\) done by this worker/.exec(r.stdout)?.[1]));
    expect(done.reduce((a, b) => a + b, 0)).toBe(SCALE_OUT_IMAGES);
    expect(Math.min(...done)).toBeGreaterThan(0);
    for (const r of results) expect(r.stdout).toMatch(/lease requests: \d+ \(\d+\.\d per image\)/);

    // nothing left in the lease directories, and no temporary files anywhere in storage
    expect(await leaseFiles(store)).toEqual([]);
    expect((await walk(store)).filter((f) => f.split('/').pop()!.startsWith('.'))).toEqual([]);
  });

  for (const backend of ['s3:// (moto)', 'ssh://'] as const) {
    const skip = backend === 'ssh://' ? noSshd : noMoto;
    it.skipIf(Boolean(skip))(
      `four workers over ${backend}: each image built and uploaded once, no lease left`,
      async () => {
        let env: Record<string, string>;
        let storageUrl: string;
        let keys: () => Promise<string[]>;
        if (backend === 'ssh://') {
          sshd ??= await startSshd();
          const sd = sshd;
          env = sd.env;
          storageUrl = `${sd.urlPrefix}/store/{v_version}/{cloud}/{arch}`;
          keys = () => walk(join(sd.home, 'store'));
        } else {
          moto ??= await startMoto();
          const client = new S3Client({
            endpoint: moto.endpoint,
            region: 'us-east-1',
            forcePathStyle: true,
            credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
          });
          await client.send(new CreateBucketCommand({ Bucket: 'scale' }));
          env = moto.env;
          storageUrl = 's3://scale/{v_version}/{cloud}/{arch}';
          keys = async () => {
            const res = await client.send(new ListObjectsV2Command({ Bucket: 'scale' }));
            return (res.Contents ?? []).map((o) => o.Key!);
          };
        }
        const fx = await scaleOutFixture({ buildSeconds: 1, storageUrl });
        fixtures.push(fx);
        const results = await Promise.all(
          [1, 2, 3, 4].map((i) =>
            runBuild(
              [
                'upload',
                '--shard',
                `${i}/4`,
                '--run-id',
                'run-3',
                '--lease-ttl',
                '10',
                ...fx.args(join(fx.base, `w${i}`)),
              ],
              { env: { ...fx.env, ...env }, timeoutMs: 240_000 },
            ),
          ),
        );
        for (const r of results) expect(r.code, r.stderr.slice(-4000)).toBe(0);
        const { started } = await builds(fx.trace);
        expect(started.size).toBe(SCALE_OUT_IMAGES);
        for (const [name, n] of started) expect([name, n]).toEqual([name, 1]);
        const stored = await keys();
        const metadata = stored.filter((k) => k.endsWith('.yaml') && !k.includes('/.'));
        expect(metadata).toHaveLength(SCALE_OUT_IMAGES);
        const logs = results.map((r) => r.stderr).join('\n');
        for (const k of metadata) {
          const name = k
            .split('/')
            .pop()!
            .replace(/\.yaml$/, '');
          expect(logs.split(`upload: ${name} done`).length - 1, name).toBe(1);
        }
        expect(stored.filter((k) => k.includes('.leases/') || k.split('/').pop()!.startsWith('.'))).toEqual(
          [],
        );
      },
    );
  }

  it('a worker killed with SIGKILL: the others finish its images once its lease expires', async () => {
    const fx = await scaleOutFixture({ buildSeconds: 2 });
    fixtures.push(fx);
    const store = fx.store;
    const ws = [1, 2, 3, 4].map((i) =>
      worker(
        [
          'publish',
          '--shard',
          `${i}/4`,
          '--run-id',
          'run-2',
          '--lease-ttl',
          '5',
          ...fx.args(join(fx.base, `w${i}`)),
        ],
        fx.env,
      ),
    );
    const victim = ws[0]!.child;
    // wait until worker 1 holds a lease, then take its machine away
    let held: string | undefined;
    const until = Date.now() + 120_000;
    while (!held && Date.now() < until) {
      for (const f of await leaseFiles(store)) {
        try {
          const rec = JSON.parse(await readFile(join(store, f), 'utf8'));
          if (rec.pid === victim.pid) held = rec.image_key;
        } catch {
          // being replaced right now
        }
      }
      if (!held) await new Promise((r) => setTimeout(r, 100));
    }
    expect(held, 'worker 1 never held a lease').toBeTruthy();
    process.kill(-victim.pid!, 'SIGKILL');
    const [killed, ...rest] = await Promise.all(ws.map((w) => w.done));
    expect(killed!.code).not.toBe(0);
    for (const r of rest) expect(r.code, r.stderr.slice(-4000)).toBe(0);

    // the image worker 1 was on was taken over after its lease expired
    const logs = rest.map((r) => r.stderr).join('\n');
    expect(logs).toMatch(new RegExp(`${held}: took over the expired lease of [^ ]+:${victim.pid}:`));
    const meta = await storedMetadata(store);
    expect(Object.keys(meta)).toHaveLength(SCALE_OUT_IMAGES);
    for (const [name, m] of Object.entries(meta)) expect(m.uploaded, name).toBeTruthy();
    const done = rest.map((r) => Number(/(\d+) image\(s\) done by this worker/.exec(r.stdout)?.[1]));
    // worker 1's share was finished by the others
    expect(done.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(SCALE_OUT_IMAGES - 1);
    expect(await leaseFiles(store)).toEqual([]);
  });

  it('refuses sharded mode on a store without conditional writes, saying what is missing', async () => {
    const overlay = await makeOverlay({ storageUrl: 's3://no-conditional-writes/{cloud}' });
    const work = join(fixtures[0]?.base ?? overlay, 'refused');
    const r = await runBuild(
      ['upload', '--shard', '1/2', '--work-dir', work, '--custom', overlay, '--releases-url', RELEASES_URL],
      { env: s3.env },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('refusing sharded mode');
    expect(r.stderr).toContain(
      'a create-only write (If-None-Match: *) of an existing key succeeded; expected 412 Precondition Failed',
    );
    expect(r.stderr).toContain('against a missing key succeeded');
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
