// End to end, offline: `./build local` with the test overlay runs the real Packer and qemu-system-x86_64 (TCG)
// against a signed stand-in builder ISO on a file:// mirror, boots the builder's kernel directly with the
// apkovl (no typed keys), installs onto the blank disk (BIOS and UEFI variants in parallel), converts to a
// fixed VHD, compresses with zstd and checksums; then each result is booted under QEMU until the login prompt
// shows on the serial console.
//
// The same for an aarch64 UEFI variant (qemu-system-aarch64, virt machine, cortex-a57, AAVMF, TCG), after the
// x86_64 builds (one file: the two never compete for the machine's cores).
//
// The stand-in builders (small Debian systems, test/fixtures/local/make-builder.sh) are built once and cached
// in .tmp/test-cache (or $CIB_TEST_CACHE); the arm64 one is made under qemu-user (binfmt), a few minutes.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  bootUntil,
  e2eUnavailable,
  ensureBuilderIso,
  HOST_UEFI,
  makeTestKey,
  overlayWithKey,
  publishIso,
  REPO_ROOT,
  sha,
} from '../fixtures/local/mirror.js';
import { runBuild } from '../helpers/cli.js';

const reason = await e2eUnavailable();
if (reason) console.warn(`skipping the local-build end-to-end test: ${reason}`);
const reasonArm = await e2eUnavailable('aarch64');
if (reasonArm) console.warn(`skipping the aarch64 local-build end-to-end test: ${reasonArm}`);

const RELEASES = `file://${join(REPO_ROOT, 'test', 'fixtures', 'releases.json')}`;
const VARIANTS = {
  bios: '3.24-x86_64-bios-testinit-vm-generic',
  uefi: '3.24-x86_64-uefi-testinit-vm-generic',
};

/** `./build local` with the test overlay against the file:// mirror, for the variants with all `only` keys */
function localArgs(o: {
  overlay: string;
  work: string;
  cdnUrl: string;
  vars?: boolean;
  only: string[];
}): string[] {
  return [
    'local',
    '--custom',
    o.overlay,
    '--work-dir',
    o.work,
    '--releases-url',
    RELEASES,
    '--cdn-url',
    o.cdnUrl,
    ...(o.vars === false ? [] : ['--vars', join(o.overlay, 'test-local.pkrvars.hcl')]),
    '--only',
    ...o.only,
    '--no-color',
  ];
}

/** work/images/generic/<image_key> of a 3.24 config key */
function localDirOf(work: string, key: string): string {
  return join(work, 'images', 'generic', key.replace(/^3\.24-/, '3.24.1-'));
}

describe.skipIf(reason)('build local, end to end with Packer and QEMU', () => {
  let base: string;
  let work: string;
  let overlay: string;
  let cdnUrl: string;
  let result: Awaited<ReturnType<typeof runBuild>>;

  beforeAll(async () => {
    const iso = await ensureBuilderIso();
    base = await mkdtemp(join(tmpdir(), 'local-e2e-'));
    work = join(base, 'work');
    const key = await makeTestKey();
    ({ cdnUrl } = await publishIso(join(base, 'cdn'), iso, {
      version: '3.24',
      release: '3.24.1',
      arch: 'x86_64',
      key,
    }));
    overlay = await overlayWithKey(join(base, 'overlay'), key);
    result = await runBuild(
      [
        ...localArgs({ overlay, work, cdnUrl, only: ['3.24', 'x86_64', 'testinit', 'vm', 'generic'] }),
        '--parallel',
        '2',
      ],
      { timeoutMs: 12 * 60_000 },
    );
  }, 20 * 60_000);

  afterAll(async () => {
    if (base) await rm(base, { recursive: true, force: true });
  });

  function localDir(key: string): string {
    return localDirOf(work, key);
  }

  it('builds both variants', () => {
    if (result.code !== 0) console.error(result.stderr.slice(-4000));
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/local: 2 built, 0 failed/);
  });

  it('says which accelerator it uses and why (TCG here: /dev/kvm cannot run a normal guest)', () => {
    expect(result.stderr).toMatch(/accelerator for x86_64 builds: (TCG|KVM) \(/);
    if (!existsSync('/dev/kvm')) expect(result.stderr).toMatch(/TCG \(\/dev\/kvm is missing/);
  });

  it('verified the builder ISO against the trusted key before using it', () => {
    expect(result.stderr).toMatch(/verified alpine-virt-3\.24\.1-x86_64\.iso: checksum and signature good/);
  });

  it('shows per-variant progress with state and elapsed time', () => {
    for (const k of Object.values(VARIANTS)) {
      for (const state of [
        'iso',
        'booting',
        'waiting for ssh',
        'provisioning (test-setup)',
        'converting (vhd)',
        'compressing (zstd)',
        'done',
      ]) {
        expect(result.stderr).toContain(`${k}: ${state}`);
      }
    }
    // the elapsed time once (under a minute it is just seconds: the direct-boot build is fast)
    expect(result.stderr).toMatch(/: done \[(?:\d+m\d\d|\d+)s\]$/m);
  });

  it('writes the converted image, the compressed upload file, its sha512 and the full log', async () => {
    for (const [fw, key] of Object.entries(VARIANTS)) {
      const dir = localDir(key);
      const name = `generic_alpine-3.24.1-x86_64-${fw}-testinit-r0`;
      const files = await readdir(dir);
      expect(files).toEqual(
        expect.arrayContaining([
          'image.qcow2',
          `${name}.vhd`,
          `${name}.vhd.zstd`,
          `${name}.vhd.zstd.sha512`,
          'build.log',
          'serial.log',
          `${name}.yaml`,
        ]),
      );
      expect(files).not.toContain('.packer-out');
      // fixed VHD of the configured disk size (448 MiB, +16 for UEFI) plus the footer
      const size = (fw === 'uefi' ? 464 : 448) * 1024 * 1024;
      expect((await stat(join(dir, `${name}.vhd`))).size).toBe(size + 512);
      const sum = await readFile(join(dir, `${name}.vhd.zstd.sha512`), 'utf8');
      expect(sum).toBe(`${await sha(join(dir, `${name}.vhd.zstd`), 'sha512')}  ${name}.vhd.zstd\n`);
      // the pipeline recorded the build
      const meta = parse(await readFile(join(dir, `${name}.yaml`), 'utf8')) as Record<string, unknown>;
      expect(typeof meta.built).toBe('string');
      // the log has Packer's debug output (the QEMU command line) and no typed keys
      const log = await readFile(join(dir, 'build.log'), 'utf8');
      expect(log).toMatch(/Executing \/usr\/bin\/qemu-system-x86_64/);
      expect(log).toMatch(/accel=tcg|accel=kvm/);
      expect(log).toContain('Connected to SSH!');
      // direct kernel boot with the apkovl: no VNC, no typed keys; the one-time key is gone afterwards
      expect(log).toMatch(/"-kernel", "[^"]*\/iso\/alpine-virt-3\.24\.1-x86_64\.iso\.boot\/vmlinuz"/);
      expect(log).toMatch(/apkovl=http:\/\/10\.0\.2\.2:\d+\/builder\.apkovl\.tar\.gz/);
      expect(log).not.toMatch(/Typing the boot command|Sending char/);
      expect(log).not.toContain('PRIVATE KEY');
      const serial = await readFile(join(dir, 'serial.log'), 'latin1');
      expect(serial).toMatch(/initrd: apkovl http:\/\/10\.0\.2\.2:\d+\/builder\.apkovl\.tar\.gz unpacked/);
      expect(serial).toContain('builder: sshd: started');
      const keyFile = join(work, 'packer', key, 'builder-key');
      expect(existsSync(keyFile)).toBe(false);
    }
  });

  it('passed the variant settings to the setup scripts', () => {
    const dir = localDir(VARIANTS.bios);
    const vhd = join(dir, 'generic_alpine-3.24.1-x86_64-bios-testinit-r0.vhd');
    // BIOS images are ext4 on the whole disk: debugfs reads the file system straight from the fixed VHD
    const env = execFileSync('debugfs', ['-R', 'cat /etc/build-env', vhd], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    expect(env).toContain('BUILD_NAME=generic_alpine-3.24.1-x86_64-bios-testinit-r0');
    expect(env).toContain('FIRMWARE=bios');
    expect(env).toContain('BOOTLOADER=extlinux');
    expect(env).toContain('CLOUD=generic');
    expect(env).toContain('RELEASE=3.24.1');
    expect(env).toContain('IMAGE_LOGIN=alpine');
    expect(env).toMatch(/PACKAGES_ADD=.*alpine-base/);
    expect(env).toMatch(/SERVICES_ENABLE=.*default=.*sshd/);
    const motd = execFileSync('debugfs', ['-R', 'cat /etc/motd', vhd], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    expect(motd).toContain('Welcome to Alpine!');
    expect(motd).toContain('Built by the local-build end-to-end test.');
  });

  it('the BIOS image boots to a login prompt', async () => {
    const vhd = join(localDir(VARIANTS.bios), 'generic_alpine-3.24.1-x86_64-bios-testinit-r0.vhd');
    const r = await bootUntil(vhd, 'vpc', { workDir: base, timeoutMs: 180_000 });
    if (!r.ok) console.error(r.console.slice(-3000));
    expect(r.ok).toBe(true);
    expect(r.console).toMatch(/testvm login:/);
  }, 200_000);

  it('the UEFI image boots to a login prompt', async () => {
    const vhd = join(localDir(VARIANTS.uefi), 'generic_alpine-3.24.1-x86_64-uefi-testinit-r0.vhd');
    const r = await bootUntil(vhd, 'vpc', {
      workDir: base,
      uefi: '/usr/share/ovmf/OVMF.fd',
      timeoutMs: 180_000,
    });
    if (!r.ok) console.error(r.console.slice(-3000));
    expect(r.ok).toBe(true);
    expect(r.console).toMatch(/testvm login:/);
  }, 200_000);

  it('a second run has nothing left to build', async () => {
    const again = await runBuild(
      localArgs({
        overlay,
        work,
        cdnUrl,
        vars: false,
        only: ['3.24', 'x86_64', 'testinit', 'vm', 'generic'],
      }),
      { timeoutMs: 120_000 },
    );
    expect(again.code).toBe(0);
    expect(again.stderr).not.toMatch(/Packer 1\./);
  }, 150_000);
});

describe.skipIf(reasonArm)('build local, end to end with Packer and QEMU: aarch64 (UEFI)', () => {
  const key = '3.24-aarch64-uefi-testinit-vm-generic';
  const name = 'generic_alpine-3.24.1-aarch64-uefi-testinit-r0';
  let base: string;
  let dir: string;
  let result: Awaited<ReturnType<typeof runBuild>>;

  beforeAll(async () => {
    const iso = await ensureBuilderIso('aarch64');
    base = await mkdtemp(join(tmpdir(), 'local-e2e-arm-'));
    const work = join(base, 'work');
    dir = localDirOf(work, key);
    const releaseKey = await makeTestKey();
    const { cdnUrl } = await publishIso(join(base, 'cdn'), iso, {
      version: '3.24',
      release: '3.24.1',
      arch: 'aarch64',
      key: releaseKey,
    });
    const overlay = await overlayWithKey(join(base, 'overlay'), releaseKey);
    result = await runBuild(
      localArgs({ overlay, work, cdnUrl, only: ['3.24', 'aarch64', 'uefi', 'testinit', 'vm', 'generic'] }),
      { timeoutMs: 12 * 60_000 },
    );
  }, 30 * 60_000);

  afterAll(async () => {
    if (base) await rm(base, { recursive: true, force: true });
  });

  it('builds the variant with qemu-system-aarch64 (virt, cortex-a57, UEFI firmware) under TCG', async () => {
    if (result.code !== 0) console.error(result.stderr.slice(-4000));
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/local: 1 built, 0 failed/);
    expect(result.stderr).toMatch(/accelerator for aarch64 builds: TCG \(/);
    expect(result.stderr).toMatch(/verified alpine-virt-3\.24\.1-aarch64\.iso: checksum and signature good/);
    const log = await readFile(join(dir, 'build.log'), 'utf8');
    expect(log).toMatch(/Executing \/usr\/bin\/qemu-system-aarch64/);
    expect(log).toMatch(/type=virt,accel=tcg/);
    expect(log).toContain('cortex-a57');
    expect(log).toMatch(/"-bios", "[^"]*\/firmware\/uefi-aarch64\.bin"/);
    expect(log).toMatch(/"-kernel", "[^"]*\/iso\/alpine-virt-3\.24\.1-aarch64\.iso\.boot\/vmlinuz"/);
    expect(log).toMatch(/console=ttyAMA0,115200 ip=dhcp apkovl=http:\/\/10\.0\.2\.2:\d+\//);
    expect(log).not.toMatch(/Typing the boot command|Sending char/);
    expect(log).toContain('Connected to SSH!');
  });

  it('writes the converted image, the compressed upload file and its sha512', async () => {
    const files = await readdir(dir);
    expect(files).toEqual(
      expect.arrayContaining([`${name}.vhd`, `${name}.vhd.zstd`, `${name}.vhd.zstd.sha512`, `${name}.yaml`]),
    );
    // 448 MiB (test overlay) + 32 (aarch64) + 16 (UEFI), fixed VHD plus its footer
    expect((await stat(join(dir, `${name}.vhd`))).size).toBe(496 * 1024 * 1024 + 512);
    const sum = await readFile(join(dir, `${name}.vhd.zstd.sha512`), 'utf8');
    expect(sum).toBe(`${await sha(join(dir, `${name}.vhd.zstd`), 'sha512')}  ${name}.vhd.zstd\n`);
  });

  it('the aarch64 image boots to a login prompt', async () => {
    const r = await bootUntil(join(dir, `${name}.vhd`), 'vpc', {
      workDir: base,
      arch: 'aarch64',
      uefi: HOST_UEFI.aarch64,
      timeoutMs: 240_000,
    });
    if (!r.ok) console.error(r.console.slice(-3000));
    expect(r.ok).toBe(true);
    expect(r.console).toMatch(/testvm login:/);
  }, 260_000);
});
