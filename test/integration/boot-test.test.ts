// The `test` step end to end through the real CLI, with real QEMU (TCG) booting real Alpine 3.19 userlands
// (tiny-cloud 3.0.7, OpenRC, OpenSSH from the offline mirror; Debian's cloud kernel as the stand-in kernel):
//
//   - a good image passes every check, and its upload goes ahead; beside it (--parallel 2) an image whose
//     overlay disables sshd fails on the SSH check with the serial console's tail, and is not uploaded;
//   - an image with a corrupted kernel fails within a bounded time, the serial tail in the message;
//   - an aws variant gets its key through the IMDSv2 stand-in (token flow), no NoCloud seed;
//   - a build killed during the test leaves no QEMU process and no overlay behind.
//
// The images are built once (test/helpers/boot-images.ts, ~10 s each) and shared through a cache.
import { spawn } from 'node:child_process';
import { copyFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { ImageConfig } from '../../src/config/types.js';
import { Image } from '../../src/state/image.js';
import { emptyState, stateAfter } from '../../src/state/image-state.js';
import { writeMetadata } from '../../src/state/metadata.js';
import { hashFile } from '../../src/util/fs.js';
import { chrootUnavailable, ensureTinyImage, stepArgs } from '../helpers/alpine-image.js';
import { bootImagesUnavailable, ensureBootImage } from '../helpers/boot-images.js';
import { BUILD, ROOT, runBuild } from '../helpers/cli.js';
import { makeOverlay, RELEASES_URL, readImages } from '../helpers/overlay.js';

const reason = await bootImagesUnavailable();
if (reason) console.warn(`skipping the boot-test end-to-end tests: ${reason}`);
const reasonChroot = reason ?? (await chrootUnavailable('x86_64', 'bios'));
if (reasonChroot) console.warn(`skipping the boot test of a chroot-built image: ${reasonChroot}`);

const BUILT = '2026-11-29T08:00:00.000Z';

/** What the fixture images have, as configuration (the checks compare the booted system with it). */
const IMAGE_SETTINGS = {
  motd: { welcome: 'Welcome to Alpine!' },
  packages: { 'alpine-base': true, openssh: true, 'tiny-cloud': true, doas: true, sudo: false },
  services: {
    sysinit: { devfs: true },
    boot: { hostname: true, syslog: true, bootmisc: true },
    default: { networking: true, sshd: true },
    shutdown: { killprocs: true, 'mount-ro': true },
  },
  kernel_options: { 'console=ttyS0,115200': true, quiet: true },
};

let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'boot-test-e2e-'));
});
afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

/** ./build configs for a small matrix, then put `images[cloud]` in place as that variant's local build. */
async function prepare(
  name: string,
  images: Record<string, string>,
  cloudSettings: Record<string, Record<string, unknown>> = {},
  firmware: 'bios' | 'uefi' = 'bios',
): Promise<{ work: string; args: string[]; byCloud: Record<string, Image> }> {
  const work = join(root, name, 'work');
  const storage = join(root, name, 'storage');
  const overlay = await makeOverlay({
    storageUrl: `file://${storage}/{cloud}`,
    clouds: Object.keys(images),
    firmwares: [firmware],
    defaults: IMAGE_SETTINGS,
    cloudSettings,
    parent: root,
  });
  const args = ['--custom', overlay, '--work-dir', work, '--releases-url', RELEASES_URL, '--no-color'];
  const r = await runBuild(['configs', ...args]);
  expect(r.code, r.stderr).toBe(0);
  const byCloud: Record<string, Image> = {};
  for (const config of Object.values(await readImages(work)) as ImageConfig[]) {
    const image = new Image(config, work, stateAfter.built(emptyState(), BUILT));
    const { mkdir } = await import('node:fs/promises');
    await mkdir(image.localDir, { recursive: true });
    const src = images[config.cloud]!;
    if (config.image_format === 'vhd') {
      await runQemuImg([
        'convert',
        '-f',
        'qcow2',
        '-O',
        'vpc',
        '-o',
        'subformat=fixed,force_size=on',
        src,
        image.imagePath,
      ]);
    } else {
      await copyFile(src, image.imagePath);
    }
    await writeFile(`${image.uploadPath}.sha512`, `${await hashFile(image.uploadPath)}\n`);
    await writeMetadata(image, new Date(BUILT));
    byCloud[config.cloud] = image;
  }
  return { work, args, byCloud };
}

async function runQemuImg(args: string[]): Promise<void> {
  const { execFile } = await import('node:child_process');
  await new Promise<void>((resolve, reject) =>
    execFile('qemu-img', args, (err) => (err ? reject(err) : resolve())),
  );
}

async function metadataOf(image: Image): Promise<Record<string, unknown>> {
  return parse(await readFile(image.metadataPath, 'utf8')) as Record<string, unknown>;
}

interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

describe.skipIf(reason)('the test step, with QEMU', { timeout: 15 * 60_000 }, () => {
  it('a good image passes every check and is uploaded; an overlay that disables sshd fails on SSH and is not (--parallel 2)', async () => {
    const [good, nosshd] = await Promise.all([
      ensureBootImage({ firmware: 'bios', cloud: 'nocloud' }),
      ensureBootImage({ firmware: 'bios', cloud: 'nocloud', variant: 'nosshd' }),
    ]);
    // nocloud: the good image; generic: the overlay that disables sshd
    const { args, byCloud } = await prepare(
      'pair',
      { nocloud: good, generic: nosshd },
      { generic: { services: { default: { sshd: false } } } },
    );
    const st = await runBuild(['state', ...args]);
    expect(st.stdout).toMatch(/nocloud_alpine-3\.24\.1-x86_64-bios-tiny-r0\s+nocloud\s+test upload/);

    const up = await runBuild(['upload', '--parallel', '2', ...args], { timeoutMs: 12 * 60_000 });
    expect(up.code).toBe(1);
    const out = `${up.stdout}\n${up.stderr}`;

    // the good one
    const okImage = byCloud.nocloud!;
    const m = await metadataOf(okImage);
    const rec = m.boot_test as Record<string, unknown>;
    if (rec.status !== 'passed') console.error(out.slice(-6000));
    expect(rec.status).toBe('passed');
    expect(rec.built).toBe(BUILT);
    expect(rec.datasource).toBe('nocloud-vfat');
    const checks = rec.checks as Check[];
    expect(checks.map((c) => c.name)).toEqual([
      'ssh',
      'hostname',
      'user-data',
      'rootfs-size',
      'packages',
      'services',
      'cmdline',
      'motd',
      'poweroff',
    ]);
    for (const c of checks) expect(c.ok, `${c.name}: ${c.detail}`).toBe(true);
    const times = rec.times as Record<string, number>;
    expect(times.ssh).toBeGreaterThan(0);
    expect(times.login_prompt).toBeGreaterThan(0);
    expect(times.poweroff).toBeGreaterThan(0);
    const fp = rec.footprint as Record<string, number>;
    expect(fp.memory_used_kib).toBeGreaterThan(10_000);
    expect(fp.rootfs_used_kib).toBeGreaterThan(10_000);
    expect(fp.rootfs_free_kib).toBeGreaterThan(0);
    expect(fp.image_bytes).toBeGreaterThan(1_000_000);
    // each check's result printed, the boot log kept next to the image, the image uploaded
    expect(out).toMatch(/test: nocloud_alpine-3\.24\.1-x86_64-bios-tiny-r0 passed/);
    expect(out).toMatch(/ok +user-data +the user-data script left/);
    const log = await readFile(join(okImage.localDir, String(rec.boot_log)), 'utf8');
    expect(log).toMatch(/boot-test-[0-9a-f]{8} login:/);
    expect(m.uploaded).toBeTypeOf('string');

    // the one without sshd: failed on the SSH check, with the console's last lines; not uploaded
    const bad = byCloud.generic!;
    const mb = await metadataOf(bad);
    const rb = mb.boot_test as Record<string, unknown>;
    expect(rb.status).toBe('failed');
    expect(String(rb.error)).toMatch(/^check ssh failed: SSH did not answer with the injected key as alpine/);
    expect(String(rb.error)).toMatch(/--- serial console, last lines ---\n[\s\S]*login:/);
    expect(mb.uploaded ?? null).toBeNull();
    expect(up.stdout).toMatch(/generic_alpine-3\.24\.1-x86_64-bios-tiny-r0\s+test\s+check ssh failed/);

    // a later upload is refused while the latest test failed: the test runs again first and fails again, unless
    // the test is disabled, which is recorded
    const forced = await runBuild(['upload', '--disable', 'test', '--only', 'generic', ...args]);
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stderr).toMatch(/NOT boot-tested \(--disable test\)/);
    const mf = await metadataOf(bad);
    expect((mf.boot_test as Record<string, unknown>).status).toBe('skipped');
    expect((mf.boot_test as Record<string, unknown>).reason).toBe('--disable test');
    expect(mf.uploaded).toBeTypeOf('string');
  });

  it('an image whose kernel is corrupted fails within a bounded time, with the serial tail', async () => {
    const img = await ensureBootImage({ firmware: 'bios', cloud: 'nocloud', variant: 'corrupt-kernel' });
    const { args, byCloud } = await prepare('corrupt', { nocloud: img });
    const t0 = Date.now();
    const r = await runBuild(['test', ...args], {
      env: { BUILD_TEST_TIMEOUT: '120' },
      timeoutMs: 5 * 60_000,
    });
    const seconds = (Date.now() - t0) / 1000;
    expect(r.code).toBe(1);
    expect(seconds).toBeLessThan(150);
    const rec = (await metadataOf(byCloud.nocloud!)).boot_test as Record<string, unknown>;
    expect(rec.status).toBe('failed');
    expect(String(rec.error)).toMatch(/^check boot failed: /);
    expect(String(rec.error)).toMatch(/--- serial console, last lines ---\n/);
    expect(r.stdout).toMatch(/check boot failed/);
  });

  it('an aws variant gets its key through the IMDSv2 stand-in, not NoCloud', async () => {
    const img = await ensureBootImage({ firmware: 'uefi', cloud: 'aws' });
    // aws images are fixed VHDs: the test boots them as they are uploaded
    const { args, byCloud } = await prepare('aws', { aws: img }, { aws: { image_format: 'vhd' } }, 'uefi');
    const r = await runBuild(['test', '--debug', ...args], { timeoutMs: 10 * 60_000 });
    const rec = (await metadataOf(byCloud.aws!)).boot_test as Record<string, unknown>;
    if (rec.status !== 'passed') console.error(r.stderr.slice(-6000));
    expect(r.code).toBe(0);
    expect(rec.status).toBe('passed');
    expect(rec.datasource).toBe('aws-imdsv2');
    const checks = rec.checks as Check[];
    const md = checks.find((c) => c.name === 'metadata-service')!;
    expect(md.ok).toBe(true);
    expect(md.detail).toMatch(/read from aws-imdsv2 with a session token/);
    // no seed volume was made (datasource above), and the guest could only have read its key from the IMDS
    // stand-in through QEMU's guestfwd of 169.254.169.254:80 (the metadata-service check)
    // it booted the fixed VHD that is uploaded (through a qcow2 overlay backed by it)
    const { stat } = await import('node:fs/promises');
    expect((rec.footprint as Record<string, number>).image_bytes).toBe(
      (await stat(byCloud.aws!.imagePath)).size,
    );
    expect(byCloud.aws!.imagePath).toMatch(/\.vhd$/);
  });

  it('a build killed during the test leaves no QEMU process and no overlay', async () => {
    const img = await ensureBootImage({ firmware: 'bios', cloud: 'nocloud' });
    const { work, args } = await prepare('killed', { nocloud: img });
    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      const child = spawn(BUILD, ['test', ...args], { cwd: ROOT, env: { ...process.env, NO_COLOR: '1' } });
      let err = '';
      child.stderr.on('data', (b: Buffer) => {
        err += b.toString();
      });
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      // wait until QEMU runs
      const deadline = Date.now() + 120_000;
      while (Date.now() < deadline && (await qemuOf(work)).length === 0) await sleep(250);
      expect((await qemuOf(work)).length, err).toBe(1);
      await sleep(1500);
      child.kill(signal);
      await exited;
      // QEMU dies with the build: at once on SIGTERM (the build kills it), by the parent-death signal on SIGKILL
      const gone = Date.now() + 10_000;
      while (Date.now() < gone && (await qemuOf(work)).length > 0) await sleep(200);
      expect(await qemuOf(work)).toEqual([]);
      const left = await readdir(join(work, 'boot-test')).catch(() => []);
      if (signal === 'SIGTERM') expect(left).toEqual([]);
    }
    // what a SIGKILL left (its overlay) is swept by the next run before anything else
    const { sweepStale } = await import('../../src/boottest/run.js');
    const { silentLogger } = await import('../../src/util/log.js');
    await sweepStale(work, silentLogger());
    expect(await readdir(join(work, 'boot-test'))).toEqual([]);
  });
});

describe.skipIf(reasonChroot)(
  'the test step on an image of the chroot builder',
  { timeout: 20 * 60_000 },
  () => {
    it('boots the tiny image ./build local made from the mirror and checks it against its configuration', async () => {
      const tiny = await ensureTinyImage('bios', 'x86_64');
      const base = join(root, 'chroot');
      // the work directory was installed from the build's overlay: the test step names the same one
      const { env } = tiny;
      // the build's work directory, as ./build local left it (the cached image is shared: work on a copy)
      const { cp } = await import('node:fs/promises');
      const work = join(base, 'work');
      await cp(join(tiny.localDir, '..', '..', '..'), work, { recursive: true });
      const only = ['3.19', 'x86_64', 'bios', 'tiny', 'vm', 'nocloud'];
      const r = await runBuild(stepArgs('test', env, work, only), {
        timeoutMs: 15 * 60_000,
      });
      const localDir = join(work, 'images', 'nocloud', tiny.localDir.split('/').pop()!);
      const meta = parse(await readFile(join(localDir, `${tiny.imageName}.yaml`), 'utf8')) as Record<
        string,
        unknown
      >;
      const rec = meta.boot_test as Record<string, unknown>;
      if (r.code !== 0) console.error(r.stderr.slice(-8000));
      expect(rec.datasource).toBe('nocloud-vfat');
      const checks = rec.checks as Check[];
      for (const c of checks) expect(c.ok, `${c.name}: ${c.detail}`).toBe(true);
      expect(rec.status).toBe('passed');
      expect(r.code).toBe(0);
    });
  },
);

/** pids of QEMU processes whose command line names this work directory */
async function qemuOf(work: string): Promise<number[]> {
  const out: number[] = [];
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    const cmd = await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
    if (cmd.startsWith('qemu-system') || cmd.includes('/qemu-system')) {
      if (cmd.includes(work)) out.push(Number(p));
    }
  }
  return out;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
