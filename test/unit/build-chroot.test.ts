// The chroot builder's pure parts: which builder a host gets (and the exact reasons), the repositories as the
// build reaches them, the disk layout and its derived identifiers.
import { describe, expect, it } from 'vitest';
import { chrootDecision, type HostFacts, parseBinfmt } from '../../src/local/chroot/host.js';
import {
  buildRepos,
  derivedUuid,
  diskEnv,
  diskPlan,
  edgeMinirootfs,
  envFile,
  minirootfsUrl,
  substituteCdn,
} from '../../src/local/chroot/plan.js';

const root: HostFacts = {
  uid: 0,
  hostArch: 'x86_64',
  userns: { ok: true },
  binfmtMounted: true,
  binfmt: {
    aarch64: {
      registered: true,
      enabled: true,
      interpreter: '/usr/libexec/qemu-binfmt/aarch64-binfmt-P',
      flags: 'PF',
    },
  },
  missing: [],
};

describe('builder choice', () => {
  const x86 = { arch: 'x86_64', bootloader: 'extlinux' };
  const arm = { arch: 'aarch64', bootloader: 'grub-efi' };

  it('is chroot as root, with the reason', () => {
    expect(chrootDecision(x86, root)).toEqual({
      builder: 'chroot',
      mode: 'root',
      reason: 'the host can run it: running as root',
    });
    expect(chrootDecision({ ...arm, setting: 'chroot' }, root).reason).toBe(
      'builder: chroot is set: running as root, aarch64 programs through qemu-user (binfmt qemu-aarch64)',
    );
  });

  it('is vm when set, whatever the host', () => {
    expect(chrootDecision({ ...x86, setting: 'vm' }, root)).toEqual({
      builder: 'vm',
      reason: 'builder: vm is set',
    });
  });

  it('uses unprivileged user namespaces when not root (UEFI only: extlinux needs a loop mount)', () => {
    const user = { ...root, uid: 1000 };
    expect(chrootDecision(arm, user)).toMatchObject({ builder: 'chroot', mode: 'userns' });
    expect(chrootDecision(x86, user)).toEqual({
      builder: 'vm',
      reason: 'extlinux (BIOS) installs into a loop-mounted file system, which needs root',
    });
  });

  it('needs subordinate ids when not root (files owned by other users), else vm with the reason', () => {
    const user = { ...root, uid: 1000, subids: { ok: true } };
    expect(chrootDecision({ arch: 'x86_64', bootloader: 'grub-efi' }, user)).toMatchObject({
      builder: 'chroot',
      mode: 'userns',
      reason: 'the host can run it: unprivileged user namespaces',
    });
    const rootOnly = {
      ...user,
      subids: { ok: false, detail: 'unshare: failed to execute newuidmap: No such file or directory' },
    };
    expect(chrootDecision({ arch: 'x86_64', bootloader: 'grub-efi' }, rootOnly)).toEqual({
      builder: 'vm',
      reason:
        "not root, and the user namespace can map only root (unshare: failed to execute newuidmap: No such file or directory): files owned by other users (e.g. /etc/shadow, group shadow) need subordinate ids (newuidmap from Debian's uidmap, and a range for the user in /etc/subuid and /etc/subgid)",
    });
  });

  it('falls back to vm with one line saying why: no root and no user namespaces', () => {
    const none = {
      ...root,
      uid: 1000,
      userns: { ok: false, detail: 'unshare: unshare failed: Operation not permitted' },
    };
    expect(chrootDecision(arm, none)).toEqual({
      builder: 'vm',
      reason:
        'not root and unprivileged user namespaces are unavailable (unshare: unshare failed: Operation not permitted)',
    });
    // asked for chroot: an error, not a silent fallback
    expect(chrootDecision({ ...arm, setting: 'chroot' }, none).error).toBe(
      'builder: chroot is set, but not root and unprivileged user namespaces are unavailable (unshare: unshare failed: Operation not permitted)',
    );
  });

  it('says exactly what is missing for a foreign arch (binfmt)', () => {
    expect(chrootDecision(arm, { ...root, binfmtMounted: false }).reason).toBe(
      'aarch64 on a x86_64 host needs a qemu-user binfmt handler, and /proc/sys/fs/binfmt_misc is not mounted (mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-aarch64)',
    );
    expect(
      chrootDecision(arm, { ...root, binfmt: { aarch64: { registered: false, enabled: false } } }).reason,
    ).toBe(
      'aarch64 on a x86_64 host needs a qemu-user binfmt handler: /proc/sys/fs/binfmt_misc/qemu-aarch64 is not registered (Debian: apt-get install qemu-user-static binfmt-support; update-binfmts --enable qemu-aarch64)',
    );
    expect(
      chrootDecision(arm, { ...root, binfmt: { aarch64: { registered: true, enabled: false, flags: 'PF' } } })
        .reason,
    ).toBe(
      'aarch64 on a x86_64 host needs a qemu-user binfmt handler: /proc/sys/fs/binfmt_misc/qemu-aarch64 is disabled (update-binfmts --enable qemu-aarch64)',
    );
    expect(
      chrootDecision(arm, {
        ...root,
        binfmt: {
          aarch64: { registered: true, enabled: true, interpreter: '/usr/bin/qemu-aarch64', flags: 'P' },
        },
      }).reason,
    ).toMatch(/lacks the F \(fix-binary\) flag/);
  });

  it('names missing host commands for the layout', () => {
    expect(chrootDecision(arm, { ...root, missing: ['mcopy', 'tune2fs'] }).reason).toBe(
      'missing host commands: mcopy (Debian: e2fsprogs fdisk qemu-utils dosfstools mtools grub-common)',
    );
    expect(chrootDecision(x86, { ...root, missing: ['mcopy'] }).builder).toBe('chroot');
  });

  it('reads binfmt_misc handler files', () => {
    expect(
      parseBinfmt('enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\n'),
    ).toEqual({
      registered: true,
      enabled: true,
      interpreter: '/usr/libexec/qemu-binfmt/aarch64-binfmt-P',
      flags: 'PF',
    });
    expect(parseBinfmt('disabled\ninterpreter /x\nflags: \n').enabled).toBe(false);
    expect(parseBinfmt(undefined).registered).toBe(false);
  });
});

describe('repositories as the build reaches them', () => {
  const repos = [
    { url: 'https://dl-cdn.alpinelinux.org/alpine/v3.19/main', enabled: true, tag: null },
    { url: 'https://dl-cdn.alpinelinux.org/alpine/v3.19/community', enabled: true, tag: null },
    { url: 'https://dl-cdn.alpinelinux.org/alpine/v3.19/testing', enabled: false, tag: null },
    { url: 'https://example.org/repo', enabled: true, tag: 'extra' },
  ];

  it('moves the CDN to --cdn-url (https mirror)', () => {
    const r = buildRepos(repos, 'https://mirror.example/alpine/', () => undefined);
    expect(r.lines.split('\n')).toEqual([
      'https://mirror.example/alpine/v3.19/main',
      'https://mirror.example/alpine/v3.19/community',
      '#https://dl-cdn.alpinelinux.org/alpine/v3.19/testing',
      '@extra https://example.org/repo',
    ]);
    expect(r.binds).toEqual([]);
  });

  it('mounts file:// mirrors into the builder and leaves out what does not exist', () => {
    const real = (d: string) => (d.endsWith('/main') ? `/real${d}` : undefined);
    const r = buildRepos(repos, 'file:///m', real);
    expect(r.lines.split('\n')).toEqual([
      '/media/cib-repo-1',
      '#https://dl-cdn.alpinelinux.org/alpine/v3.19/testing',
      '@extra https://example.org/repo',
    ]);
    expect(r.binds).toEqual([{ host: '/real/m/v3.19/main', inside: '/media/cib-repo-1' }]);
    expect(r.skipped).toEqual(['file:///m/v3.19/community']);
  });

  it('substitutes only the CDN prefix', () => {
    expect(substituteCdn('https://dl-cdn.alpinelinux.org/alpine/keys/x.rsa.pub', 'file:///c')).toBe(
      'file:///c/keys/x.rsa.pub',
    );
    expect(substituteCdn('https://dl-cdn.alpinelinux.org/alpinex', 'file:///c')).toBe(
      'https://dl-cdn.alpinelinux.org/alpinex',
    );
  });
});

describe('minirootfs', () => {
  it('is named as Alpine names it; edge takes the newest of latest-releases.yaml', () => {
    expect(minirootfsUrl('https://cdn/alpine/', 'v3.19', '3.19.4', 'aarch64')).toBe(
      'https://cdn/alpine/v3.19/releases/aarch64/alpine-minirootfs-3.19.4-aarch64.tar.gz',
    );
    expect(
      edgeMinirootfs([
        { flavor: 'alpine-virt', file: 'alpine-virt-20261101-x86_64.iso' },
        { flavor: 'alpine-minirootfs', file: 'alpine-minirootfs-20261101-x86_64.tar.gz' },
        { flavor: 'alpine-minirootfs', file: 'alpine-minirootfs-20261120-x86_64.tar.gz' },
      ]),
    ).toBe('alpine-minirootfs-20261120-x86_64.tar.gz');
    expect(edgeMinirootfs({})).toBeUndefined();
  });
});

describe('disk plan', () => {
  it('BIOS: MBR, one partition from 1 MiB in whole 4 KiB blocks', () => {
    const p = diskPlan({
      imageKey: 'k',
      configKey: 'c',
      arch: 'x86_64',
      bootloader: 'extlinux',
      diskMiB: 128,
    });
    expect(p).toMatchObject({ layout: 'bios', diskSectors: 262144, rootStart: 2048, rootSectors: 260096 });
    expect(p.diskId).toMatch(/^[0-9a-f]{8}$/);
    expect(diskEnv(p)).toMatchObject({ LAYOUT: 'bios', ROOT_START: '2048', DISK_ID: p.diskId });
  });

  it('UEFI: GPT, an 8 MiB ESP, the root partition up to the backup GPT', () => {
    const p = diskPlan({
      imageKey: 'k',
      configKey: 'c',
      arch: 'aarch64',
      bootloader: 'grub-efi',
      diskMiB: 176,
    });
    expect(p).toMatchObject({ layout: 'uefi', espStart: 2048, espSectors: 16384, rootStart: 18432 });
    expect(p.rootStart + p.rootSectors).toBeLessThanOrEqual(p.diskSectors - 33);
    expect(p.rootSectors % 8).toBe(0);
    expect(p).toMatchObject({
      grubTarget: 'arm64-efi',
      efiName: 'grubaa64.efi',
      efiFallback: 'bootaa64.efi',
    });
    expect(diskEnv(p).FAT_ID).toMatch(/^[0-9a-f]{8}$/);
  });

  it('derives every identifier from the image key: stable, and different per image and purpose', () => {
    const a = derivedUuid('3.19.4-x86_64-bios-tiny-vm-nocloud', 'root-fs');
    expect(a).toBe(derivedUuid('3.19.4-x86_64-bios-tiny-vm-nocloud', 'root-fs'));
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(a).not.toBe(derivedUuid('3.19.4-x86_64-uefi-tiny-vm-nocloud', 'root-fs'));
    expect(a).not.toBe(derivedUuid('3.19.4-x86_64-bios-tiny-vm-nocloud', 'root-fs-hash-seed'));
  });

  it('refuses what it cannot make', () => {
    expect(() =>
      diskPlan({ imageKey: 'k', configKey: 'c', arch: 'aarch64', bootloader: 'extlinux', diskMiB: 128 }),
    ).toThrow(/extlinux \(BIOS\) boots x86_64 only/);
    expect(() =>
      diskPlan({ imageKey: 'k', configKey: 'c', arch: 'x86_64', bootloader: 'lilo', diskMiB: 128 }),
    ).toThrow(/not bootloader lilo/);
  });
});

describe('environment file', () => {
  it('quotes values with newlines and quotes', () => {
    expect(envFile(["MOTD=it's\nfine", 'A='])).toBe("export MOTD='it'\"'\"'s\nfine'\nexport A=''\n");
  });
});
