// Normalisation: turn one merged variant into the flat, Packer-ready shape alpine-cloud-images writes to
// images.yaml (same field names, same value formats), checking the type of every setting on the way.

import { ConfigError } from './errors.js';
import { formatTemplate, PlaceholderError } from './format.js';
import { isPlainObject, type PlainObject } from './merge.js';
import type { Location } from './source.js';
import type { ImageConfig } from './types.js';

export const IMAGE_FORMATS = ['qcow2', 'vhd', 'raw', 'raw.tar.gz'] as const;
export const IMAGE_COMPRESSIONS = ['bz2', 'gz', 'xz', 'zstd', 'tar.gz'] as const;

export interface NormaliseContext {
  readonly variant: string;
  /** where `path` was last set among the layers merged into this variant (optionally: to a bad value) */
  readonly locate: (path: readonly string[], isBad?: (v: unknown) => boolean) => Location | undefined;
  readonly workDir: string;
  readonly isoUrl: (arch: string) => string;
}

type Check = (v: unknown) => boolean;

const isString: Check = (v) => typeof v === 'string';
const isNonEmptyString: Check = (v) => typeof v === 'string' && v.length > 0;
const isStringOrNull: Check = (v) => v === null || typeof v === 'string';
const isBoolOrNull: Check = (v) => v === null || typeof v === 'boolean';
const isScalarText: Check = (v) => typeof v === 'string' || typeof v === 'number';
const listOf =
  (item: Check): Check =>
  (v) =>
    Array.isArray(v) && v.every(item);
const mapOf =
  (item: Check): Check =>
  (v) =>
    isPlainObject(v) && Object.values(v).every(item);

function vVersion(version: unknown): string {
  return version === 'edge' ? 'edge' : `v${String(version)}`;
}

export function normaliseVariant(cfg: PlainObject, ctx: NormaliseContext): ImageConfig {
  const fail = (key: string, expected: string, got: unknown, isBad?: Check): never => {
    const path = key.split('.');
    throw new ConfigError('', {
      variant: ctx.variant,
      key,
      expected,
      got,
      location: ctx.locate(path, isBad) ?? ctx.locate(path),
    });
  };
  /** check cfg[key] (when present, or always when required) */
  const check = (key: string, ok: Check, expected: string, required = false): void => {
    if (!Object.hasOwn(cfg, key)) {
      if (required) fail(key, `${expected} (it is not set)`, undefined);
      return;
    }
    if (!ok(cfg[key])) fail(key, expected, cfg[key], (v) => !ok(v));
  };
  const placeholders = (key: string, template: string, values: Record<string, unknown>): string => {
    try {
      return formatTemplate(template, values);
    } catch (err) {
      if (!(err instanceof PlaceholderError)) throw err;
      const known = Object.keys(values)
        .filter((k) => values[k] === null || typeof values[k] !== 'object')
        .sort();
      throw new ConfigError(`${err.message} (known: ${known.join(', ')})`, {
        variant: ctx.variant,
        key,
        location: ctx.locate(key.split('.')),
      });
    }
  };

  // ---- settings later steps read as they are ----
  check('arch', isNonEmptyString, 'a string (set by the arch dimension)', true);
  check('cloud', isNonEmptyString, 'a string (set by the cloud dimension)', true);
  check('project', isNonEmptyString, 'a non-empty string identifying your images', true);
  check(
    'image_format',
    (v) => (IMAGE_FORMATS as readonly unknown[]).includes(v),
    `one of ${IMAGE_FORMATS.join(', ')}`,
    true,
  );
  check('image_format_opts', isStringOrNull, 'a string such as "vhd/force-size", or null');
  check(
    'image_compress',
    (v) => v === null || (IMAGE_COMPRESSIONS as readonly unknown[]).includes(v),
    `null or one of ${IMAGE_COMPRESSIONS.join(', ')}`,
  );
  check('login', isNonEmptyString, 'a user name');
  check('scripts', listOf(isNonEmptyString), 'a list of script names (files in work/scripts)');
  check('script_dirs', listOf(isNonEmptyString), 'a list of directory names (in work/scripts)');
  check('bootloader', isStringOrNull, 'a string such as "extlinux" or "grub-efi"');
  check('access', mapOf(isBoolOrNull), 'a map of account (or PUBLIC) to true/false/null');
  check('regions', mapOf(isBoolOrNull), 'a map of region (or ALL) to true/false/null');
  check(
    'encrypted',
    (v) => v === null || typeof v === 'boolean' || typeof v === 'string',
    'true, false or a key id',
  );
  for (const k of ['signing_cmd', 'signing_key', 'signing_passphrase_env', 'release_cmd', 'catalog_dir']) {
    check(k, isStringOrNull, 'a string or null');
  }
  check('end_of_life', isStringOrNull, 'a date (YYYY-MM-DD)');
  check('qemu', (v) => v === null || isPlainObject(v), 'a map (machine_type, args, firmware)');
  if (!isPlainObject(cfg.qemu)) cfg.qemu = {};
  const qemu = cfg.qemu as PlainObject;
  const qcheck = (k: string, ok: Check, expected: string) => {
    if (Object.hasOwn(qemu, k) && !ok(qemu[k])) fail(`qemu.${k}`, expected, qemu[k], (v) => !ok(v));
  };
  qcheck('machine_type', isStringOrNull, 'a string such as "virt", or null');
  qcheck('firmware', isStringOrNull, 'a path to UEFI firmware, or null');
  qcheck(
    'args',
    (v) => v === null || listOf(listOf(isScalarText))(v),
    'a list of lists of arguments, or null',
  );

  // ---- the normalisation alpine-cloud-images does, in its order ----
  check('name', listOf(isScalarText), 'a list of name parts', true);
  cfg.name = (cfg.name as unknown[]).map(String).join('-');

  check('description', listOf(isScalarText), 'a list of description parts');
  cfg.description = ((cfg.description as unknown[] | undefined) ?? []).map(String).join(' ');

  check(
    'repo_keys',
    (v) => v === null || listOf(isNonEmptyString)(v),
    'a list of repository key URLs or files',
  );
  cfg.repo_keys = ((cfg.repo_keys as string[] | null | undefined) ?? []).join(' ');

  check(
    'disk_size',
    (v) => Array.isArray(v) && v.length > 0 && v.every((x) => Number.isInteger(x) && (x as number) >= 0),
    'a list of whole numbers (MiB) that add up to the disk size',
    true,
  );
  cfg.disk_size = `${(cfg.disk_size as number[]).reduce((a, b) => a + b, 0)}M`;

  // the values placeholders are filled from: every setting as it is at that point (as Python's self.__dict__),
  // plus v_version and work_dir; kept up to date below as settings are normalised
  const values: Record<string, unknown> = { ...cfg, v_version: vVersion(cfg.version), work_dir: ctx.workDir };

  // motd: map of message name -> text or list of lines (null drops it)
  check(
    'motd',
    (v) => v === null || mapOf((x) => x === null || isString(x) || listOf(isString)(x))(v),
    'a map of message name to text, list of lines, or null',
  );
  const motd = isPlainObject(cfg.motd) ? { ...cfg.motd } : {};
  if (!Object.hasOwn(motd, 'release_notes') || !cfg.release_notes) delete motd.release_notes;
  const messages: string[] = [];
  for (const v of Object.values(motd)) {
    if (v === null || v === undefined) continue;
    messages.push(Array.isArray(v) ? v.join('\n') : String(v));
  }
  cfg.motd = placeholders('motd', messages.join('\n\n'), values);
  values.motd = cfg.motd;

  for (const key of ['storage_url', 'download_url'] as const) {
    check(key, isStringOrNull, 'a URL (file://, ssh://, s3://, https://)');
    if (typeof cfg[key] === 'string') values[key] = cfg[key] = placeholders(key, cfg[key] as string, values);
  }
  if (typeof qemu.firmware === 'string') {
    qemu.firmware = placeholders('qemu.firmware', qemu.firmware, { work_dir: ctx.workDir });
  }

  // repos: URL -> true (enabled), false (commented out), null (left out), "tag" (enabled as @tag)
  check(
    'repos',
    (v) => v === null || mapOf((x) => isBoolOrNull(x) || isNonEmptyString(x))(v),
    'a map of repository URL to true, false, null or a tag',
  );
  const repos: string[] = [];
  for (const [url, v] of Object.entries(isPlainObject(cfg.repos) ? cfg.repos : {})) {
    if (typeof v === 'string') repos.push(`@${v} ${url}`);
    else if (v === false) repos.push(`#${url}`);
    else if (v === true) repos.push(url);
  }
  cfg.repos = placeholders('repos', repos.join('\n'), values);

  // packages: name -> true (add), false (delete), null (neither), "tag", "--no-scripts", "--no-scripts tag"
  check(
    'packages',
    (v) => v === null || mapOf((x) => isBoolOrNull(x) || isString(x))(v),
    'a map of package name to true, false, null, a tag or "--no-scripts [tag]"',
  );
  const pkgs = { add: [] as string[], del: [] as string[], noscripts: [] as string[] };
  for (const [name, v] of Object.entries(isPlainObject(cfg.packages) ? cfg.packages : {})) {
    if (v === null) continue;
    if (v === false) {
      pkgs.del.push(name);
    } else if (typeof v === 'string') {
      const noscripts = v.includes('--no-scripts');
      const tag = v.replace('--no-scripts', '').trim();
      (noscripts ? pkgs.noscripts : pkgs.add).push(tag ? `${name}@${tag}` : name);
    } else {
      pkgs.add.push(name);
    }
  }
  cfg.packages = { add: pkgs.add.join(' '), del: pkgs.del.join(' '), noscripts: pkgs.noscripts.join(' ') };

  // services: runlevel -> service -> true (enable), false (disable), null (neither)
  check(
    'services',
    (v) => v === null || mapOf((lvl) => lvl === null || mapOf(isBoolOrNull)(lvl))(v),
    'a map of runlevel to a map of service to true, false or null',
  );
  const enable: string[] = [];
  const disable: string[] = [];
  for (const [lvl, svcs] of Object.entries(isPlainObject(cfg.services) ? cfg.services : {})) {
    if (!isPlainObject(svcs)) continue;
    const on = Object.keys(svcs).filter((s) => svcs[s] === true);
    const off = Object.keys(svcs).filter((s) => svcs[s] === false);
    if (on.length) enable.push(`${lvl}=${on.join(',')}`);
    if (off.length) disable.push(`${lvl}=${off.join(',')}`);
  }
  cfg.services = { enable: enable.join(' '), disable: disable.join(' ') };

  for (const [key, sep] of [
    ['kernel_modules', ','],
    ['kernel_options', ' '],
    ['initfs_features', ' '],
  ] as const) {
    check(key, (v) => v === null || mapOf(isBoolOrNull)(v), 'a map of name to true, false or null');
    const m = isPlainObject(cfg[key]) ? (cfg[key] as PlainObject) : {};
    cfg[key] = Object.keys(m)
      .filter((k) => m[k] === true)
      .join(sep);
  }

  qemu.iso_url = ctx.isoUrl(cfg.arch as string);
  return cfg as unknown as ImageConfig;
}
