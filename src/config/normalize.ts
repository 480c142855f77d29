// Normalisation: turn one merged variant into the flat, Packer-ready shape alpine-cloud-images writes to
// images.yaml (same field names, same value formats), checking the type of every setting on the way.

import { isSafeNameTemplate, SAFE_NAME_RULE } from '../util/safe-name.js';
import { ConfigError, throwErrors } from './errors.js';
import { flat, parseRepos } from './flat.js';
import { formatTemplate, type Lookup, MISSING, PlaceholderError } from './format.js';
import { deepClone, isPlainObject, type PlainObject } from './merge.js';
import type { Location } from './source.js';
import {
  IMAGE_COMPRESSIONS,
  IMAGE_FORMATS,
  type ImageConfig,
  type PackageLists,
  type ServiceLists,
} from './types.js';

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
/** a script or script directory of work/scripts: a plain name (no path, so never a way out of it) */
const isScriptList = listOf(
  (v) => isNonEmptyString(v) && !(v as string).includes('/') && !(v as string).includes('..') && v !== '.',
);
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
const REPO_MARK = /^[#@]/;
/** a name that stays one word in the original's joined strings (no whitespace, none of `extra`) */
const isWord = (extra = ''): Check => {
  const bad = new RegExp(`[\\s${extra}]`);
  return (v) => typeof v === 'string' && v !== '' && !bad.test(v);
};
const isPlainWord = isWord();
const keysAre =
  (ok: Check, values: Check): Check =>
  (v) => {
    if (!isPlainObject(v)) return false;
    for (const k in v) if (!ok(k) || !values(v[k])) return false;
    return true;
  };
const isRepoUrl: Check = (v) => isPlainWord(v) && !REPO_MARK.test(v as string);
const isRepoMap = keysAre(isRepoUrl, (x) => isBoolOrNull(x) || isPlainWord(x));
const isRepos: Check = (v) => v === null || isRepoMap(v);
const isPackageValue: Check = (v) => {
  if (typeof v !== 'string') return isBoolOrNull(v);
  const tag = v.replace('--no-scripts', '').trim();
  return tag === '' || isPlainWord(tag);
};
const isPackageMap = keysAre(isWord('@'), isPackageValue);
const isPackages: Check = (v) => v === null || isPackageMap(v);
const isServiceName = isWord(',=');
const isRunlevel = keysAre(isServiceName, isBoolOrNull);
const isServiceMap = keysAre(isServiceName, (lvl) => lvl === null || isRunlevel(lvl));
const isServices: Check = (v) => v === null || isServiceMap(v);
const isModuleMap = keysAre(isWord(','), isBoolOrNull);
const isModules: Check = (v) => v === null || isModuleMap(v);
const isTimeout: Check = (v) => v === null || (Number.isInteger(v) && (v as number) >= 0);

/** [key, check, what is expected, required] for the settings later steps read as they are */
const SETTINGS: readonly (readonly [string, Check, string, boolean?])[] = [
  ['arch', isNonEmptyString, 'a string (set by the arch dimension)', true],
  ['cloud', isNonEmptyString, 'a string (set by the cloud dimension)', true],
  ['project', isNonEmptyString, 'a non-empty string identifying your images', true],
  ['image_format', isImageFormat, `one of ${IMAGE_FORMATS.join(', ')}`, true],
  ['image_format_opts', isStringOrNull, 'a string such as "vhd/force-size", or null'],
  ['image_compress', isImageCompress, `null or one of ${IMAGE_COMPRESSIONS.join(', ')}`],
  ['login', isNonEmptyString, 'a user name'],
  ['scripts', isScriptList, 'a list of script names (files of work/scripts: no "/", no "..")'],
  ['script_dirs', isScriptList, 'a list of directory names (in work/scripts: no "/", no "..")'],
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
  ['end_of_life', isNonEmptyString, 'a date (YYYY-MM-DD)', true],
  ['qemu', isMapOrNull, 'a map (machine_type, args, firmware)'],
  ['name', isNameParts, `a list of name parts, each ${SAFE_NAME_RULE} and {placeholders}`, true],
  ['description', isPartList, 'a list of description parts'],
  ['repo_keys', isRepoKeys, 'a list of repository key URLs or files'],
  ['disk_size', isDiskSize, 'a list of whole numbers (MiB) that add up to the disk size', true],
  ['motd', isMotd, 'a map of message name to text, list of lines, or null'],
  ['storage_url', isStringOrNull, 'a URL (file://, ssh://, s3://, https://)'],
  ['download_url', isStringOrNull, 'a URL (file://, ssh://, s3://, https://)'],
  ['repos', isRepos, 'a map of repository URL (one word) to true, false, null or a tag (one word)'],
  [
    'packages',
    isPackages,
    'a map of package name (one word, no @) to true, false, null, a tag or "--no-scripts [tag]"',
  ],
  [
    'services',
    isServices,
    'a map of runlevel to a map of service to true, false or null (names: one word, no , or =)',
  ],
  ['kernel_modules', isModules, 'a map of module name (one word, no comma) to true, false or null'],
  ['kernel_options', isFlagMapOrNull, 'a map of name to true, false or null'],
  ['initfs_features', isFlagMapOrNull, 'a map of name to true, false or null'],
  // read by the setup scripts (src/local/variant.ts scriptEnvironment)
  ['bootloader_timeout', isTimeout, 'a whole number of seconds, or null'],
  ['ntp_server', isStringOrNull, 'a host name or address, "" or null (the default)'],
  // display names on release pages (src/release/catalog.ts)
  ['cloud_name', isStringOrNull, 'a display name, or null'],
  ['arch_name', isStringOrNull, 'a display name, or null'],
  ['firmware_name', isStringOrNull, 'a display name, or null'],
  ['bootstrap_name', isStringOrNull, 'a display name, or null'],
  ['machine_name', isStringOrNull, 'a display name, or null'],
  // console link templates of release pages (a cloud plugin may check more)
  ['cloud_region_url', isStringOrNull, 'a URL template ({region}, {image_id}), or null'],
  ['cloud_launch_url', isStringOrNull, 'a URL template ({region}, {image_id}), or null'],
];

const QEMU_SETTINGS: readonly (readonly [string, Check, string])[] = [
  ['machine_type', isStringOrNull, 'a string such as "virt", or null'],
  ['firmware', isStringOrNull, 'a path to UEFI firmware, or null'],
  ['args', isQemuArgs, 'a list of lists of arguments, or null'],
  ['cdrom_interface', isStringOrNull, 'a QEMU disk interface such as "virtio-scsi", or null'],
  ['boot_kernel', isStringOrNull, 'a kernel path inside the ISO, or null'],
  ['boot_initrd', isStringOrNull, 'an initrd path inside the ISO, or null'],
  ['boot_cmdline', isStringOrNull, 'a kernel command line, or null'],
];

function vVersion(version: unknown): string {
  return version === 'edge' ? 'edge' : `v${String(version)}`;
}

/** settings normaliseVariant makes anew (not shared with the config tree) */
const FRESH = new Set([
  'repo_keys',
  'repos',
  'packages',
  'services',
  'kernel_modules',
  'kernel_options',
  'initfs_features',
]);

const SPACE = /\s/;
const SPACES = /\s+/;

/** The keys set to true, each split into its space-separated words. */
function wordsWhereTrue(m: PlainObject): string[] {
  const out: string[] = [];
  for (const k in m) {
    if (m[k] !== true) continue;
    if (!SPACE.test(k)) out.push(k);
    else for (const w of k.split(SPACES)) if (w) out.push(w);
  }
  return out;
}

function keysWhere(m: PlainObject, want: unknown): string[] {
  const out: string[] = [];
  for (const k in m) if (m[k] === want) out.push(k);
  return out;
}

/** settings whose typed value is not their merged form (their read-back is checked by the images.yaml reader) */
const CONVERTED = new Set(['name', 'description', 'disk_size', 'motd', ...FRESH]);
const READ_BACK: readonly (readonly [string, Check, string])[] = [
  ...SETTINGS.filter(([k]) => !CONVERTED.has(k)).map(([k, ok, expected]) => [k, ok, expected] as const),
  ['name', isString, 'the image name (text)'],
  ['description', isString, 'text'],
  ['motd', isString, 'text'],
];

/**
 * The problems of one variant read back from an images.yaml (that may have been edited by hand): the type of every
 * setting it holds, as `configs` checks them (a missing one is left to the step that needs it).
 */
export function checkReadBack(fields: Readonly<Record<string, unknown>>): string[] {
  const out: string[] = [];
  const bad = (key: string, expected: string, v: unknown) =>
    out.push(`${key}: expected ${expected}, got ${JSON.stringify(v)}`);
  for (const [key, ok, expected] of READ_BACK) {
    if (Object.hasOwn(fields, key) && !ok(fields[key])) bad(key, expected, fields[key]);
  }
  const qemu = fields.qemu;
  if (isPlainObject(qemu)) {
    for (const [key, ok, expected] of QEMU_SETTINGS) {
      if (Object.hasOwn(qemu, key) && !ok(qemu[key])) bad(`qemu.${key}`, expected, qemu[key]);
    }
  }
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
  // v_version and work_dir; repo_keys and disk_size (made typed first) as the original's images.yaml shows them
  const repoKeys = ((cfg.repo_keys as string[] | null | undefined) ?? []).slice();
  const diskMiB = (cfg.disk_size as number[]).reduce((a, b) => a + b, 0);
  const extra: Record<string, string> = {
    v_version: vVersion(cfg.version),
    work_dir: ctx.workDir,
    repo_keys: flat.words(repoKeys),
    disk_size: flat.diskSize(diskMiB),
  };
  const lookup: Lookup = (name) =>
    Object.hasOwn(extra, name) ? extra[name] : Object.hasOwn(cfg, name) ? cfg[name] : MISSING;
  const fill = (key: string, template: string, using: Lookup = lookup): string => {
    try {
      return formatTemplate(template, using);
    } catch (err) {
      if (!(err instanceof PlaceholderError)) throw err;
      const known = [...new Set([...Object.keys(cfg), ...Object.keys(extra)])]
        .filter((k) => {
          const v = lookup(k);
          return v === null || typeof v !== 'object';
        })
        .sort();
      throw new ConfigError(`${err.message} (known: ${known.join(', ')})`, {
        variant: ctx.variant,
        key,
        location: ctx.locate(key.split('.')),
      });
    }
  };

  // ---- the normalisation alpine-cloud-images does, in its order (into typed lists and maps) ----
  cfg.name = (cfg.name as unknown[]).map(String).join('-');
  cfg.description = ((cfg.description as unknown[] | undefined) ?? []).map(String).join(' ');
  cfg.repo_keys = repoKeys;
  cfg.disk_size = diskMiB;

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

  // repos: URL -> true (enabled), false (commented out), null (left out), "tag" (enabled as @tag); the
  // placeholders are filled in the /etc/apk/repositories text, as the original does, which is then read back
  // into its entries (the names are one word, so it reads back exactly)
  const repos: string[] = [];
  const repoMap = isPlainObject(cfg.repos) ? cfg.repos : {};
  for (const url in repoMap) {
    const v = repoMap[url];
    if (typeof v === 'string') repos.push(`@${v} ${url}`);
    else if (v === false) repos.push(`#${url}`);
    else if (v === true) repos.push(url);
  }
  cfg.repos = parseRepos(fill('repos', repos.join('\n')));

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
  const packages: PackageLists = { add, del, noscripts };
  cfg.packages = packages;

  // services: runlevel -> service -> true (enable), false (disable), null (neither)
  const enable: Record<string, string[]> = {};
  const disable: Record<string, string[]> = {};
  const svcMap = isPlainObject(cfg.services) ? cfg.services : {};
  for (const lvl in svcMap) {
    const svcs = svcMap[lvl];
    if (!isPlainObject(svcs)) continue;
    const on = keysWhere(svcs, true);
    const off = keysWhere(svcs, false);
    if (on.length) enable[lvl] = on;
    if (off.length) disable[lvl] = off;
  }
  const services: ServiceLists = { enable, disable };
  cfg.services = services;

  cfg.kernel_modules = keysWhere(isPlainObject(cfg.kernel_modules) ? cfg.kernel_modules : {}, true);
  // (a kernel option or initfs feature key may hold several, space-separated)
  cfg.kernel_options = wordsWhereTrue(isPlainObject(cfg.kernel_options) ? cfg.kernel_options : {});
  cfg.initfs_features = wordsWhereTrue(isPlainObject(cfg.initfs_features) ? cfg.initfs_features : {});

  qemu.iso_url = ctx.isoUrl(cfg.arch as string);
  // nothing in the result is shared with the config tree or other variants (the typed lists are new)
  for (const k of Object.keys(cfg)) {
    const v = cfg[k];
    if (v !== null && typeof v === 'object' && !FRESH.has(k)) cfg[k] = deepClone(v);
  }
  return cfg as unknown as ImageConfig;
}
