// buildLocal's orchestration without booting VMs: a stand-in `packer` (test/fixtures/local/fake-packer) that
// prints Packer-like output, coloured (the build runs with colour on), and makes an empty qcow2 (or fails for
// variants named *fail*). The ISO still comes from a file:// mirror and is verified, its kernel and initramfs
// are extracted for the direct kernel boot, and conversion, compression and checksums are real.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageConfig } from '../../src/config/types.js';
import { buildLocal, type LocalBuildOptions, type LocalBuildResult } from '../../src/local/index.js';
import { Image } from '../../src/state/image.js';
import { emptyState } from '../../src/state/image-state.js';
import { LOCAL_FIXTURES, makeTestKey, memoryLog, publishIso, REPO_ROOT } from '../fixtures/local/mirror.js';
import { sampleConfig } from '../fixtures/local/sample.js';

const hasQemuImg = existsSync('/usr/bin/qemu-img') && existsSync('/usr/bin/xorriso');
if (!hasQemuImg) console.warn('skipping local orchestration tests: qemu-img or xorriso is not installed');

describe.skipIf(!hasQemuImg)('buildLocal orchestration (stand-in packer)', () => {
  let base: string;
  let work: string;
  let options: LocalBuildOptions;
  let results: LocalBuildResult[];
  let logText: string;
  let trace: string;
  let images: Image[];

  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), 'local-orch-'));
    work = join(base, 'work');
    await mkdir(join(work, 'scripts', 'setup.d'), { recursive: true });
    for (const s of ['setup', 'setup-tiny', 'cleanup'])
      await writeFile(join(work, 'scripts', s), '#!/bin/sh\n');
    // a signed "ISO" on a local mirror, trusted through a --custom overlay's keys/
    const key = await makeTestKey();
    // a small ISO with a "kernel" and an "initramfs" where Alpine's virt ISO has them
    const isoDir = join(base, 'iso-root');
    await mkdir(join(isoDir, 'boot'), { recursive: true });
    await writeFile(join(isoDir, 'boot', 'vmlinuz-virt'), Buffer.alloc(64 * 1024, 7));
    await writeFile(join(isoDir, 'boot', 'initramfs-virt'), Buffer.alloc(32 * 1024, 8));
    const iso = join(base, 'fake.iso');
    execFileSync('xorriso', ['-as', 'mkisofs', '-quiet', '-V', 'FAKE', '-o', iso, isoDir], {
      stdio: 'ignore',
    });
    const { cdnUrl } = await publishIso(join(base, 'cdn'), iso, {
      version: '3.24',
      release: '3.24.1',
      arch: 'x86_64',
      key,
    });
    const overlay = join(base, 'overlay');
    await mkdir(join(overlay, 'keys'), { recursive: true });
    await writeFile(join(overlay, 'keys', 'release.asc'), key.publicArmored);
    const vars = join(base, 'fast.pkrvars.hcl');
    await writeFile(vars, 'accelerator = "tcg"\n');
    trace = join(base, 'trace');
    process.env.FAKE_PACKER_TRACE = trace;

    const isoUrl = `${cdnUrl}/v3.24/releases/x86_64/alpine-virt-3.24.1-x86_64.iso`;
    const variant = (key: string, over: Parameters<typeof sampleConfig>[0] = {}) =>
      new Image(
        sampleConfig({
          config_key: key,
          image_key: key,
          firmware: 'bios',
          bootloader: 'extlinux',
          name: `{cloud}_${key}-r{revision}`,
          qemu: { iso_url: isoUrl },
          ...over,
        }),
        work,
        emptyState(3),
      );
    images = [
      variant('one-vhd', {
        image_format: 'vhd',
        image_format_opts: 'vhd/fixed_force-size',
        image_compress: 'zstd',
      }),
      variant('two-fail'),
      variant('three-qcow2', { image_format: 'qcow2', image_format_opts: null, image_compress: 'gz' }),
      // a hand-edited images.yaml may hold anything: the converter refuses it
      variant('four-bad-format', { image_format: 'iso' as ImageConfig['image_format'] }),
    ];
    options = {
      debug: false,
      padUefiBinArch: [],
      custom: [overlay],
      color: true,
      parallel: 2,
      vars: [vars],
      cdnUrl,
      rootDir: REPO_ROOT,
      workDir: work,
    };
    const mem = memoryLog();
    results = await buildLocal(
      images,
      { log: mem.log, options },
      { packerBin: join(LOCAL_FIXTURES, 'fake-packer') },
    );
    logText = mem.text();
  }, 120_000);

  afterAll(async () => {
    delete process.env.FAKE_PACKER_TRACE;
    await rm(base, { recursive: true, force: true });
  });

  it('returns one result per image, in order; one failure does not stop the others', () => {
    expect(results.map((r) => [r.configKey, r.ok])).toEqual([
      ['one-vhd', true],
      ['two-fail', false],
      ['three-qcow2', true],
      ['four-bad-format', false],
    ]);
  });

  it("explains each failure with Packer's error and the VM's last console lines, colour on", async () => {
    const fail = results[1]!;
    expect(fail.error).toMatch(
      /^packer build failed \(exit 1\): Script exited with non-zero exit status: 1\.\n {2}last output: .*\/dev\/vda is not blank/,
    );
    expect(fail.error).toContain(
      "last lines on the builder VM's console:\n    builder: sshd: started\n    EXT4-fs (vda): VFS: Can't find ext4 filesystem",
    );
    expect(fail.error).not.toContain('\x1b');
    expect(fail.logFile).toBe(join(images[1]!.localDir, 'build.log'));
    expect(await readFile(fail.logFile, 'utf8')).toContain('/dev/vda is not blank');
    expect(logText).toContain(`two-fail: build failed; full log: ${fail.logFile}`);
    expect(results[3]!.error).toBe(
      'four-bad-format: image_format "iso" is not supported (expected one of qcow2, vhd, vhdx, vmdk, raw, raw.tar.gz)',
    );
    // nothing half-built is left behind
    expect(existsSync(join(images[1]!.localDir, '.packer-out'))).toBe(false);
    expect(existsSync(images[1]!.localImage)).toBe(false);
  });

  it('produces image.qcow2, the converted and compressed images and checksums', async () => {
    const one = images[0]!;
    expect(one.uploadPath.endsWith('one-vhd-r3.vhd.zstd')).toBe(true);
    for (const p of [one.localImage, one.imagePath, one.uploadPath, `${one.uploadPath}.sha512`])
      expect(existsSync(p)).toBe(true);
    expect(await readFile(`${one.uploadPath}.sha512`, 'utf8')).toBe(
      `${results[0]!.sha512}  ${one.uploadFile}\n`,
    );
    const three = images[2]!;
    expect(existsSync(three.imagePath)).toBe(true);
    expect(three.uploadPath.endsWith('.qcow2.gz')).toBe(true);
    expect(existsSync(`${three.uploadPath}.sha512`)).toBe(true);
  });

  it('runs at most --parallel builds at once', async () => {
    const lines = (await readFile(trace, 'utf8')).trim().split('\n');
    let running = 0;
    let max = 0;
    const events = lines
      .map((l) => l.split(' '))
      .sort((a, b) => Number(a[2]) - Number(b[2]) || (a[0] === 'end' ? -1 : 1));
    for (const [kind] of events) {
      running += kind === 'start' ? 1 : -1;
      max = Math.max(max, running);
    }
    expect(lines.filter((l) => l.startsWith('start'))).toHaveLength(3);
    expect(max).toBe(2);
  });

  it('logs progress per variant and the accelerator decision', () => {
    for (const s of [
      'iso',
      'accelerator',
      'booting',
      'waiting for ssh',
      'provisioning (setup)',
      'converting (vhd)',
      'compressing (zstd)',
      'checksum',
      'done',
    ]) {
      expect(logText).toContain(`one-vhd: ${s}`);
    }
    expect(logText).toMatch(/accelerator for x86_64 builds: tcg \(set in --vars .*fast\.pkrvars\.hcl\)/);
    expect(logText).toMatch(/local: 2 built, 2 failed in \d+s/);
    // one verified download shared by all variants
    expect(logText.match(/downloading alpine-virt-3\.24\.1-x86_64\.iso/g)).toHaveLength(1);
  });

  it('writes plain text to build.log and records the Packer command', async () => {
    const log = await readFile(join(images[0]!.localDir, 'build.log'), 'utf8');
    expect(log).toContain('Starting VM, booting from CD-ROM');
    expect(log).toMatch(
      /\$ cd .*packer\/one-vhd && .*fake-packer build -timestamp-ui -var-file=.*build\.pkrvars\.hcl -var-file=.*fast\.pkrvars\.hcl \./,
    );
    expect(log).not.toContain('\x1b');
    expect(logText).not.toContain('\x1b');
    expect(log).toMatch(/\$ qemu-img convert -f qcow2 -O vpc -o subformat=fixed,force_size=on/);
    // the variant file Packer read (fake-packer keeps a copy): owner-only while it existed, removed afterwards
    const pdir = join(work, 'packer', 'one-vhd');
    expect(existsSync(join(pdir, 'variant.json'))).toBe(false);
    expect((await readFile(join(pdir, 'variant.read.mode'), 'utf8')).trim()).toBe('600');
    const v = JSON.parse(await readFile(join(pdir, 'variant.read.json'), 'utf8'));
    expect(v).toMatchObject({ accelerator: 'tcg', arch: 'x86_64', qemu_binary: 'qemu-system-x86_64' });
    expect(v.iso_checksum).toMatch(/^sha512:[0-9a-f]{128}$/);
    expect(v.environment).toContain('BUILD_NAME=aws_one-vhd-r3');
    // direct kernel boot: the kernel and initramfs taken out of the verified ISO, the apkovl URL for Packer
    const kernel = v.qemuargs.find((a: string[]) => a[0] === '-kernel')?.[1] as string;
    expect(kernel).toMatch(/\/iso\/alpine-virt-3\.24\.1-x86_64\.iso\.boot\/vmlinuz$/);
    expect((await readFile(kernel)).length).toBe(64 * 1024);
    const append = v.qemuargs.find((a: string[]) => a[0] === '-append')?.[1] as string;
    expect(append).toContain('apkovl=http://{{ .HTTPIP }}:{{ .HTTPPort }}/builder.apkovl.tar.gz');
    expect(existsSync(join(v.http_directory, 'builder.apkovl.tar.gz'))).toBe(true);
  });
});
