// The project's own configs (configs/, overlays/) resolved against the releases.json fixture.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPlaceholderProject } from '../../src/clouds/index.js';
import { imagesYamlText } from '../../src/config/images-yaml.js';
import { PROJECT_PLACEHOLDER, resolveConfigsDir } from '../../src/config/index.js';
import type { ImageConfig, ImagesFile } from '../../src/config/types.js';
import { stageWorkDir } from '../../src/config/workdir.js';
import { captureLog, FIXTURES, NOW, ROOT, removeTree, resolveCtx } from '../fixtures/config-helpers.js';

let images: ImagesFile;
let all: ImageConfig[];
const get = (k: string): ImageConfig => {
  const c = images[k];
  if (!c) throw new Error(`no variant ${k}`);
  return c;
};

beforeAll(async () => {
  const r = await resolveConfigsDir(join(ROOT, 'configs'), resolveCtx(captureLog('warn').log));
  images = r.images;
  all = Object.values(images);
  expect(r.stats).toEqual({ combinations: 576, variants: 306, excluded: 270, endOfLife: 0 });
});

describe('configs/ (the official image matrix, defaults that work for anyone)', () => {
  it('covers versions, arches, firmware, bootstraps, machines and clouds', () => {
    const values = (f: keyof ImageConfig) => [...new Set(all.map((c) => c[f]))];
    expect(values('version')).toEqual(['3.24', '3.23', '3.22', '3.21', '3.20', 'edge']);
    expect(values('arch')).toEqual(['x86_64', 'aarch64']);
    expect(values('firmware')).toEqual(['bios', 'uefi']);
    expect(values('bootstrap')).toEqual(['tiny', 'cloudinit']);
    expect(values('machine')).toEqual(['vm', 'metal']);
    expect(values('cloud')).toEqual(['aws', 'azure', 'gcp', 'generic', 'nocloud', 'oci']);
  });

  it('follows the content rules of the official configs', () => {
    expect(all.filter((c) => c.arch === 'aarch64' && c.firmware === 'bios')).toEqual([]);
    expect(
      new Set(all.filter((c) => c.cloud === 'nocloud' || c.cloud === 'oci').map((c) => c.version)),
    ).toEqual(new Set(['3.20']));
    expect(
      all.filter((c) => c.cloud === 'generic' && c.version === '3.20' && c.bootstrap === 'tiny'),
    ).toEqual([]);
    expect(get('3.20-x86_64-bios-cloudinit-vm-generic').packages.add).toContain('dhclient');
    expect(get('3.20-x86_64-bios-cloudinit-vm-generic').packages.add).not.toContain('dhcpcd');
    expect(get('3.22-x86_64-bios-cloudinit-vm-generic').packages.add).toContain('dhcpcd');
    expect(get('3.24-x86_64-uefi-tiny-vm-azure')).toMatchObject({
      kernel_modules: ['sd-mod', 'usb-storage', 'ext4', 'mana'],
      initfs_features: ['pci-hyperv', 'mana'],
    });
    expect(get('3.23-x86_64-uefi-tiny-vm-azure')).toMatchObject({
      kernel_modules: ['sd-mod', 'usb-storage', 'ext4'],
      initfs_features: ['pci-hyperv'],
    });
    expect(get('3.20-x86_64-bios-tiny-vm-aws')).toMatchObject({
      ntp_server: '169.254.169.123',
      kernel_options: expect.arrayContaining(['nvme_core.io_timeout=4294967295']),
    });
    expect(get('3.22-x86_64-bios-tiny-vm-aws')).toMatchObject({
      ntp_server: '',
      image_format: 'vhd',
      image_format_opts: 'vhd/fixed_force-size',
    });
    expect(get('3.22-x86_64-bios-tiny-vm-gcp').image_format).toBe('raw.tar.gz');
    const serial = (k: string) => get(k).kernel_options.some((o) => o.includes('autodetect_serial'));
    expect(serial('3.22-x86_64-bios-tiny-vm-generic')).toBe(true);
    expect(serial('3.21-x86_64-bios-tiny-vm-generic')).toBe(false);
  });

  it('names images as the original does ({cloud} and {revision} kept; vm adds nothing, metal does)', () => {
    expect(get('3.24-x86_64-bios-tiny-vm-aws')).toMatchObject({
      name: '{cloud}_alpine-3.24.1-x86_64-bios-tiny-r{revision}',
      image_key: '3.24.1-x86_64-bios-tiny-vm-aws',
      description: 'Alpine Linux 3.24.1 - https://alpinelinux.org/cloud',
    });
    expect(get('3.22-aarch64-uefi-cloudinit-metal-generic')).toMatchObject({
      name: '{cloud}_alpine-3.22.4-aarch64-uefi-cloudinit-metal-r{revision}',
      disk_size: 416,
      packages: expect.objectContaining({
        add: expect.arrayContaining(['linux-lts']),
        noscripts: ['grub-efi'],
      }),
    });
    expect(get('edge-x86_64-bios-tiny-vm-aws')).toMatchObject({
      release: '20260301',
      name: '{cloud}_alpine-20260301-x86_64-bios-tiny-r{revision}',
    });
  });

  it('stores under the work directory, signs and releases nothing, and uses the placeholder project', () => {
    const c = get('3.24-aarch64-uefi-tiny-vm-aws');
    expect(c).toMatchObject({
      project: PROJECT_PLACEHOLDER,
      storage_url: 'file:///work-dir/storage/v3.24/aws/aarch64',
      download_url: 'file:///work-dir/storage/v3.24/aws/aarch64',
      signing_cmd: null,
      release_cmd: null,
      access: {},
      regions: {},
      encrypted: false,
      scripts: ['setup', 'setup-tiny', 'cleanup'],
      script_dirs: ['setup.d'],
      login: 'alpine',
      bootloader: 'grub-efi',
      qemu: {
        machine_type: 'virt',
        args: [
          ['-cpu', 'cortex-a57'],
          ['-boot', 'd'],
        ],
        firmware: '/work-dir/firmware/uefi-aarch64.bin',
        iso_url: expect.stringMatching(/\/v3\.24\/releases\/aarch64\/alpine-virt-3\.24\.1-aarch64\.iso$/),
      },
    });
    expect(isPlaceholderProject(c.project)).toBe(true);
    expect(get('edge-x86_64-bios-tiny-vm-aws').repos).toEqual(
      ['main', 'community', 'testing'].map((r) => ({
        url: `https://dl-cdn.alpinelinux.org/alpine/edge/${r}`,
        enabled: true,
        tag: null,
      })),
    );
    expect(get('3.23-x86_64-bios-tiny-vm-aws').motd).toContain(
      '* <https://alpinelinux.org/posts/Alpine-3.23.3-released.html>',
    );
    expect(get('3.24-x86_64-bios-tiny-vm-aws').motd).not.toContain('release notes');
  });

  it('drops end-of-life versions by date: today only 3.22 and later remain (≈200 of 576)', async () => {
    const r = await resolveConfigsDir(
      join(ROOT, 'configs'),
      resolveCtx(captureLog('warn').log, { now: new Date('2026-11-22T09:00:00Z') }),
    );
    expect(r.stats).toEqual({ combinations: 576, variants: 192, excluded: 192, endOfLife: 192 });
    expect(new Set(Object.values(r.images).map((c) => c.version))).toEqual(
      new Set(['3.24', '3.23', '3.22', 'edge']),
    );
  });

  it('the HOCON twin of configs/ resolves to exactly the same images.yaml', async () => {
    const r = await resolveConfigsDir(join(FIXTURES, 'hocon', 'configs'), resolveCtx(captureLog('warn').log));
    expect(imagesYamlText(r.images)).toBe(imagesYamlText(images));
  });
});

describe('overlays/', () => {
  const work: string[] = [];
  afterAll(async () => {
    for (const w of work) await removeTree(w);
  });
  async function withOverlays(custom: string[]): Promise<ImagesFile> {
    const workDir = await mkdtemp(join(tmpdir(), 'cib-config-overlays-'));
    work.push(workDir);
    const { log } = captureLog('warn');
    const staged = await stageWorkDir({ rootDir: ROOT, workDir, custom, clean: false, log });
    try {
      const paths = { origins: staged.origins, stageDir: staged.dir, workDir };
      return (await resolveConfigsDir(staged.configsDir, resolveCtx(log, { workDir }), paths)).images;
    } finally {
      await staged.discard();
    }
  }

  it('official: the Alpine project, ssh storage, signing and release commands, public AWS images (edge private)', async () => {
    const off = await withOverlays([join(ROOT, 'overlays', 'official')]);
    expect(Object.keys(off)).toEqual(Object.keys(images));
    expect(off['3.24-x86_64-bios-tiny-vm-aws']).toMatchObject({
      project: 'https://alpinelinux.org/cloud',
      storage_url: 'ssh://tomalok@dev.alpinelinux.org/public_html/alpine-cloud-images/v3.24/aws/x86_64',
      download_url: 'https://dl-cdn.alpinelinux.org/alpine/v3.24/releases/cloud',
      signing_cmd: 'keybase pgp sign -d -i {file} -o {file}.asc',
      release_cmd: 'ssh tomalok@dev.alpinelinux.org bin/release-image {v_version} {cloud} {arch} {base}',
      access: { PUBLIC: true },
      regions: { ALL: true },
    });
    expect(off['edge-x86_64-bios-tiny-vm-aws']).toMatchObject({
      access: { PUBLIC: false },
      regions: { ALL: false, 'us-west-2': true, 'us-east-1': true },
    });
    expect(off['3.24-x86_64-bios-tiny-vm-gcp']).toMatchObject({ access: {}, regions: {} });
  });

  it('testing: test names, a hybrid firmware key, private AWS images in two regions', async () => {
    const t = await withOverlays([join(ROOT, 'overlays', 'testing')]);
    expect(t['3.24-x86_64-hybrid-tiny-vm-aws']).toMatchObject({
      project: 'alpine-cloud-images-testing',
      name: 'test-3.24.1-x86_64-hybrid-tiny-r{revision}',
      description: 'Alpine Test 3.24.1 - https://alpinelinux.org/cloud',
      bootloader: 'grub-hybrid',
      access: { PUBLIC: false },
      regions: { 'us-west-2': true, 'us-east-1': true, ALL: false },
    });
    expect(Object.keys(t).length).toBeGreaterThan(Object.keys(images).length);
  });

  it('a HOCON tree and its HOCON overlay, installed over the YAML configs with --custom', async () => {
    const h = await withOverlays([join(FIXTURES, 'hocon'), join(FIXTURES, 'hocon', 'overlay')]);
    expect(h['3.22-aarch64-hybrid-cloudinit-vm-aws']).toMatchObject({
      project: 'hocon-overlay-test',
      name: 'test-3.22.4-aarch64-hybrid-cloudinit-r{revision}',
      description: 'Alpine Test 3.22.4 - https://alpinelinux.org/cloud',
      regions: { 'us-west-2': true, 'us-east-1': true, ALL: false },
      access: { PUBLIC: false },
    });
    // everything else is the base tree's
    const {
      name: _n,
      description: _d,
      project: _p,
      access: _a,
      regions: _r,
      ...rest
    } = h['3.22-x86_64-bios-tiny-vm-azure']!;
    const {
      name: _n2,
      description: _d2,
      project: _p2,
      access: _a2,
      regions: _r2,
      ...base
    } = images['3.22-x86_64-bios-tiny-vm-azure']!;
    expect({ ...rest, storage_url: '', download_url: '', qemu: {} }).toEqual({
      ...base,
      storage_url: '',
      download_url: '',
      qemu: {},
    });
  });
});

it('resolves at the fixture date used by the other config tests', () => {
  expect(NOW.toISOString()).toBe('2026-03-01T12:00:00.000Z');
});
