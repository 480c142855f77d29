// What one Packer run gets: the variant's settings as JSON (read by packer/alpine.pkr.hcl) and the
// environment of its setup scripts. Pure functions of the resolved image config, so they are unit-tested.
import { readFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { flat } from '../config/flat.js';
import type { QemuSettings } from '../config/types.js';
import type { Image } from '../state/image.js';
import { UserError } from '../util/errors.js';
import { restoreCredentials } from '../util/redact.js';

/** The JSON document packer/alpine.pkr.hcl reads through var.variant_file. */
export interface PackerVariant {
  name: string;
  arch: string;
  qemu_binary: string;
  machine_type: string | null;
  qemuargs: string[][];
  cdrom_interface: string | null;
  iso_path: string;
  iso_checksum: string;
  output_directory: string;
  /** Packer's http_directory: the builder's apkovl */
  http_directory: string;
  /** the one-time private key root logs in with */
  ssh_key_file: string;
  disk_size: string;
  accelerator: string;
  cpus: number;
  script_dirs: string[];
  scripts: string[];
  environment: string[];
}

/** The bootloader a variant installs: its `bootloader` setting, else grub-efi for UEFI and extlinux for BIOS. */
export function bootloaderOf(image: Image): string {
  const c = image.config;
  return c.bootloader || (c.firmware === 'uefi' ? 'grub-efi' : 'extlinux');
}

/**
 * KEY=VALUE settings for the setup scripts (the same names and value formats alpine-cloud-images passes): the one
 * place the typed lists become the original's joined strings for a builder (flat, shared with images.yaml).
 * Values may hold newlines (MOTD, REPOS); Packer writes them to an env file with proper quoting.
 */
export function scriptEnvironment(
  image: Image,
  debug: boolean,
  credentialUrls: readonly string[] = [],
): string[] {
  const c = image.config;
  const env: [string, string | number | null | undefined][] = [
    ['DEBUG', debug ? '1' : '0'],
    ['ARCH', c.arch],
    ['BOOTLOADER', bootloaderOf(image)],
    ['BOOTSTRAP', c.bootstrap],
    ['BUILD_NAME', image.imageName],
    ['BUILD_REVISION', image.revision],
    ['CLOUD', c.cloud],
    ['END_OF_LIFE', c.end_of_life],
    ['FIRMWARE', c.firmware],
    ['IMAGE_LOGIN', c.login],
    ['INITFS_FEATURES', flat.words(c.initfs_features)],
    ['KERNEL_MODULES', flat.commas(c.kernel_modules)],
    ['KERNEL_OPTIONS', flat.words(c.kernel_options)],
    ['MOTD', c.motd],
    ['NTP_SERVER', c.ntp_server],
    ['PACKAGES_ADD', flat.words(c.packages.add)],
    ['PACKAGES_DEL', flat.words(c.packages.del)],
    ['PACKAGES_NOSCRIPTS', flat.words(c.packages.noscripts)],
    ['RELEASE', c.release],
    ['REPOS', restoreCredentials(flat.repos(c.repos), credentialUrls)],
    ['REPO_KEYS', flat.words(c.repo_keys)],
    ['SERVICES_ENABLE', flat.services(c.services.enable)],
    ['SERVICES_DISABLE', flat.services(c.services.disable)],
    ['VERSION', c.version],
  ];
  if (c.bootloader_timeout !== undefined && c.bootloader_timeout !== null) {
    env.push(['BOOTLOADER_TIMEOUT', c.bootloader_timeout]);
  }
  return env.map(([name, v]) => `${name}=${v ?? ''}`);
}

/** disk_size (MiB) as Packer wants it ("1024M"). */
export function diskSize(mib: number, configKey: string): string {
  if (Number.isInteger(mib) && mib > 0) return flat.diskSize(mib);
  throw new UserError(`${configKey}: disk_size ${JSON.stringify(mib)} should be a positive number of MiB`);
}

/**
 * qemu.args from the config (checked at `configs`): a list of argument lists, e.g. [["-cpu", "cortex-a57"],
 * ["-m", 1024]], as QEMU's argv (numbers as text).
 */
export function qemuArgs(args: QemuSettings['args']): string[][] {
  return (args ?? []).map((a) => a.map(String));
}

function hasFlag(args: string[][], ...flags: string[]): boolean {
  return args.some((a) => flags.includes(a[0] ?? ''));
}

/** Default vCPUs per builder VM: the host's cores shared by the parallel builds, 1 to 4. */
export function defaultCpus(parallel: number, hostCpus = cpus().length): number {
  return Math.max(1, Math.min(4, Math.floor(hostCpus / Math.max(1, parallel))));
}

export interface VariantInputs {
  image: Image;
  /** work/scripts */
  scriptsDir: string;
  isoPath: string;
  isoChecksum: string;
  outputDir: string;
  accelerator: string;
  cpus: number;
  /** UEFI firmware for -bios (UEFI variants) */
  firmware?: string;
  serialLog: string;
  debug: boolean;
  /** URLs whose credentials work/images.yaml holds redacted (the CDN URL): put back into REPOS */
  credentialUrls?: readonly string[];
  /** direct kernel boot of the builder (-kernel/-initrd/-append), its apkovl and key */
  boot: { qemuargs: string[][]; httpDirectory: string; sshKeyFile: string };
  /** the mirror standing in for Alpine's CDN while building (vm-mirror.ts), as BUILD_CDN */
  buildCdn?: string;
}

export function packerVariant(inp: VariantInputs): PackerVariant {
  const c = inp.image.config;
  const k = c.config_key;
  const args = qemuArgs(c.qemu.args);
  const machine = c.qemu.machine_type || (c.arch === 'aarch64' ? 'virt' : null);
  if (
    inp.firmware &&
    !hasFlag(args, '-bios', '-pflash') &&
    !args.some((a) => a.join(' ').includes('if=pflash'))
  ) {
    args.push(['-bios', inp.firmware]);
  }
  if (!hasFlag(args, '-serial')) args.push(['-serial', `file:${inp.serialLog}`]);
  // direct kernel boot: a -kernel of the config's own wins (with its -initrd/-append)
  if (!hasFlag(args, '-kernel')) args.push(...inp.boot.qemuargs.map((a) => [...a]));
  // entropy for the builder: sshd and key generation do not stall waiting for the kernel's RNG under TCG
  if (!args.some((a) => a[0] === '-device' && a[1]?.startsWith('virtio-rng'))) {
    args.push(['-device', 'virtio-rng-pci']);
  }
  // Packer drops its own -device arguments (except the NIC) once qemuargs has any, so a virtio-scsi CD-ROM
  // needs its controller and device here; otherwise the CD-ROM stays on the machine's default interface
  // (IDE on pc/q35, a read-only virtio disk on virt, which UEFI boots as well)
  const cdrom = c.qemu.cdrom_interface || null;
  if (cdrom === 'virtio-scsi') {
    args.push(['-device', 'virtio-scsi-pci,id=scsi0'], ['-device', 'scsi-cd,bus=scsi0.0,drive=cdrom0']);
  }
  // (names checked at configs: plain names of work/scripts)
  const scripts = c.scripts;
  const dirs = c.script_dirs;
  if (scripts.length === 0) throw new UserError(`${k}: no setup scripts (scripts is empty)`);
  return {
    name: k,
    arch: c.arch,
    qemu_binary: `qemu-system-${c.arch}`,
    machine_type: machine,
    qemuargs: args,
    cdrom_interface: cdrom,
    iso_path: inp.isoPath,
    iso_checksum: inp.isoChecksum,
    output_directory: inp.outputDir,
    http_directory: inp.boot.httpDirectory,
    ssh_key_file: inp.boot.sshKeyFile,
    disk_size: diskSize(c.disk_size, k),
    accelerator: inp.accelerator,
    cpus: inp.cpus,
    script_dirs: dirs.map((d) => join(inp.scriptsDir, d)),
    scripts: scripts.map((s) => join(inp.scriptsDir, s)),
    environment: [
      ...scriptEnvironment(inp.image, inp.debug, inp.credentialUrls),
      ...(inp.buildCdn ? [`BUILD_CDN=${inp.buildCdn}`] : []),
    ],
  };
}

/**
 * The accelerator a --vars file sets, if any (so the KVM probe can be skipped). Reads `accelerator = "..."`
 * from .pkrvars.hcl files and the "accelerator" key of .json files; later files win, as in Packer.
 */
export async function acceleratorFromVarFiles(
  files: readonly string[],
): Promise<{ value: string; file: string } | undefined> {
  let found: { value: string; file: string } | undefined;
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new UserError(`--vars ${file}: ${(err as Error).message}`);
    }
    if (file.endsWith('.json')) {
      try {
        const j = JSON.parse(text) as Record<string, unknown>;
        if (typeof j.accelerator === 'string' && j.accelerator) found = { value: j.accelerator, file };
      } catch (err) {
        throw new UserError(`--vars ${file}: not valid JSON (${(err as Error).message})`);
      }
      continue;
    }
    const m = /^[ \t]*accelerator[ \t]*=[ \t]*"([^"]*)"/m.exec(text);
    if (m?.[1]) found = { value: m[1], file };
  }
  return found;
}
