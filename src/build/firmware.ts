// UEFI firmware for the builder VMs: work/firmware/uefi-<arch>.bin, copied from the host when a firmware
// package is installed (Debian ovmf / qemu-efi-aarch64, Alpine ovmf / aavmf, Fedora/Arch edk2), otherwise
// extracted from Alpine's community repository (ovmf / aavmf APK). aarch64 firmware can be padded to
// 64 MiB (--pad-uefi-bin-arch aarch64), the size QEMU wants for a pflash drive.
import { copyFile, mkdir, mkdtemp, readFile, rename, rm, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import type { Logger } from 'pino';
import { UserError } from '../util/errors.js';
import { exists } from '../util/fs.js';
import { downloadFile } from './download.js';

export const PAD_SIZE = 64 * 1024 * 1024;

/** Host firmware files, most common first. Only files that work with `-bios` (code and vars in one). */
export const HOST_FIRMWARE: Readonly<Record<string, readonly string[]>> = {
  x86_64: [
    '/usr/share/ovmf/OVMF.fd', // Debian, Ubuntu: ovmf
    '/usr/share/OVMF/OVMF.fd', // Alpine: ovmf
    '/usr/share/qemu/OVMF.fd',
    '/usr/share/edk2/x64/OVMF.fd', // Arch: edk2-ovmf
    '/usr/share/edk2/ovmf/OVMF.fd',
  ],
  aarch64: [
    '/usr/share/qemu-efi-aarch64/QEMU_EFI.fd', // Debian, Ubuntu: qemu-efi-aarch64
    '/usr/share/AAVMF/QEMU_EFI.fd', // Alpine: aavmf
    '/usr/share/edk2/aarch64/QEMU_EFI.fd', // Fedora, Arch: edk2-aarch64
    '/usr/share/qemu-efi/QEMU_EFI.fd',
  ],
};

/** Alpine community packages holding the firmware, and the file inside them. */
export const ALPINE_FIRMWARE: Readonly<Record<string, { apk: string; file: string }>> = {
  x86_64: { apk: 'ovmf', file: 'usr/share/OVMF/OVMF.fd' },
  aarch64: { apk: 'aavmf', file: 'usr/share/AAVMF/QEMU_EFI.fd' },
};

export interface FirmwareContext {
  workDir: string;
  /** Alpine mirror base URL (--cdn-url) */
  cdnUrl: string;
  /** "v3.20" or "edge": which branch's community repository to take the firmware from */
  vVersion: string;
  /** pad to 64 MiB */
  pad: boolean;
  log: Logger;
  /** override the host search list (tests) */
  hostCandidates?: readonly string[];
}

export function firmwarePath(workDir: string, arch: string): string {
  return join(workDir, 'firmware', `uefi-${arch}.bin`);
}

/** Find `P:<name>` in an APKINDEX and return its version (`V:`). */
export function apkVersion(apkindex: string, name: string): string | undefined {
  for (const block of apkindex.split(/\n\s*\n/)) {
    let p: string | undefined;
    let v: string | undefined;
    for (const line of block.split('\n')) {
      if (line.startsWith('P:')) p = line.slice(2).trim();
      else if (line.startsWith('V:')) v = line.slice(2).trim();
    }
    if (p === name && v) return v;
  }
  return undefined;
}

async function untar(archive: string, dest: string, members: string[]): Promise<void> {
  // APKs and APKINDEX.tar.gz are concatenated gzip streams of tar segments: GNU tar reads them as one
  const r = await execa('tar', ['-xzf', archive, '-C', dest, '--warning=no-unknown-keyword', ...members], {
    reject: false,
    all: true,
  });
  if (r.exitCode !== 0) {
    throw new UserError(`cannot extract ${members.join(' ')} from ${archive}: ${String(r.all ?? '').trim()}`);
  }
}

async function extractFromAlpine(arch: string, dest: string, ctx: FirmwareContext): Promise<string> {
  const pkg = ALPINE_FIRMWARE[arch];
  if (!pkg) throw new UserError(`no UEFI firmware known for arch ${arch}`);
  const repo = `${ctx.cdnUrl}/${ctx.vVersion}/community/${arch}`;
  const tmp = await mkdtemp(join(ctx.workDir, 'firmware', '.extract-'));
  try {
    const index = join(tmp, 'APKINDEX.tar.gz');
    await downloadFile(`${repo}/APKINDEX.tar.gz`, index);
    await untar(index, tmp, ['APKINDEX']);
    const version = apkVersion(await readFile(join(tmp, 'APKINDEX'), 'utf8'), pkg.apk);
    if (!version) throw new UserError(`${repo}/APKINDEX.tar.gz has no ${pkg.apk} package`);
    const apkUrl = `${repo}/${pkg.apk}-${version}.apk`;
    const apk = join(tmp, `${pkg.apk}-${version}.apk`);
    ctx.log.info({ url: apkUrl }, `extracting UEFI firmware for ${arch} from Alpine's ${pkg.apk} package`);
    await downloadFile(apkUrl, apk);
    await untar(apk, tmp, [pkg.file]);
    await rename(join(tmp, pkg.file), dest);
    return apkUrl;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/**
 * Make sure work/firmware/uefi-<arch>.bin exists (and is padded when asked); returns its path.
 * An existing file is kept: delete it (or use --clean) to pick up a newer host firmware.
 */
export async function ensureUefiFirmware(arch: string, ctx: FirmwareContext): Promise<string> {
  const dest = firmwarePath(ctx.workDir, arch);
  await mkdir(join(ctx.workDir, 'firmware'), { recursive: true });
  if (!(await exists(dest))) {
    const candidates = ctx.hostCandidates ?? HOST_FIRMWARE[arch] ?? [];
    let source: string | undefined;
    for (const c of candidates) {
      if (await exists(c)) {
        source = c;
        break;
      }
    }
    const tmp = `${dest}.tmp-${process.pid}`;
    if (source) {
      await copyFile(source, tmp);
      await rename(tmp, dest);
      ctx.log.info({ firmware: dest, from: source }, `UEFI firmware for ${arch}: host file ${source}`);
    } else {
      const from = await extractFromAlpine(arch, tmp, ctx);
      await rename(tmp, dest);
      ctx.log.info({ firmware: dest, from }, `UEFI firmware for ${arch}: extracted from ${from}`);
    }
  }
  if (ctx.pad) {
    const size = (await stat(dest)).size;
    if (size < PAD_SIZE) {
      await truncate(dest, PAD_SIZE);
      ctx.log.info({ firmware: dest, from: size, to: PAD_SIZE }, `padded ${arch} UEFI firmware to 64 MiB`);
    } else if (size > PAD_SIZE) {
      throw new UserError(`${dest} is ${size} bytes, larger than the 64 MiB it should be padded to`);
    }
  }
  return dest;
}
