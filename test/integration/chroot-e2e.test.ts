// The chroot builder end to end on real Alpine packages, through the real CLI: `./build local` for x86_64 BIOS
// and UEFI from the Alpine 3.19 mirror (ALPINE_MIRROR, default ../shared/alpine-mirror) plus the signed
// stand-in repository (kernel, mkinitfs, bootloaders from Debian's packages), each booted once under QEMU to a
// login prompt with tiny-cloud's phases running from a NoCloud seed. The images come from ensureTinyImage
// (built once per input hash, shared with other tests). Also: the build is reproducible, the minirootfs
// signature is enforced (forged, missing), a package signed by an unknown key is refused with apk's reason and
// its name, and a host without root and user namespaces gets the fallback line.
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BootResult, bootImage, bootUnavailable } from '../helpers/alpine-boot.js';
import {
  chrootUnavailable,
  ensureTinyImage,
  localArgs,
  prepareChrootEnv,
  type TinyImage,
} from '../helpers/alpine-image.js';
import { makeUntrustedRepo, REPO_ROOT, repoUnreachableByOthers } from '../helpers/alpine-standin.js';
import { runBuild } from '../helpers/cli.js';

const run = promisify(execFile);

const reasonBios = (await chrootUnavailable('x86_64', 'bios')) ?? bootUnavailable('x86_64', 'bios');
const reasonUefi = (await chrootUnavailable('x86_64', 'uefi')) ?? bootUnavailable('x86_64', 'uefi');
if (reasonBios) console.warn(`skipping the chroot builder's BIOS tests: ${reasonBios}`);
if (reasonUefi) console.warn(`skipping the chroot builder's UEFI tests: ${reasonUefi}`);

let base: string;
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'chroot-e2e-'));
});
afterAll(async () => {
  if (base) await rm(base, { recursive: true, force: true });
});

/** A file of the image's root file system (debugfs on a raw copy; the partition at its offset). */
async function imageFile(img: TinyImage, path: string): Promise<string> {
  const raw = join(base, `${img.firmware}.raw`);
  await run('qemu-img', ['convert', '-O', 'raw', img.image, raw]);
  const offset = img.firmware === 'bios' ? 2048 * 512 : 18432 * 512;
  try {
    const r = await run('debugfs', ['-R', `cat ${path}`, `${raw}?offset=${offset}`], { maxBuffer: 16 << 20 });
    return r.stdout;
  } finally {
    await rm(raw, { force: true });
  }
}

async function imageLs(img: TinyImage, dir: string): Promise<string> {
  const raw = join(base, `${img.firmware}-ls.raw`);
  await run('qemu-img', ['convert', '-O', 'raw', img.image, raw]);
  const offset = img.firmware === 'bios' ? 2048 * 512 : 18432 * 512;
  try {
    return (await run('debugfs', ['-R', `ls -l ${dir}`, `${raw}?offset=${offset}`])).stdout;
  } finally {
    await rm(raw, { force: true });
  }
}

function expectBooted(r: BootResult, host: string): void {
  if (!r.ok) console.error(r.console.slice(-4000));
  expect(r.ok).toBe(true);
  // the real userland: OpenRC and tiny-cloud's phases from the NoCloud seed
  expect(r.console).toContain('OpenRC 0.52.1 is starting up');
  for (const phase of ['boot', 'early', 'main', 'final'])
    expect(r.console).toContain(`Tiny Cloud - ${phase} phase`);
  expect(r.console).toContain('USERDATA-RAN');
  expect(r.console).toMatch(new RegExp(`${host} login:`));
}

const USER_DATA = '#!/bin/sh\necho USERDATA-RAN > /dev/console\n';

describe.skipIf(reasonBios)('chroot builder: x86_64 BIOS from the Alpine mirror', () => {
  let img: TinyImage;
  beforeAll(async () => {
    img = await ensureTinyImage('bios');
  }, 15 * 60_000);

  it('chose the chroot builder, verified the minirootfs, and built without a VM', () => {
    expect(img.stderr).toMatch(
      /builder for x86_64 BIOS \(extlinux\): chroot \(the host can run it: running as root\)/,
    );
    expect(img.stderr).toMatch(
      /verified alpine-minirootfs-3\.19\.4-x86_64\.tar\.gz: checksum and signature good/,
    );
    expect(img.stderr).toMatch(/local: 1 built, 0 failed/);
    expect(img.stderr).not.toMatch(/Packer \d/);
  });

  it('lists the repositories as configured (never the build mirror), has no apk cache, host keys or machine id', async () => {
    expect((await imageFile(img, '/etc/apk/repositories')).trim().split('\n')).toEqual([
      'https://dl-cdn.alpinelinux.org/alpine/v3.19/main',
      'https://dl-cdn.alpinelinux.org/alpine/v3.19/cib-standin',
    ]);
    expect(await imageLs(img, '/etc/apk/keys')).toContain('cib-test-standin.rsa.pub');
    expect(await imageLs(img, '/etc/ssh')).not.toMatch(/ssh_host_/);
    expect(await imageLs(img, '/etc')).not.toMatch(/machine-id/);
    expect(
      (await imageLs(img, '/var/cache/apk')).split('\n').filter((l) => /\.apk|APKINDEX/.test(l)),
    ).toEqual([]);
    const fstab = await imageFile(img, '/etc/fstab');
    expect(fstab).toMatch(/^LABEL=\/\t\/\text4/m);
    const ext = await imageFile(img, '/boot/extlinux.conf');
    expect(ext).toMatch(/APPEND root=LABEL=\/ modules=sd-mod,usb-storage,ext4 .*console=ttyS0/);
  });

  it(
    'is reproducible: a second build from the same inputs is the same bytes',
    async () => {
      const env = await prepareChrootEnv(join(base, 'again'));
      const work = join(base, 'again', 'work');
      const r = await runBuild(localArgs(env, work, ['3.19', 'x86_64', 'bios', 'tiny', 'vm', 'nocloud']), {
        timeoutMs: 10 * 60_000,
      });
      expect(r.code, r.stderr.slice(-2000)).toBe(0);
      const again = join(
        work,
        'images',
        'nocloud',
        '3.19.4-x86_64-bios-tiny-vm-nocloud',
        `${img.imageName}.qcow2`,
      );
      const sum = async (f: string) => (await run('sha256sum', [f])).stdout.split(' ')[0];
      expect(await sum(again)).toBe(await sum(img.image));
    },
    10 * 60_000,
  );

  it('boots to a login prompt under QEMU (SeaBIOS, extlinux), tiny-cloud phases run', async () => {
    const r = await bootImage(img.image, {
      workDir: base,
      hostname: 'chroot-bios',
      userData: USER_DATA,
      timeoutMs: 420_000,
    });
    expectBooted(r, 'chroot-bios');
    console.log(`x86_64 BIOS chroot image: login prompt after ${Math.round(r.ms / 1000)} s`);
  }, 450_000);
});

describe.skipIf(reasonUefi)('chroot builder: x86_64 UEFI from the Alpine mirror', () => {
  let img: TinyImage;
  beforeAll(async () => {
    img = await ensureTinyImage('uefi');
  }, 15 * 60_000);

  it('made a GPT disk with the ESP and GRUB from the target', async () => {
    expect(img.stderr).toMatch(/builder for x86_64 UEFI \(grub-efi\): chroot/);
    const raw = join(base, 'uefi-gpt.raw');
    await run('qemu-img', ['convert', '-O', 'raw', img.image, raw]);
    const pt = (await run('sfdisk', ['--dump', raw])).stdout;
    await rm(raw, { force: true });
    expect(pt).toMatch(/label: gpt/);
    expect(pt).toMatch(/start=\s*2048, size=\s*16384, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B.*name="EFI"/);
    expect(pt).toMatch(/start=\s*18432,.*type=0FC63DAF-8483-4772-8E79-3D69D8477DE4.*name="root"/);
    expect(await imageFile(img, '/boot/grub/grub.cfg')).toMatch(/linux \/boot\/vmlinuz-virt root=LABEL=\//);
  });

  it('boots to a login prompt under QEMU (q35, OVMF, GRUB), tiny-cloud phases run', async () => {
    const r = await bootImage(img.image, {
      workDir: base,
      firmware: 'uefi',
      hostname: 'chroot-uefi',
      userData: USER_DATA,
      timeoutMs: 420_000,
    });
    expectBooted(r, 'chroot-uefi');
    console.log(`x86_64 UEFI chroot image: login prompt after ${Math.round(r.ms / 1000)} s`);
  }, 450_000);
});

describe.skipIf(reasonBios)('chroot builder: what it refuses', () => {
  const only = ['3.19', 'x86_64', 'bios', 'tiny', 'vm', 'nocloud'];

  it('a forged minirootfs signature, naming the file', async () => {
    const env = await prepareChrootEnv(join(base, 'forged'), { signature: 'forged' });
    const r = await runBuild(localArgs(env, join(base, 'forged', 'work'), only));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(
      /signature check failed for file:\/\/\S+\/alpine-minirootfs-3\.19\.4-x86_64\.tar\.gz\.asc/,
    );
  }, 120_000);

  it('a missing minirootfs signature, naming the file', async () => {
    const env = await prepareChrootEnv(join(base, 'unsigned'), { signature: 'none' });
    const r = await runBuild(localArgs(env, join(base, 'unsigned', 'work'), only));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(
      /missing signature file:\/\/\S+\/alpine-minirootfs-3\.19\.4-x86_64\.tar\.gz\.asc for alpine-minirootfs-3\.19\.4-x86_64\.tar\.gz: refusing to use an unsigned minirootfs/,
    );
  }, 120_000);

  it("a package signed by an unknown key, with apk's reason and the package name", async () => {
    const env = await prepareChrootEnv(join(base, 'untrusted'));
    await makeUntrustedRepo(join(base, 'untrusted', 'repo'), 'x86_64');
    await symlink(join(base, 'untrusted', 'repo'), join(base, 'untrusted', 'cdn', 'v3.19', 'cib-untrusted'));
    const cfg = join(env.overlay, 'configs', 'version', '3.19.yaml');
    const text = await readFile(cfg, 'utf8');
    await writeFile(
      cfg,
      `${text.replace(
        '"https://dl-cdn.alpinelinux.org/alpine/v{version}/cib-standin": true',
        '"https://dl-cdn.alpinelinux.org/alpine/v{version}/cib-standin": true\n  "https://dl-cdn.alpinelinux.org/alpine/v{version}/cib-untrusted": true',
      )}packages:\n  cib-untrusted: true\n`,
    );
    const r = await runBuild(localArgs(env, join(base, 'untrusted', 'work'), only), { timeoutMs: 300_000 });
    if (!/UNTRUSTED/.test(r.stderr)) console.error(r.stderr.slice(-3000));
    expect(r.code).not.toBe(0);
    // apk names the repository as the builder sees it (/media/cib-repo-<n>, listed in build.log)
    expect(r.stderr).toMatch(/WARNING: [^|]*cib-repo-\d+: UNTRUSTED signature/);
    expect(r.stderr).toMatch(/cib-untrusted \(no such package\)/);
  }, 320_000);

  const farFromNobody = repoUnreachableByOthers();
  if (farFromNobody) console.warn(`skipping the no-root fallback test: ${farFromNobody}`);
  it.skipIf(farFromNobody)(
    'no root and no user namespaces: the fallback line says why',
    async () => {
      const env = await prepareChrootEnv(join(base, 'nouserns'));
      await runBuild(['--help']); // compiled before nobody runs it
      await chmod(base, 0o755);
      const work = join(base, 'nouserns', 'work');
      await run('install', ['-d', '-m', '0777', work]);
      const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
        execFile(
          join(REPO_ROOT, 'test', 'fixtures', 'chroot', 'no-userns'),
          ['env', `HOME=${work}`, join(REPO_ROOT, 'build'), ...localArgs(env, work, only)],
          { cwd: REPO_ROOT, timeout: 120_000, maxBuffer: 16 << 20 },
          (err, _out, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stderr: String(stderr) }),
        );
      });
      expect(r.stderr).toMatch(
        /builder for x86_64 BIOS \(extlinux\): vm \(not root and unprivileged user namespaces are unavailable \(unshare: unshare failed: No space left on device\)\)/,
      );
    },
    150_000,
  );
});

const reasonArm = (await chrootUnavailable('aarch64', 'uefi')) ?? bootUnavailable('aarch64', 'uefi');
if (reasonArm) console.warn(`skipping the chroot builder's aarch64 test: ${reasonArm}`);

describe.skipIf(reasonArm)(
  'chroot builder: aarch64 from the real aarch64 minirootfs through qemu-user',
  () => {
    let img: TinyImage;
    beforeAll(async () => {
      img = await ensureTinyImage('uefi', 'aarch64');
    }, 20 * 60_000);

    it('runs the aarch64 builder through the qemu-user binfmt handler', () => {
      expect(img.stderr).toMatch(
        /builder for aarch64 UEFI \(grub-efi\): chroot \(the host can run it: running as root, aarch64 programs through qemu-user \(binfmt qemu-aarch64\)\)/,
      );
      expect(img.stderr).toMatch(
        /verified alpine-minirootfs-3\.19\.4-aarch64\.tar\.gz: checksum and signature good/,
      );
    });

    it('boots under qemu-system-aarch64 (virt, cortex-a57, AAVMF, GRUB) to a login prompt', async () => {
      const r = await bootImage(img.image, { workDir: base, arch: 'aarch64', timeoutMs: 300_000 });
      if (!r.ok) console.error(r.console.slice(-4000));
      expect(r.ok).toBe(true);
      expect(r.console).toMatch(/Kernel \S+-arm64 on an aarch64 \(\/dev\/ttyAMA0\)/);
      console.log(`aarch64 UEFI chroot image: login prompt after ${Math.round(r.ms / 1000)} s`);
    }, 320_000);
  },
);
