// The boot test's pure parts: the instance data in each bootstrap's form, the NoCloud seed volume (real
// mkfs.vfat/mtools and xorriso), QEMU's command line, the checks' verdicts, and the gate of upload/import/publish.
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { type Expected, evaluate, parseRcStatus, sections } from '../../src/boottest/checks.js';
import { guestNetFor } from '../../src/boottest/metadata-server.js';
import {
  cpuFor,
  fatalConsoleLine,
  growthMiB,
  machineFor,
  optValue,
  qemuArgs,
  serialTail,
} from '../../src/boottest/qemu.js';
import { LOGIN_PROMPT } from '../../src/boottest/run.js';
import { instanceData, makeSeed, metaData, seedFiles } from '../../src/boottest/seed.js';
import { type BootTestRecord, formatChecks, needsTest, testGate } from '../../src/state/boot-test.js';

const base = {
  instanceId: 'i-boottest1',
  hostname: 'boot-test-1',
  sshPublicKey: 'ssh-ed25519 AAAA k',
  login: 'alpine',
};

describe('instance data', () => {
  it('tiny-cloud: meta-data has hostname and the public-keys map; user-data is a #! script', () => {
    const d = instanceData({ ...base, bootstrap: 'tiny' });
    const md = parse(metaData(d)) as Record<string, unknown>;
    expect(md['instance-id']).toBe('i-boottest1');
    // tiny-cloud 3.0.7 reads `hostname`, cloud-init `local-hostname`
    expect(md.hostname).toBe('boot-test-1');
    expect(md['local-hostname']).toBe('boot-test-1');
    // the AWS-style map (the list form does not work with tiny-cloud)
    expect(md['public-keys']).toEqual({ 'boot-test': { 'openssh-key': 'ssh-ed25519 AAAA k' } });
    expect(d.userData.startsWith('#!/bin/sh\n')).toBe(true);
    expect(d.userData).toContain(d.markerPath);
  });

  it('cloud-init: user-data is cloud-config with the key for the login user and a runcmd marker', () => {
    const d = instanceData({ ...base, bootstrap: 'cloudinit' });
    expect(d.userData.startsWith('#cloud-config\n')).toBe(true);
    const cc = parse(d.userData) as {
      users: { name: string; ssh_authorized_keys: string[] }[];
      runcmd: string[][];
    };
    expect(cc.users[0]!.name).toBe('alpine');
    expect(cc.users[0]!.ssh_authorized_keys).toEqual(['ssh-ed25519 AAAA k']);
    expect(cc.runcmd[0]!.join(' ')).toContain(d.markerPath);
  });
});

describe('NoCloud seed volume (no root)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'boottest-seed-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const files = seedFiles(instanceData({ ...base, bootstrap: 'tiny' }));

  it('vfat labelled CIDATA with meta-data and user-data (mkfs.vfat + mcopy)', async () => {
    const img = await makeSeed(join(dir, 'seed.img'), files, 'vfat');
    const label = execFileSync('/sbin/blkid', ['-o', 'value', '-s', 'LABEL', img], {
      encoding: 'utf8',
    }).trim();
    expect(label).toBe('CIDATA');
    const md = execFileSync('mtype', ['-i', img, '::/meta-data'], { encoding: 'utf8' });
    expect(md).toBe(files['meta-data']);
    expect(execFileSync('mtype', ['-i', img, '::/user-data'], { encoding: 'utf8' })).toBe(files['user-data']);
  });

  it('iso9660 labelled cidata (xorriso)', async () => {
    const img = await makeSeed(join(dir, 'seed.iso'), files, 'iso9660');
    const blk = execFileSync('/sbin/blkid', ['-o', 'export', img], { encoding: 'utf8' });
    expect(blk).toMatch(/LABEL=cidata/);
    expect(blk).toMatch(/TYPE=iso9660/);
    const out = join(dir, 'meta-data.extracted');
    execFileSync('xorriso', ['-osirrox', 'on', '-indev', img, '-extract', '/meta-data', out], {
      stdio: 'ignore',
    });
    expect(await readFile(out, 'utf8')).toBe(files['meta-data']);
  });
});

describe('QEMU command line', () => {
  const spec = {
    arch: 'x86_64',
    machine: 'pc',
    accelerator: 'tcg',
    memoryMiB: 512,
    cpus: 2,
    disk: '/w/boot-test/1-a/overlay.qcow2',
    seed: '/w/boot-test/1-a/seed.img',
    serialLog: '/w/images/x/img.boot.log',
    pidFile: '/w/boot-test/1-a/qemu.pid',
    sshPort: 40022,
  };

  it('BIOS: overlay and seed as virtio disks, serial to a file, SSH forwarded to 127.0.0.1 only', () => {
    const a = qemuArgs(spec).join(' ');
    expect(a).toContain('-machine pc,accel=tcg');
    expect(a).not.toContain('-bios');
    expect(a).toContain('file=/w/boot-test/1-a/overlay.qcow2,format=qcow2');
    expect(a).toMatch(/file=\/w\/boot-test\/1-a\/seed\.img,format=raw,[^ ]*readonly=on/);
    expect(a).toContain('-chardev file,id=serial0,path=/w/images/x/img.boot.log -serial chardev:serial0');
    expect(a).toContain('hostfwd=tcp:127.0.0.1:40022-:22');
    expect(a).toContain('-no-reboot');
  });

  it('UEFI aarch64: firmware, virt, cortex-a57; an IMDS forward moves the guest network to link-local', () => {
    const a = qemuArgs({
      ...spec,
      arch: 'aarch64',
      machine: machineFor('aarch64', null),
      cpu: cpuFor('aarch64', null, 'tcg'),
      firmware: '/w/firmware/uefi-aarch64.bin',
      seed: undefined,
      guestNet: guestNetFor('169.254.169.254'),
      guestFwd: { address: '169.254.169.254', port: 80, command: '/usr/bin/node /w/b.mjs 4000' },
    }).join(' ');
    expect(a).toContain('-machine virt,accel=tcg -cpu cortex-a57');
    expect(a).toContain('-bios /w/firmware/uefi-aarch64.bin');
    expect(a).not.toContain('seed');
    expect(a).toContain('net=169.254.169.0/24,host=169.254.169.2,dns=169.254.169.3,dhcpstart=169.254.169.15');
    expect(a).toContain('guestfwd=tcp:169.254.169.254:80-cmd:/usr/bin/node /w/b.mjs 4000');
  });

  it('takes -cpu and the machine from the variant; doubles commas in option values', () => {
    expect(
      cpuFor(
        'x86_64',
        [
          ['-cpu', 'max'],
          ['-boot', 'd'],
        ],
        'tcg',
      ),
    ).toBe('max');
    expect(cpuFor('x86_64', null, 'tcg')).toBeUndefined();
    expect(cpuFor('aarch64', null, 'kvm')).toBe('host');
    expect(machineFor('x86_64', 'q35')).toBe('q35');
    expect(machineFor('x86_64', null)).toBe('pc');
    expect(optValue('/a,b/c')).toBe('/a,,b/c');
  });

  it('grows the test disk by a quarter of the image, at least 64 MiB', () => {
    expect(growthMiB(128 * 2 ** 20)).toBe(64);
    expect(growthMiB(2 * 2 ** 30)).toBe(512);
  });
});

describe('console', () => {
  it('recognises a boot that cannot succeed', () => {
    expect(fatalConsoleLine('Decompressing Linux... \r\n\r\ncrc error\r\n\r\n -- System halted')).toBe(
      'crc error',
    );
    expect(fatalConsoleLine('[ 1.2] Kernel panic - not syncing: VFS: Unable to mount root fs\n')).toMatch(
      /^\[ 1\.2\] Kernel panic/,
    );
    expect(fatalConsoleLine('boot: \r\nLoading /boot/vmlinuz failed: I/O error\r\n')).toBe(
      'Loading /boot/vmlinuz failed: I/O error',
    );
    expect(fatalConsoleLine('Welcome to Alpine Linux\nlogin: ')).toBeUndefined();
  });

  it("recognises the getty's login prompt, also without a host name", () => {
    expect(LOGIN_PROMPT.test('\r\nboot-test-1a2b3c4d login: ')).toBe(true);
    expect(LOGIN_PROMPT.test('Kernel 6.1 on an aarch64 (/dev/ttyAMA0)\n\n(none) login: ')).toBe(true);
    expect(LOGIN_PROMPT.test('Welcome to Alpine Linux 3.19\n')).toBe(false);
  });

  it('keeps the last lines without control characters', () => {
    const t = serialTail('a\r\n\x1b[1mb\x1b[0m\r\n\r\nc\r\nd\r\n', 2);
    expect(t).toBe('c\nd');
  });
});

const exp: Expected = {
  hostname: 'boot-test-1',
  marker: 'user-data ran for i-boottest1',
  markerPath: '/var/tmp/boot-test-user-data',
  packagesAdd: ['alpine-base', 'openssh', 'grub-efi@edge'],
  packagesDel: ['sudo'],
  services: {
    sysinit: ['devfs'],
    boot: ['hostname', 'syslog'],
    default: ['sshd', 'networking'],
    shutdown: ['killprocs'],
  },
  kernelOptions: ['console=ttyS0,115200n8', 'quiet'],
  motd: 'Welcome to Alpine!\n\nYou may change this message.',
  grownMiB: 64,
};

const good = [
  '@@hostname',
  'boot-test-1',
  '@@marker',
  'user-data ran for i-boottest1',
  '@@cmdline',
  'BOOT_IMAGE=/boot/vmlinuz root=/dev/vda1 console=ttyS0,115200n8 quiet',
  '@@motd',
  'Welcome to Alpine!',
  '',
  'You may change this message.',
  '@@df',
  '/dev/vda1 285000 35000 250000 12% /',
  '@@disk',
  `${(320 * 2 ** 20) / 512} 2048 ${(319 * 2 ** 20) / 512}`,
  '@@meminfo',
  'MemTotal:         490000 kB',
  'MemAvailable:     455000 kB',
  '@@packages',
  'alpine-base\nopenssh\ngrub-efi\nbusybox',
  '@@runlevels',
  'default: sshd networking',
  '@@rcstatus',
  '[sysinit]\ndevfs = started\n[boot]\nhostname = started\nsyslog = started\n[default]\nsshd = started\nnetworking = started',
  '@@end',
].join('\n');

function byName(r: ReturnType<typeof evaluate>) {
  return Object.fromEntries(r.checks.map((c) => [c.name, c]));
}

describe('checks', () => {
  it('a good boot passes every check and reports its footprint', () => {
    const r = evaluate(sections(good), exp);
    expect(r.checks.filter((c) => !c.ok)).toEqual([]);
    expect(r.checks.map((c) => c.name)).toEqual([
      'hostname',
      'user-data',
      'rootfs-size',
      'packages',
      'services',
      'cmdline',
      'motd',
    ]);
    expect(r.footprint).toEqual({ memory_used_kib: 35000, rootfs_used_kib: 35000, rootfs_free_kib: 250000 });
  });

  it('names what is wrong', () => {
    const bad = good
      .replace('boot-test-1\n@@marker', 'alpine\n@@marker')
      .replace('user-data ran for i-boottest1', "cat: can't open")
      .replace('openssh\n', 'sudo\n')
      .replace('sshd = started', 'sshd = crashed')
      .replace(' quiet\n', '\n')
      .replace('/dev/vda1 285000', '/dev/vda1 180000')
      .replace('You may change this message.', '');
    const c = byName(evaluate(sections(bad), exp));
    expect(c.hostname!.detail).toBe('got "alpine", expected "boot-test-1" from the instance data');
    expect(c['user-data']!.ok).toBe(false);
    expect(c.packages!.detail).toBe('not installed: openssh; installed although removed: sudo');
    expect(c.services!.detail).toBe('not started or crashed: sshd (default) crashed');
    expect(c.cmdline!.detail).toMatch(/^missing from \/proc\/cmdline: quiet/);
    expect(c['rootfs-size']!.ok).toBe(false);
    expect(c['rootfs-size']!.detail).toMatch(/does not fill its partition/);
    expect(c.motd!.detail).toBe('/etc/motd lacks: You may change this message.');
  });

  it('a partition that was not grown to the disk fails rootfs-size', () => {
    const s = sections(
      good.replace(/^\d+ 2048 \d+$/m, `${(320 * 2 ** 20) / 512} 2048 ${(255 * 2 ** 20) / 512}`),
    );
    expect(byName(evaluate(s, exp))['rootfs-size']!.detail).toMatch(
      /partition ends 64 MiB before the disk's end/,
    );
  });

  it('images without OpenRC skip the services check', () => {
    const s = sections(good.replace(/@@rcstatus\n[\s\S]*@@end/, '@@rcstatus\nno OpenRC\n@@end'));
    const c = byName(evaluate(s, exp));
    expect(c.services).toEqual({
      name: 'services',
      ok: true,
      skipped: true,
      detail: 'no OpenRC in this image',
    });
  });

  it('reads both rc-status formats', () => {
    expect(parseRcStatus('[ default ]\nsshd =  started \nchronyd = crashed')).toEqual(
      new Map([
        ['sshd', 'started'],
        ['chronyd', 'crashed'],
      ]),
    );
    expect(parseRcStatus(' sshd                [  started  ]\n acpid   [  crashed  ]').get('acpid')).toBe(
      'crashed',
    );
  });

  it('prints one line per check', () => {
    expect(
      formatChecks([
        { name: 'ssh', ok: true, detail: 'after 36 s' },
        { name: 'services', ok: false, detail: 'sshd crashed' },
      ]),
    ).toBe('  ok    ssh       after 36 s\n  FAIL  services  sshd crashed');
  });
});

describe('the gate of upload, import and publish', () => {
  const built = '2026-11-29T10:00:00.000Z';
  const rec = (status: BootTestRecord['status'], b = built): BootTestRecord => ({
    status,
    at: built,
    built: b,
    error: 'check ssh failed: no answer',
  });

  it('lets through only a passed test of this very build', () => {
    expect(testGate(rec('passed'), built)).toBeUndefined();
    expect(testGate(undefined, built)).toMatch(/never boot-tested/);
    expect(testGate(rec('failed'), built)).toBe('its latest boot test failed: check ssh failed: no answer');
    expect(testGate(rec('skipped'), built)).toMatch(/skipped/);
    expect(testGate(rec('passed', '2026-01-01T00:00:00.000Z'), built)).toMatch(/rebuilt after/);
    expect(needsTest(rec('passed'), built)).toBe(false);
    expect(needsTest(rec('failed'), built)).toBe(true);
  });
});

describe('the boot_test field of the image state', () => {
  it('reads a record back from metadata and refuses a malformed one', async () => {
    const { readState } = await import('../../src/state/image-state.js');
    const ok = readState({
      boot_test: { status: 'passed', at: new Date('2026-11-29T10:00:00Z'), checks: [] },
    });
    expect('state' in ok && ok.state.boot_test?.at).toBe('2026-11-29T10:00:00.000Z');
    const bad = readState({ boot_test: { status: 'maybe', at: '2026-11-29T10:00:00Z' } });
    expect('problems' in bad && bad.problems.map((p) => p.field)).toEqual(['boot_test']);
    const none = readState({});
    expect('state' in none && none.state.boot_test).toBeNull();
  });
});
