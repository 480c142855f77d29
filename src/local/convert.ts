// After Packer: convert work/images/<cloud>/<key>/image.qcow2 to the variant's image_format, compress it per
// image_compress, and write the sha512 checksum of what gets uploaded. Every output is written to a temporary
// name and renamed into place, so an interrupted run never leaves a truncated image under its final name.
import { link, mkdtemp, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { execa } from 'execa';
import { UserError } from '../util/errors.js';
import { hashFile, writeFileAtomic } from '../util/fs.js';

/** image_format -> qemu-img output format; 'qcow2' is a hard link, 'raw.tar.gz' a GCP-style archive. */
export const IMAGE_FORMATS: Readonly<Record<string, string>> = {
  qcow2: 'qcow2',
  vhd: 'vpc',
  vhdx: 'vhdx',
  vmdk: 'vmdk',
  raw: 'raw',
  'raw.tar.gz': 'raw',
};

/** image_format_opts presets (alpine-cloud-images names) -> qemu-img -o value. */
export const FORMAT_OPTS: Readonly<Record<string, string>> = {
  'vhd/fixed_force-size': 'subformat=fixed,force_size=on',
  'vhd/force-size': 'force_size=on',
  'vhd/fixed': 'subformat=fixed',
};

export const COMPRESSORS: Readonly<Record<string, { cmd: string; args: string[] }>> = {
  gz: { cmd: 'gzip', args: ['-c', '-n', '-6'] },
  bz2: { cmd: 'bzip2', args: ['-c', '-9'] },
  xz: { cmd: 'xz', args: ['-c', '-T0', '-6'] },
  zstd: { cmd: 'zstd', args: ['-c', '-q', '-T0', '-10'] },
};

/** A command runner that records what it runs (into the variant's build.log). */
export type Runner = (cmd: string, args: readonly string[]) => Promise<void>;

export interface ConvertTarget {
  configKey: string;
  /** Packer output (qcow2) */
  source: string;
  format: string;
  formatOpts?: string | null;
  compress?: string | null;
  /** <name>.<format> */
  imagePath: string;
  /** what is uploaded (compressed when asked) */
  uploadPath: string;
}

/** The `-o` value for qemu-img from image_format_opts (a preset name or literal key=value,... options). */
export function convertOptions(
  format: string,
  opts: string | null | undefined,
  key: string,
): string | undefined {
  if (opts === undefined || opts === null || opts === '') return undefined;
  const preset = FORMAT_OPTS[opts];
  if (preset) {
    const presetFormat = opts.split('/')[0];
    if (presetFormat !== format) {
      throw new UserError(`${key}: image_format_opts "${opts}" is for ${presetFormat} images, not ${format}`);
    }
    return preset;
  }
  if (/^[a-z0-9_]+(=[A-Za-z0-9_.-]+)?(,[a-z0-9_]+(=[A-Za-z0-9_.-]+)?)*$/.test(opts)) return opts;
  throw new UserError(
    `${key}: image_format_opts "${opts}" is neither a preset (${Object.keys(FORMAT_OPTS).join(', ')}) nor qemu-img options like "subformat=fixed,force_size=on"`,
  );
}

/** Check a variant's image_format / image_format_opts / image_compress before anything is built. */
export function checkOutputSettings(
  t: Pick<ConvertTarget, 'configKey' | 'format' | 'formatOpts' | 'compress'>,
): void {
  if (!IMAGE_FORMATS[t.format]) {
    throw new UserError(
      `${t.configKey}: image_format "${t.format}" is not supported (expected one of ${Object.keys(IMAGE_FORMATS).join(', ')})`,
    );
  }
  if (t.format !== 'qcow2' && t.format !== 'raw.tar.gz') convertOptions(t.format, t.formatOpts, t.configKey);
  else if (t.formatOpts)
    throw new UserError(`${t.configKey}: image_format_opts is not used for ${t.format} images`);
  if (t.compress && t.compress !== 'tar.gz' && !COMPRESSORS[t.compress]) {
    throw new UserError(
      `${t.configKey}: image_compress "${t.compress}" is not supported (expected one of ${[...Object.keys(COMPRESSORS), 'tar.gz'].join(', ')})`,
    );
  }
  if (t.compress && t.format === 'raw.tar.gz') {
    throw new UserError(`${t.configKey}: image_format raw.tar.gz is already compressed; drop image_compress`);
  }
}

/** Round a byte size up to whole GiB (GCP requires raw disks of a whole number of GiB). */
export function roundUpGiB(bytes: number): number {
  const gib = 1024 ** 3;
  return Math.max(1, Math.ceil(bytes / gib)) * gib;
}

async function virtualSize(path: string, format: string): Promise<number> {
  const r = await execa('qemu-img', ['info', '--output=json', '-f', format, path]);
  const info = JSON.parse(r.stdout) as { 'virtual-size': number };
  return info['virtual-size'];
}

/** A GCP-style archive: `disk.raw` (whole GiB, sparse) in an old-GNU-format tar.gz. */
async function rawTarGz(source: string, dest: string, run: Runner): Promise<void> {
  const dir = await mkdtemp(join(dirname(dest), '.disk-'));
  try {
    const raw = join(dir, 'disk.raw');
    await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', source, raw]);
    const size = await virtualSize(raw, 'raw');
    const want = roundUpGiB(size);
    if (want !== size) await run('qemu-img', ['resize', '-f', 'raw', raw, String(want)]);
    await run('tar', ['--format=oldgnu', '-S', '-czf', dest, '-C', dir, 'disk.raw']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function tmpName(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
}

/** Convert the Packer output to image_format at imagePath. */
export async function convertImage(t: ConvertTarget, run: Runner): Promise<void> {
  const tmp = tmpName(t.imagePath);
  await rm(tmp, { force: true });
  try {
    if (t.format === 'qcow2') {
      await link(t.source, tmp);
    } else if (t.format === 'raw.tar.gz') {
      await rawTarGz(t.source, tmp, run);
    } else {
      const out = IMAGE_FORMATS[t.format];
      if (!out) throw new UserError(`${t.configKey}: image_format "${t.format}" is not supported`);
      const o = convertOptions(t.format, t.formatOpts, t.configKey);
      await run('qemu-img', ['convert', '-f', 'qcow2', '-O', out, ...(o ? ['-o', o] : []), t.source, tmp]);
    }
    await rename(tmp, t.imagePath);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Compress imagePath to uploadPath per image_compress (nothing to do without it). */
export async function compressImage(t: ConvertTarget, run: Runner): Promise<void> {
  if (!t.compress || t.uploadPath === t.imagePath) return;
  const tmp = tmpName(t.uploadPath);
  await rm(tmp, { force: true });
  try {
    if (t.compress === 'tar.gz') {
      await rawTarGz(t.source, tmp, run);
    } else {
      const c = COMPRESSORS[t.compress];
      if (!c) throw new UserError(`${t.configKey}: image_compress "${t.compress}" is not supported`);
      await run('sh', ['-c', `${c.cmd} ${c.args.join(' ')} -- "$1" > "$2"`, 'compress', t.imagePath, tmp]);
    }
    await rename(tmp, t.uploadPath);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Write <uploadPath>.sha512 ("<hex>  <file>", as sha512sum writes it); returns the digest. */
export async function writeChecksum(uploadPath: string): Promise<string> {
  const digest = await hashFile(uploadPath, 'sha512');
  await writeFileAtomic(`${uploadPath}.sha512`, `${digest}  ${basename(uploadPath)}\n`);
  return digest;
}

/** Convert, compress and checksum; returns the sha512 and the upload file's size. */
export async function finishImage(t: ConvertTarget, run: Runner): Promise<{ sha512: string; bytes: number }> {
  await convertImage(t, run);
  await compressImage(t, run);
  const sha512 = await writeChecksum(t.uploadPath);
  return { sha512, bytes: (await stat(t.uploadPath)).size };
}
