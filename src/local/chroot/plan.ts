// Pure planning for the chroot builder: the minirootfs URL, the repositories as the build reaches them, the
// disk layout and the identifiers that make the disk reproducible. Unit-tested; no effects.
import { createHash } from 'node:crypto';
import type { Repository } from '../../config/types.js';
import { UserError } from '../../util/errors.js';

/** The CDN prefix of the configured repository URLs that --cdn-url stands in for. */
export const ALPINE_CDN = 'https://dl-cdn.alpinelinux.org/alpine';

/** <cdn>/v<x.y>/releases/<arch>/alpine-minirootfs-<release>-<arch>.tar.gz (edge: see edgeMinirootfs). */
export function minirootfsUrl(cdnUrl: string, vVersion: string, release: string, arch: string): string {
  return `${cdnUrl.replace(/\/+$/, '')}/${vVersion}/releases/${arch}/alpine-minirootfs-${release}-${arch}.tar.gz`;
}

/**
 * The newest edge minirootfs named by <cdn>/edge/releases/<arch>/latest-releases.yaml (a YAML list of
 * { flavor, file, ... }); undefined when it lists none.
 */
export function edgeMinirootfs(latestReleases: unknown): string | undefined {
  if (!Array.isArray(latestReleases)) return undefined;
  const files = latestReleases
    .filter((e): e is { flavor: string; file: string } => {
      const o = e as Record<string, unknown>;
      return o?.flavor === 'alpine-minirootfs' && typeof o.file === 'string';
    })
    .map((e) => e.file)
    .sort();
  return files.at(-1);
}

/** A URL under the Alpine CDN, moved to --cdn-url. */
export function substituteCdn(url: string, cdnUrl: string): string {
  const cdn = cdnUrl.replace(/\/+$/, '');
  return url === ALPINE_CDN || url.startsWith(`${ALPINE_CDN}/`) ? cdn + url.slice(ALPINE_CDN.length) : url;
}

export interface Bind {
  host: string;
  inside: string;
}

export interface BuildRepos {
  /** /etc/apk/repositories while installing (BUILD_REPOS) */
  lines: string;
  /** local repositories mounted into the builder */
  binds: Bind[];
  /** configured repositories that are left out (a file:// directory that does not exist) */
  skipped: string[];
}

/**
 * The configured repositories as the build reaches them: the Alpine CDN prefix replaced by --cdn-url, and
 * file:// repositories mounted read-only into the builder at /media/cib-repo-<n> (`realpath` resolves a directory
 * on the host, or returns undefined). Disabled ones stay in the list, commented out.
 */
export function buildRepos(
  repos: readonly Repository[],
  cdnUrl: string,
  realpath: (dir: string) => string | undefined,
): BuildRepos {
  const out: string[] = [];
  const binds: Bind[] = [];
  const skipped: string[] = [];
  const cdn = cdnUrl.replace(/\/+$/, '');
  for (const repo of repos) {
    if (!repo.enabled) {
      out.push(`#${repo.url}`);
      continue;
    }
    const tag = repo.tag !== null ? `@${repo.tag} ` : '';
    let url = substituteCdn(repo.url, cdn);
    if (url.startsWith('file://')) {
      const dir = realpath(decodeURIComponent(url.slice('file://'.length)));
      if (!dir) {
        skipped.push(url);
        continue;
      }
      const inside = `/media/cib-repo-${binds.length + 1}`;
      binds.push({ host: dir, inside });
      url = inside;
    }
    out.push(`${tag}${url}`);
  }
  return { lines: out.join('\n'), binds, skipped };
}

/** A UUID derived from the image key and its purpose (reproducible disks; version 4 and variant bits set). */
export function derivedUuid(imageKey: string, purpose: string): string {
  const h = createHash('sha256').update(`cloud-image-builder\0${imageKey}\0${purpose}`).digest();
  h[6] = (h[6]! & 0x0f) | 0x40;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

function derivedHex(imageKey: string, purpose: string, chars: number): string {
  return createHash('sha256')
    .update(`cloud-image-builder\0${imageKey}\0${purpose}`)
    .digest('hex')
    .slice(0, chars);
}

export interface DiskPlan {
  layout: 'bios' | 'uefi';
  diskSectors: number;
  rootStart: number;
  rootSectors: number;
  espStart?: number;
  espSectors?: number;
  rootUuid: string;
  hashSeed: string;
  /** MBR: 8 hex digits; GPT: a GUID */
  diskId: string;
  espUuid?: string;
  rootPartUuid?: string;
  /** FAT volume serial, 8 hex digits */
  fatId?: string;
  grubTarget?: string;
  efiName?: string;
  efiFallback?: string;
}

const MIB = 2048; // sectors
/** The ESP the VM builder's setup script makes (EFI_SIZE_MIB). */
const ESP_MIB = 8;
const EFI: Record<string, { target: string; name: string; fallback: string }> = {
  x86_64: { target: 'x86_64-efi', name: 'grubx64.efi', fallback: 'bootx64.efi' },
  aarch64: { target: 'arm64-efi', name: 'grubaa64.efi', fallback: 'bootaa64.efi' },
};

/**
 * The layout of the disk: BIOS (extlinux) = MBR, one bootable Linux partition from 1 MiB; UEFI (grub-efi) =
 * GPT, an 8 MiB ESP from 1 MiB, then the root partition up to the backup GPT. Partition sizes are whole 4 KiB
 * blocks. Every identifier is derived from the image key.
 */
export function diskPlan(o: {
  imageKey: string;
  configKey: string;
  arch: string;
  bootloader: string;
  diskMiB: number;
}): DiskPlan {
  const total = o.diskMiB * MIB;
  const common = {
    diskSectors: total,
    rootUuid: derivedUuid(o.imageKey, 'root-fs'),
    hashSeed: derivedUuid(o.imageKey, 'root-fs-hash-seed'),
  };
  if (o.bootloader === 'extlinux') {
    if (o.arch !== 'x86_64') throw new UserError(`${o.configKey}: extlinux (BIOS) boots x86_64 only`);
    const rootStart = MIB;
    return {
      ...common,
      layout: 'bios',
      rootStart,
      rootSectors: Math.floor((total - rootStart) / 8) * 8,
      diskId: derivedHex(o.imageKey, 'mbr-disk-id', 8),
    };
  }
  if (o.bootloader === 'grub-efi') {
    const efi = EFI[o.arch];
    if (!efi) throw new UserError(`${o.configKey}: no UEFI GRUB target for arch ${o.arch}`);
    const espStart = MIB;
    const espSectors = ESP_MIB * MIB;
    const rootStart = espStart + espSectors;
    // the backup GPT: 32 sectors of partition entries and its header at the end of the disk
    const rootSectors = Math.floor((total - rootStart - 33) / 8) * 8;
    if (rootSectors < 16 * MIB) throw new UserError(`${o.configKey}: disk_size ${o.diskMiB}M is too small`);
    return {
      ...common,
      layout: 'uefi',
      rootStart,
      rootSectors,
      espStart,
      espSectors,
      diskId: derivedUuid(o.imageKey, 'gpt-disk'),
      espUuid: derivedUuid(o.imageKey, 'gpt-esp'),
      rootPartUuid: derivedUuid(o.imageKey, 'gpt-root'),
      fatId: derivedHex(o.imageKey, 'fat-serial', 8),
      grubTarget: efi.target,
      efiName: efi.name,
      efiFallback: efi.fallback,
    };
  }
  throw new UserError(
    `${o.configKey}: the chroot builder installs extlinux (BIOS) or grub-efi (UEFI), not bootloader ${o.bootloader}`,
  );
}

/** The disk plan as the environment of libexec/chroot-build disk. */
export function diskEnv(p: DiskPlan): Record<string, string> {
  const env: Record<string, string> = {
    LAYOUT: p.layout,
    DISK_SECTORS: String(p.diskSectors),
    ROOT_START: String(p.rootStart),
    ROOT_SECTORS: String(p.rootSectors),
    ROOT_UUID: p.rootUuid,
    HASH_SEED: p.hashSeed,
    DISK_ID: p.diskId,
  };
  if (p.layout === 'uefi') {
    Object.assign(env, {
      ESP_START: String(p.espStart),
      ESP_SECTORS: String(p.espSectors),
      ESP_UUID: p.espUuid,
      ROOT_PARTUUID: p.rootPartUuid,
      FAT_ID: p.fatId,
      GRUB_TARGET: p.grubTarget,
      EFI_NAME: p.efiName,
      EFI_FALLBACK: p.efiFallback,
    });
  }
  return env;
}

/** `export NAME='value'` lines (single quotes escaped) for the scripts' environment file. */
export function envFile(vars: readonly string[]): string {
  return `${vars
    .map((kv) => {
      const i = kv.indexOf('=');
      const name = kv.slice(0, i);
      const value = kv.slice(i + 1).replaceAll("'", `'"'"'`);
      return `export ${name}='${value}'`;
    })
    .join('\n')}\n`;
}
