// UEFI firmware for the builder VMs: from the host, or extracted from Alpine's community repository (a local
// file:// mirror with an APKINDEX and an APK made here), padded to 64 MiB when asked.
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  apkVersion,
  ensureUefiFirmware,
  firmwarePath,
  HOST_FIRMWARE,
  PAD_SIZE,
} from '../../src/build/firmware.js';
import { memoryLog } from '../fixtures/local/mirror.js';

let base: string;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'build-firmware-'));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

/** An Alpine-like community repository for `arch` with one firmware package. */
async function alpineMirror(arch: string, pkg: string, file: string, content: Buffer): Promise<string> {
  const cdn = join(base, `cdn-${arch}`);
  const repo = join(cdn, 'v3.24', 'community', arch);
  await mkdir(repo, { recursive: true });
  const stage = join(base, `stage-${arch}`);
  await mkdir(join(stage, 'index'), { recursive: true });
  const index = [
    'C:Q1abc=\nP:other\nV:1.0-r0\nA:x86_64\n',
    `C:Q1def=\nP:${pkg}\nV:2025.02-r1\nA:${arch}\nT:UEFI firmware\n`,
  ].join('\n');
  await writeFile(join(stage, 'index', 'APKINDEX'), index);
  await writeFile(join(stage, 'index', 'DESCRIPTION'), 'v3.24 community');
  execFileSync('tar', [
    '-czf',
    join(repo, 'APKINDEX.tar.gz'),
    '-C',
    join(stage, 'index'),
    'APKINDEX',
    'DESCRIPTION',
  ]);
  const pkgRoot = join(stage, 'pkg');
  await mkdir(join(pkgRoot, file, '..'), { recursive: true });
  await writeFile(join(pkgRoot, file), content);
  await writeFile(join(pkgRoot, '.PKGINFO'), `pkgname = ${pkg}\n`);
  execFileSync('tar', ['-czf', join(repo, `${pkg}-2025.02-r1.apk`), '-C', pkgRoot, '.PKGINFO', file]);
  return `file://${cdn}`;
}

describe('ensureUefiFirmware', () => {
  it('copies the host firmware into work/firmware', async () => {
    const host = join(base, 'host-OVMF.fd');
    await writeFile(host, Buffer.alloc(2 * 1024 * 1024, 1));
    const work = join(base, 'w1');
    const mem = memoryLog();
    const p = await ensureUefiFirmware('x86_64', {
      workDir: work,
      cdnUrl: 'file:///nonexistent',
      vVersion: 'v3.24',
      pad: false,
      log: mem.log,
      hostCandidates: ['/nonexistent/OVMF.fd', host],
    });
    expect(p).toBe(firmwarePath(work, 'x86_64'));
    expect((await readFile(p)).equals(await readFile(host))).toBe(true);
    expect(mem.text()).toContain(`UEFI firmware for x86_64: host file ${host}`);
    // kept on the next run
    await writeFile(host, 'changed');
    await ensureUefiFirmware('x86_64', {
      workDir: work,
      cdnUrl: '',
      vVersion: 'v3.24',
      pad: false,
      log: mem.log,
      hostCandidates: [host],
    });
    expect((await stat(p)).size).toBe(2 * 1024 * 1024);
  });

  it("extracts it from Alpine's package when the host has none, and pads aarch64 to 64 MiB", async () => {
    const content = Buffer.alloc(3 * 1024 * 1024, 0x5a);
    const cdnUrl = await alpineMirror('aarch64', 'aavmf', 'usr/share/AAVMF/QEMU_EFI.fd', content);
    const work = join(base, 'w2');
    const mem = memoryLog();
    const p = await ensureUefiFirmware('aarch64', {
      workDir: work,
      cdnUrl,
      vVersion: 'v3.24',
      pad: true,
      log: mem.log,
      hostCandidates: [],
    });
    const data = await readFile(p);
    expect(data.length).toBe(PAD_SIZE);
    expect(data.subarray(0, content.length).equals(content)).toBe(true);
    expect(data.subarray(content.length).every((b) => b === 0)).toBe(true);
    expect(mem.text()).toMatch(
      /extracted from file:\/\/.*\/v3\.24\/community\/aarch64\/aavmf-2025\.02-r1\.apk/,
    );
    expect(mem.text()).toContain('padded aarch64 UEFI firmware to 64 MiB');
  });

  it('names the repository when the package is not there', async () => {
    const cdnUrl = await alpineMirror('x86_64', 'not-ovmf', 'usr/share/OVMF/OVMF.fd', Buffer.from('x'));
    await expect(
      ensureUefiFirmware('x86_64', {
        workDir: join(base, 'w3'),
        cdnUrl,
        vVersion: 'v3.24',
        pad: false,
        log: memoryLog().log,
        hostCandidates: [],
      }),
    ).rejects.toThrow(/community\/x86_64\/APKINDEX\.tar\.gz has no ovmf package/);
  });

  it('refuses firmware larger than the padding size', async () => {
    const work = join(base, 'w4');
    await mkdir(join(work, 'firmware'), { recursive: true });
    await writeFile(firmwarePath(work, 'aarch64'), Buffer.alloc(PAD_SIZE + 1));
    await expect(
      ensureUefiFirmware('aarch64', {
        workDir: work,
        cdnUrl: '',
        vVersion: 'v3.24',
        pad: true,
        log: memoryLog().log,
      }),
    ).rejects.toThrow(/larger than the 64 MiB/);
  });

  it('knows the Debian and Alpine firmware paths', () => {
    expect(HOST_FIRMWARE.x86_64).toContain('/usr/share/ovmf/OVMF.fd');
    expect(HOST_FIRMWARE.x86_64).toContain('/usr/share/OVMF/OVMF.fd');
    expect(HOST_FIRMWARE.aarch64).toContain('/usr/share/qemu-efi-aarch64/QEMU_EFI.fd');
    expect(HOST_FIRMWARE.aarch64).toContain('/usr/share/AAVMF/QEMU_EFI.fd');
  });

  it('reads package versions from an APKINDEX', () => {
    const idx = 'P:a\nV:1-r0\n\nP:ovmf\nV:0.0.202502-r0\nA:x86_64\n\n';
    expect(apkVersion(idx, 'ovmf')).toBe('0.0.202502-r0');
    expect(apkVersion(idx, 'aavmf')).toBeUndefined();
  });
});
