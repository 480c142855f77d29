// The per-variant Packer input (variant.json) and the setup scripts' environment, from a resolved image config.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  acceleratorFromVarFiles,
  bootloaderOf,
  defaultCpus,
  diskSize,
  packerVariant,
  qemuArgs,
  scriptEnvironment,
} from '../../src/local/variant.js';
import { Image } from '../../src/state/image.js';
import { emptyState } from '../../src/state/image-state.js';
import { sampleConfig } from '../fixtures/local/sample.js';

describe('scriptEnvironment', () => {
  it('passes every setting the setup scripts read, by the original names', () => {
    const env = scriptEnvironment(new Image(sampleConfig(), '/w', emptyState(3)), false);
    const names = env.map((e) => e.slice(0, e.indexOf('=')));
    expect(names).toEqual([
      'DEBUG',
      'ARCH',
      'BOOTLOADER',
      'BOOTSTRAP',
      'BUILD_NAME',
      'BUILD_REVISION',
      'CLOUD',
      'END_OF_LIFE',
      'FIRMWARE',
      'IMAGE_LOGIN',
      'INITFS_FEATURES',
      'KERNEL_MODULES',
      'KERNEL_OPTIONS',
      'MOTD',
      'NTP_SERVER',
      'PACKAGES_ADD',
      'PACKAGES_DEL',
      'PACKAGES_NOSCRIPTS',
      'RELEASE',
      'REPOS',
      'REPO_KEYS',
      'SERVICES_ENABLE',
      'SERVICES_DISABLE',
      'VERSION',
    ]);
    expect(env).toContain('DEBUG=0');
    expect(env).toContain('BUILD_NAME=aws_alpine-3.24.1-x86_64-uefi-tiny-r3');
    expect(env).toContain('BUILD_REVISION=3');
    expect(env).toContain('BOOTLOADER=grub-efi');
    expect(env).toContain('NTP_SERVER=169.254.169.123');
    expect(env).toContain("MOTD=Welcome to Alpine!\n\nIt's a test.");
    expect(env).toContain('SERVICES_ENABLE=default=sshd,chronyd boot=hostname');
    expect(scriptEnvironment(new Image(sampleConfig(), '/w'), true)).toContain('DEBUG=1');
  });

  it('adds BOOTLOADER_TIMEOUT when configured, and empty strings for unset values', () => {
    const env = scriptEnvironment(
      new Image(sampleConfig({ bootloader_timeout: 2, ntp_server: null }), '/w'),
      false,
    );
    expect(env).toContain('BOOTLOADER_TIMEOUT=2');
    expect(env).toContain('NTP_SERVER=');
  });

  it('gives the typed lists to the scripts in the joined forms of the original (as images.yaml shows them)', () => {
    const img = new Image(
      sampleConfig({
        repos: [
          { url: 'https://r.example/main', enabled: true, tag: null },
          { url: 'https://r.example/testing', enabled: false, tag: null },
          { url: 'https://r.example/edge', enabled: true, tag: 'edge' },
        ],
        repo_keys: ['https://r.example/a.rsa.pub', '/keys/b.rsa.pub'],
        packages: { add: ['alpine-base', 'grub@edge'], del: ['sudo', 'doas'], noscripts: [] },
        services: { enable: { boot: ['a', 'b'] }, disable: { default: ['c'], shutdown: ['d', 'e'] } },
      }),
      '/w',
    );
    const env = scriptEnvironment(img, false);
    expect(env).toEqual(
      expect.arrayContaining([
        'REPOS=https://r.example/main\n#https://r.example/testing\n@edge https://r.example/edge',
        'REPO_KEYS=https://r.example/a.rsa.pub /keys/b.rsa.pub',
        'PACKAGES_ADD=alpine-base grub@edge',
        'PACKAGES_DEL=sudo doas',
        'PACKAGES_NOSCRIPTS=',
        'SERVICES_ENABLE=boot=a,b',
        'SERVICES_DISABLE=default=c shutdown=d,e',
        'KERNEL_MODULES=sd-mod,usb-storage,ext4',
        'KERNEL_OPTIONS=console=ttyS0,115200n8',
        'INITFS_FEATURES=ena nvme',
      ]),
    );
  });

  it('picks the bootloader from the firmware when it is not configured', () => {
    expect(bootloaderOf(new Image(sampleConfig({ bootloader: undefined, firmware: 'bios' }), '/w'))).toBe(
      'extlinux',
    );
    expect(bootloaderOf(new Image(sampleConfig({ bootloader: undefined, firmware: 'uefi' }), '/w'))).toBe(
      'grub-efi',
    );
  });
});

describe('packerVariant', () => {
  const base = {
    scriptsDir: '/w/scripts',
    isoPath: '/w/iso/alpine-virt-3.24.1-x86_64.iso',
    isoChecksum: 'sha512:abc',
    outputDir: '/w/images/aws/k/.packer-out',
    accelerator: 'tcg',
    cpus: 2,
    serialLog: '/w/images/aws/k/serial.log',
    debug: false,
    boot: {
      qemuargs: [
        ['-kernel', '/w/iso/x.iso.boot/vmlinuz'],
        ['-initrd', '/w/iso/x.iso.boot/initramfs'],
        [
          '-append',
          'console=ttyS0 ip=dhcp apkovl=http://{{ .HTTPIP }}:{{ .HTTPPort }}/builder.apkovl.tar.gz',
        ],
      ],
      httpDirectory: '/w/packer/k/http',
      sshKeyFile: '/w/packer/k/builder-key',
    },
  };

  it('x86_64 UEFI: -bios firmware, serial log, entropy device, scripts under work/scripts', () => {
    const v = packerVariant({
      ...base,
      image: new Image(sampleConfig(), '/w'),
      firmware: '/w/firmware/uefi-x86_64.bin',
    });
    expect(v.qemu_binary).toBe('qemu-system-x86_64');
    expect(v.machine_type).toBeNull();
    expect(v.cdrom_interface).toBeNull();
    expect(v.qemuargs).toEqual([
      ['-bios', '/w/firmware/uefi-x86_64.bin'],
      ['-serial', 'file:/w/images/aws/k/serial.log'],
      ...base.boot.qemuargs,
      ['-device', 'virtio-rng-pci'],
    ]);
    expect(v.http_directory).toBe('/w/packer/k/http');
    expect(v.ssh_key_file).toBe('/w/packer/k/builder-key');
    expect(v.scripts).toEqual(['/w/scripts/setup', '/w/scripts/setup-tiny', '/w/scripts/cleanup']);
    expect(v.script_dirs).toEqual(['/w/scripts/setup.d']);
    expect(v.disk_size).toBe('160M');
    expect(v.iso_checksum).toBe('sha512:abc');
    expect(v.environment).toContain('ARCH=x86_64');
  });

  it('aarch64: virt machine, the config args kept, firmware appended', () => {
    const cfg = sampleConfig({
      arch: 'aarch64',
      qemu: {
        machine_type: 'virt',
        args: [
          ['-cpu', 'cortex-a57'],
          ['-device', 'virtio-gpu-pci'],
        ],
      },
    });
    const v = packerVariant({
      ...base,
      image: new Image(cfg, '/w'),
      firmware: '/w/firmware/uefi-aarch64.bin',
    });
    expect(v.qemu_binary).toBe('qemu-system-aarch64');
    expect(v.machine_type).toBe('virt');
    expect(v.qemuargs.slice(0, 3)).toEqual([
      ['-cpu', 'cortex-a57'],
      ['-device', 'virtio-gpu-pci'],
      ['-bios', '/w/firmware/uefi-aarch64.bin'],
    ]);
  });

  it('a virtio-scsi CD-ROM gets its controller and device (Packer drops its own once -device is given)', () => {
    const cfg = sampleConfig({ qemu: { cdrom_interface: 'virtio-scsi', args: [['-device', 'usb-kbd']] } });
    const v = packerVariant({ ...base, image: new Image(cfg, '/w') });
    expect(v.cdrom_interface).toBe('virtio-scsi');
    expect(v.qemuargs).toContainEqual(['-device', 'virtio-scsi-pci,id=scsi0']);
    expect(v.qemuargs).toContainEqual(['-device', 'scsi-cd,bus=scsi0.0,drive=cdrom0']);
  });

  it('keeps a firmware or serial setting the config already has', () => {
    const cfg = sampleConfig({
      qemu: {
        args: [
          ['-drive', 'if=pflash,format=raw,file=/x/code.fd'],
          ['-serial', 'stdio'],
        ],
      },
    });
    const v = packerVariant({ ...base, image: new Image(cfg, '/w'), firmware: '/w/f.bin' });
    expect(v.qemuargs.filter((a) => a[0] === '-bios')).toEqual([]);
    expect(v.qemuargs.filter((a) => a[0] === '-serial')).toEqual([['-serial', 'stdio']]);
  });

  it("direct kernel boot: a -kernel of the config wins over the ISO's", () => {
    const cfg = sampleConfig({ qemu: { args: [['-kernel', '/my/vmlinuz']] } });
    const v = packerVariant({ ...base, image: new Image(cfg, '/w') });
    expect(v.qemuargs.filter((a) => a[0] === '-kernel')).toEqual([['-kernel', '/my/vmlinuz']]);
    expect(v.qemuargs.filter((a) => a[0] === '-append')).toEqual([]);
  });

  it('rejects bad settings naming the variant', () => {
    const k = '3.24-x86_64-uefi-tiny-vm-aws';
    const mk = (over: Parameters<typeof sampleConfig>[0]) => () =>
      packerVariant({ ...base, image: new Image(sampleConfig(over), '/w') });
    expect(mk({ disk_size: 0 })).toThrow(`${k}: disk_size 0`);
    expect(mk({ scripts: [] })).toThrow(`${k}: no setup scripts`);
  });

  it('helpers: disk sizes, qemu args, default vCPUs', () => {
    expect(diskSize(1024, 'k')).toBe('1024M');
    expect(diskSize(512, 'k')).toBe('512M');
    expect(qemuArgs(null)).toEqual([]);
    expect(
      qemuArgs([
        ['-m', 1024],
        ['-cpu', 'max'],
      ]),
    ).toEqual([
      ['-m', '1024'],
      ['-cpu', 'max'],
    ]);
    expect(defaultCpus(1, 2)).toBe(2);
    expect(defaultCpus(2, 2)).toBe(1);
    expect(defaultCpus(4, 2)).toBe(1);
    expect(defaultCpus(1, 64)).toBe(4);
  });
});

describe('acceleratorFromVarFiles', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'build-vars-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('finds accelerator in HCL and JSON var files; the last file wins', async () => {
    const a = join(dir, 'a.pkrvars.hcl');
    const b = join(dir, 'b.pkrvars.json');
    const c = join(dir, 'c.pkrvars.hcl');
    await writeFile(a, 'memory = 2048\naccelerator = "kvm"\n');
    await writeFile(b, JSON.stringify({ accelerator: 'tcg' }));
    await writeFile(c, '# accelerator = "hvf"\ncmd_wait = "5s"\n');
    expect(await acceleratorFromVarFiles([a])).toEqual({ value: 'kvm', file: a });
    expect(await acceleratorFromVarFiles([a, b])).toEqual({ value: 'tcg', file: b });
    expect(await acceleratorFromVarFiles([c])).toBeUndefined();
    expect(await acceleratorFromVarFiles([])).toBeUndefined();
  });

  it('names an unreadable or broken file', async () => {
    await expect(acceleratorFromVarFiles([join(dir, 'missing.hcl')])).rejects.toThrow(
      /--vars .*missing\.hcl/,
    );
    const bad = join(dir, 'bad.json');
    await writeFile(bad, '{ nope');
    await expect(acceleratorFromVarFiles([bad])).rejects.toThrow(/--vars .*bad\.json: not valid JSON/);
  });
});
