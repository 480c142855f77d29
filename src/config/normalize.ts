// Normalisation: turn one merged variant into the flat, Packer-ready shape alpine-cloud-images writes to
// images.yaml (same field names, same value formats), checking the type of every setting on the way.

import { isSafeNameTemplate, SAFE_NAME_RULE } from '../util/safe-name.js';
import { ConfigError, throwErrors } from './errors.js';
import { formatTemplate, type Lookup, MISSING, PlaceholderError } from './format.js';
import { deepClone, isPlainObject, type PlainObject } from './merge.js';
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
  (v) => {
    if (!isPlainObject(v)) return false;
    for (const k in v) if (!item(v[k])) return false;
    return true;
  };

// the checks, made once
const isFlagMap = mapOf(isBoolOrNull);
const isFlagMapOrNull: Check = (v) => v === null || isFlagMap(v);
const isNameList = listOf(isNonEmptyString);
const isPartList = listOf(isScalarText);
const isNameParts = listOf((v) => isScalarText(v) && isSafeNameTemplate(String(v)));
const isImageFormat: Check = (v) => (IMAGE_FORMATS as readonly unknown[]).includes(v);
const isImageCompress: Check = (v) => v === null || (IMAGE_COMPRESSIONS as readonly unknown[]).includes(v);
const isEncrypted: Check = (v) => v === null || typeof v === 'boolean' || typeof v === 'string';
const isMapOrNull: Check = (v) => v === null || isPlainObject(v);
const isQemuArgs: Check = (v) => v === null || listOf(isPartList)(v);
const isRepoKeys: Check = (v) => v === null || isNameList(v);
const isDiskSize: Check = (v) =>
  Array.isArray(v) && v.length > 0 && v.every((x) => Number.isInteger(x) && (x as number) >= 0);
const isLines = listOf(isString);
const isMotd: Check = (v) => v === null || mapOf((x) => x === null || isString(x) || isLines(x))(v);
const isRepos: Check = (v) => v === null || mapOf((x) => isBoolOrNull(x) || isNonEmptyString(x))(v);
const isPackages: Check = (v) => v === null || mapOf((x) => isBoolOrNull(x) || isString(x))(v);
const isServices: Check = (v) => v === null || mapOf((lvl) => lvl === null || isFlagMap(lvl))(v);

/** [key, check, what is expected, required] for the settings later steps read as they are */
const SETTINGS: readonly (readonly [string, Check, string, boolean?])[] = [
  ['arch', isNonEmptyString, 'a string (set by the arch dimension)', true],
  ['cloud', isNonEmptyString, 'a string (set by the cloud dimension)', true],
  ['project', isNonEmptyString, 'a non-empty string identifying your images', true],
  ['image_format', isImageFormat, `one of ${IMAGE_FORMATS.join(', ')}`, true],
  ['image_format_opts', isStringOrNull, 'a string such as "vhd/force-size", or null'],
  ['image_compress', isImageCompress, `null or one of ${IMAGE_COMPRESSIONS.join(', ')}`],
  ['login', isNonEmptyString, 'a user name'],
  ['scripts', isNameList, 'a list of script names (files in work/scripts)'],
  ['script_dirs', isNameList, 'a list of directory names (in work/scripts)'],
  ['bootloader', isStringOrNull, 'a string such as "extlinux" or "grub-efi"'],
  [
    'builder',
    (v) => v === null || v === 'chroot' || v === 'vm',
    'chroot, vm, or null (chroot where the host can)',
  ],
  ['access', isFlagMap, 'a map of account (or PUBLIC) to true/false/null'],
  ['regions', isFlagMap, 'a map of region (or ALL) to true/false/null'],
  ['encrypted', isEncrypted, 'true, false or a key id'],
  ['signing_cmd', isStringOrNull, 'a string or null'],
  ['signing_key', isStringOrNull, 'a string or null'],
  ['signing_passphrase_env', isStringOrNull, 'a string or null'],
  ['signing_pubkey', isStringOrNull, 'a string or null'],
  ['release_cmd', isStringOrNull, 'a string or null'],
  ['catalog_dir', isStringOrNull, 'a string or null'],
  ['end_of_life', isStringOrNull, 'a date (YYYY-MM-DD)'],
  ['qemu', isMapOrNull, 'a map (machine_type, args, firmware)'],
  ['name', isNameParts, `a list of name parts, each ${SAFE_NAME_RULE} and {placeholders}`, true],
  ['description', isPartList, 'a list of description parts'],
  ['repo_keys', isRepoKeys, 'a list of repository key URLs or files'],
  ['disk_size', isDiskSize, 'a list of whole numbers (MiB) that add up to the disk size', true],
  ['motd', isMotd, 'a map of message name to text, list of lines, or null'],
  ['storage_url', isStringOrNull, 'a URL (file://, ssh://, s3://, https://)'],
  ['download_url', isStringOrNull, 'a URL (file://, ssh://, s3://, https://)'],
  ['repos', isRepos, 'a map of repository URL to true, false, null or a tag'],
  ['packages', isPackages, 'a map of package name to true, false, null, a tag or "--no-scripts [tag]"'],
  ['services', isServices, 'a map of runlevel to a map of service to true, false or null'],
  ['kernel_modules', isFlagMapOrNull, 'a map of name to true, false or null'],
  ['kernel_options', isFlagMapOrNull, 'a map of name to true, false or null'],
  ['initfs_features', isFlagMapOrNull, 'a map of name to true, false or null'],
];

const QEMU_SETTINGS: readonly (readonly [string, Check, string])[] = [
  ['machine_type', isStringOrNull, 'a string such as "virt", or null'],
  ['firmware', isStringOrNull, 'a path to UEFI firmware, or null'],
  ['args', isQemuArgs, 'a list of lists of arguments, or null'],
];

function vVersion(version: unknown): string {
  return version === 'edge' ? 'edge' : `v${String(version)}`;
}

function keysWhere(m: PlainObject, want: unknown): string[] {
  const out: string[] = [];
  for (const k in m) if (m[k] === want) out.push(k);
  return out;
}

export function normaliseVariant(cfg: PlainObject, ctx: NormaliseContext): ImageConfig {
  // every bad setting of the variant is reported, not only the first
  const errors: ConfigError[] = [];
  const fail = (key: string, expected: string, got: unknown, isBad?: Check): void => {
    const path = key.split('.');
    errors.push(
      new ConfigError('', {
        variant: ctx.variant,
        key,
        expected,
        got,
        location: (isBad && ctx.locate(path, isBad)) || ctx.locate(path),
      }),
    );
  };

  for (const [key, ok, expected, required] of SETTINGS) {
    if (!Object.hasOwn(cfg, key)) {
      if (required) fail(key, `${expected} (it is not set)`, undefined);
      continue;
    }
    if (!ok(cfg[key])) fail(key, expected, cfg[key], (v) => !ok(v));
  }
  // the variant shares values with the config tree until here: qemu is changed below, so it gets its own copy
  const qemu: PlainObject = isPlainObject(cfg.qemu) ? { ...cfg.qemu } : {};
  cfg.qemu = qemu;
  for (const [key, ok, expected] of QEMU_SETTINGS) {
    if (Object.hasOwn(qemu, key) && !ok(qemu[key])) fail(`qemu.${key}`, expected, qemu[key], (v) => !ok(v));
  }
  throwErrors(errors);

  // placeholders are filled from every setting as it is at that moment (as Python's self.__dict__ is), plus
  // v_version and work_dir
  const extra: Record<string, string> = { v_version: vVersion(cfg.version), work_dir: ctx.workDir };
  const lookup: Lookup = (name) =>
    Object.hasOwn(extra, name) ? extra[name] : Object.hasOwn(cfg, name) ? cfg[name] : MISSING;
  const fill = (key: string, template: string, using: Lookup = lookup): string => {
    try {
      return formatTemplate(template, using);
    } catch (err) {
      if (!(err instanceof PlaceholderError)) throw err;
      const known = [...Object.keys(cfg), ...Object.keys(extra)]
        .filter((k) => cfg[k] === null || typeof cfg[k] !== 'object')
        .sort();
      throw new ConfigError(`${err.message} (known: ${known.join(', ')})`, {
        variant: ctx.variant,
        key,
        location: ctx.locate(key.split('.')),
      });
    }
  };

  // ---- the normalisation alpine-cloud-images does, in its order ----
  cfg.name = (cfg.name as unknown[]).map(String).join('-');
  cfg.description = ((cfg.description as unknown[] | undefined) ?? []).map(String).join(' ');
  cfg.repo_keys = ((cfg.repo_keys as string[] | null | undefined) ?? []).join(' ');
  cfg.disk_size = `${(cfg.disk_size as number[]).reduce((a, b) => a + b, 0)}M`;

  // motd: message name -> text or list of lines (null drops it); release notes only when there are some
  const motd = isPlainObject(cfg.motd) ? cfg.motd : {};
  const messages: string[] = [];
  for (const k in motd) {
    const v = motd[k];
    if (v === null || v === undefined) continue;
    if (k === 'release_notes' && !cfg.release_notes) continue;
    messages.push(Array.isArray(v) ? v.join('\n') : String(v));
  }
  cfg.motd = fill('motd', messages.join('\n\n'));

  for (const key of ['storage_url', 'download_url'] as const) {
    if (typeof cfg[key] === 'string') cfg[key] = fill(key, cfg[key] as string);
  }
  if (typeof qemu.firmware === 'string') {
    qemu.firmware = fill('qemu.firmware', qemu.firmware, (n) => (n === 'work_dir' ? ctx.workDir : MISSING));
  }

  // repos: URL -> true (enabled), false (commented out), null (left out), "tag" (enabled as @tag)
  const repos: string[] = [];
  const repoMap = isPlainObject(cfg.repos) ? cfg.repos : {};
  for (const url in repoMap) {
    const v = repoMap[url];
    if (typeof v === 'string') repos.push(`@${v} ${url}`);
    else if (v === false) repos.push(`#${url}`);
    else if (v === true) repos.push(url);
  }
  cfg.repos = fill('repos', repos.join('\n'));

  // packages: name -> true (add), false (delete), null (neither), "tag", "--no-scripts", "--no-scripts tag"
  const add: string[] = [];
  const del: string[] = [];
  const noscripts: string[] = [];
  const pkgMap = isPlainObject(cfg.packages) ? cfg.packages : {};
  for (const name in pkgMap) {
    const v = pkgMap[name];
    if (v === null) continue;
    if (v === false) {
      del.push(name);
    } else if (typeof v === 'string') {
      const quiet = v.includes('--no-scripts');
      const tag = v.replace('--no-scripts', '').trim();
      (quiet ? noscripts : add).push(tag ? `${name}@${tag}` : name);
    } else {
      add.push(name);
    }
  }
  cfg.packages = { add: add.join(' '), del: del.join(' '), noscripts: noscripts.join(' ') };

  // services: runlevel -> service -> true (enable), false (disable), null (neither)
  const enable: string[] = [];
  const disable: string[] = [];
  const svcMap = isPlainObject(cfg.services) ? cfg.services : {};
  for (const lvl in svcMap) {
    const svcs = svcMap[lvl];
    if (!isPlainObject(svcs)) continue;
    const on = keysWhere(svcs, true);
    const off = keysWhere(svcs, false);
    if (on.length) enable.push(`${lvl}=${on.join(',')}`);
    if (off.length) disable.push(`${lvl}=${off.join(',')}`);
  }
  cfg.services = { enable: enable.join(' '), disable: disable.join(' ') };

  cfg.kernel_modules = keysWhere(isPlainObject(cfg.kernel_modules) ? cfg.kernel_modules : {}, true).join(',');
  cfg.kernel_options = keysWhere(isPlainObject(cfg.kernel_options) ? cfg.kernel_options : {}, true).join(' ');
  cfg.initfs_features = keysWhere(isPlainObject(cfg.initfs_features) ? cfg.initfs_features : {}, true).join(
    ' ',
  );

  qemu.iso_url = ctx.isoUrl(cfg.arch as string);
  // nothing in the result is shared with the config tree or other variants (packages and services are new)
  for (const k of Object.keys(cfg)) {
    const v = cfg[k];
    if (v !== null && typeof v === 'object' && k !== 'packages' && k !== 'services') cfg[k] = deepClone(v);
  }
  return cfg as unknown as ImageConfig;
}
