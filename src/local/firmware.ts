// UEFI firmware for the builder VMs: work/firmware/uefi-<arch>.bin, copied from the host when a firmware
// package is installed (Debian ovmf / qemu-efi-aarch64, Alpine ovmf / aavmf, Fedora/Arch edk2), otherwise
// extracted from Alpine's community repository (ovmf / aavmf APK, verified like apk does: signed index,
// package checksums). aarch64 firmware can be padded to 64 MiB (--pad-uefi-bin-arch aarch64), the size QEMU
// wants for a pflash drive.
import { copyFile, mkdir, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { UserError } from '../util/errors.js';
import { exists } from '../util/fs.js';
import { type ApkKeys, indexEntry, verifyApk, verifyApkIndex } from './apk.js';
import { fetchBytes } from './download.js';

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
  /** trusted apk repository keys (keys/apk), for firmware from Alpine's repository */
  apkKeys?: ApkKeys;
  /** override the host search list (tests) */
  hostCandidates?: readonly string[];
}

export function firmwarePath(workDir: string, arch: string): string {
  return join(workDir, 'firmware', `uefi-${arch}.bin`);
}

/** Find `P:<name>` in an APKINDEX and return its version (`V:`). */
export function apkVersion(apkindex: string, name: string): string | undefined {
  return indexEntry(apkindex, name)?.version;
}

async function extractFromAlpine(arch: string, dest: string, ctx: FirmwareContext): Promise<string> {
  const pkg = ALPINE_FIRMWARE[arch];
  if (!pkg) throw new UserError(`no UEFI firmware known for arch ${arch}`);
  const keys = ctx.apkKeys ?? { keys: new Map(), dirs: [] };
  const repo = `${ctx.cdnUrl}/${ctx.vVersion}/community/${arch}`;
  const indexUrl = `${repo}/APKINDEX.tar.gz`;
  const index = verifyApkIndex(await fetchBytes(indexUrl), keys, indexUrl);
  const entry = indexEntry(index, pkg.apk);
  if (!entry) throw new UserError(`${indexUrl} has no ${pkg.apk} package`);
  const apkUrl = `${repo}/${pkg.apk}-${entry.version}.apk`;
  ctx.log.info({ url: apkUrl }, `extracting UEFI firmware for ${arch} from Alpine's ${pkg.apk} package`);
  const files = verifyApk(await fetchBytes(apkUrl), entry, apkUrl);
  const file = files.find((f) => f.name === pkg.file);
  if (!file) throw new UserError(`${apkUrl} has no ${pkg.file}`);
  await writeFile(dest, file.data);
  return apkUrl;
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
      let from: string;
      try {
        from = await extractFromAlpine(arch, tmp, ctx);
      } catch (err) {
        await rm(tmp, { force: true });
        throw err;
      }
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
