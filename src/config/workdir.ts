// The work directory: work/configs and work/scripts are installed from the repository's configs/ and scripts/,
// then from each --custom DIR's configs/ and scripts/ (in the order given), only when they do not exist yet.
// Installing over an existing file is an error naming both files, except for the top-level selector
// configs/images.yaml or configs/images.conf: a symlink to a file in the same directory, which a later overlay
// may replace (the last one installed selects the top-level config).
//
// Installation is staged in a hidden directory inside work/ and moved into place only when the caller commits,
// so a failed installation (or a failed resolution of what was installed) leaves work/ as it was.
import { randomBytes } from 'node:crypto';
// Synchronous file calls on purpose: installing the overlays is a few dozen small files, which `configs` copies
// while nothing else runs; each asynchronous call is a round trip through the thread pool (about 30 ms of a
// 0.3 s `./build configs` went to waiting for them).
import {
  chmodSync,
  copyFileSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  type Stats,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { rm } from 'node:fs/promises';
import { basename, dirname, join, normalize, relative, resolve } from 'node:path';
import type { Logger } from 'pino';
import { UserError } from '../util/errors.js';
import { isInside, lexistsSync, syncDir } from '../util/fs.js';
import { onInterrupt } from '../util/interrupt.js';

/** What the work directory is made of from the sources. */
export const WORK_OVERLAYS = ['configs', 'scripts'] as const;
export type WorkOverlay = (typeof WORK_OVERLAYS)[number];

/** Top-level config selectors in work/configs (at most one of them should exist). */
export const SELECTORS = ['images.yaml', 'images.conf'] as const;

/**
 * Entries of work/ that --clean keeps: the lock of the running build and caches (downloaded ISOs and boot files,
 * UEFI firmware, Packer's cache and plugins, node tooling, credential caches).
 */
export const WORK_KEEP = [
  '.lock',
  '.cache',
  'cache',
  'boot',
  'iso',
  // the chroot builder's verified minirootfs tarballs and its package cache
  'minirootfs',
  'apk-cache',
  'firmware',
  'packer_cache',
  'packer_plugin',
  'node',
  'tools',
] as const;

const STAGE_PREFIX = '.stage-';

export interface StageOptions {
  readonly rootDir: string;
  readonly workDir: string;
  readonly custom: readonly string[];
  /** stage everything afresh and empty work/ (but WORK_KEEP) on commit */
  readonly clean: boolean;
  readonly log: Logger;
}

export interface Staged {
  /** staging directory (inside work/) holding the freshly installed overlays */
  readonly dir: string;
  /** overlays installed afresh (the others are used as they are in work/) */
  readonly installed: readonly WorkOverlay[];
  /** where work/configs is (or will be) read from right now: staged copy or the existing work/configs */
  readonly configsDir: string;
  /** a file inside the staging directory -> the source file it was copied from (for messages) */
  readonly origins: ReadonlyMap<string, string>;
  /**
   * Empty work/ if --clean, then move the staged overlays into place. What they replace is moved aside into the
   * staging directory at once (renames) and removed with it in the background: wait for `settled()`.
   */
  commit(): Promise<void>;
  /** the background removal started by commit() is over (resolves at once before a commit) */
  settled(): Promise<void>;
  /** remove the staging directory */
  discard(): Promise<void>;
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function shown(p: string): string {
  const r = relative(process.cwd(), p);
  return r && !r.startsWith('..') ? r : p;
}

/** Move everything in work/ except WORK_KEEP (and the given extra names) into `aside` (a directory in work/). */
function moveWorkDirAside(workDir: string, aside: string, log: Logger, keepAlso: readonly string[]): void {
  const keep = new Set<string>([...WORK_KEEP, ...keepAlso]);
  log.info(`cleaning work directory ${shown(workDir)} (keeping caches)`);
  for (const name of readdirSync(workDir)) {
    if (keep.has(name)) continue;
    log.debug(`removing ${join(workDir, name)}`);
    renameSync(join(workDir, name), join(aside, name));
  }
}

/** Is `src` a top-level selector: images.yaml/images.conf, a symlink to a file in its own directory? */
function selectorTarget(src: string, rel: string, overlay: WorkOverlay): string | undefined {
  if (overlay !== 'configs' || !(SELECTORS as readonly string[]).includes(rel)) return undefined;
  const st = lstatSync(src);
  if (!st.isSymbolicLink()) return undefined;
  const target = normalize(readlinkSync(src));
  return target === basename(target) ? target : undefined;
}

function uniqueSources(rootDir: string, custom: readonly string[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const dir of [rootDir, ...custom]) {
    const abs = resolve(dir);
    let real = abs;
    try {
      real = realpathSync(abs);
    } catch {
      throw new UserError(`--custom ${dir}: directory does not exist`);
    }
    if (seen.has(real)) continue;
    seen.add(real);
    out.push(abs);
  }
  return out;
}

/** Install one overlay (configs or scripts) from every source into `dest`, recording where files came from. */
function installOverlay(
  overlay: WorkOverlay,
  sources: readonly string[],
  dest: string,
  shownDest: string,
  origins: Map<string, string>,
  log: Logger,
): void {
  mkdirSync(dest, { recursive: true });
  for (const src of sources) {
    const srcDir = join(src, overlay);
    if (!isDir(srcDir)) {
      log.debug(`${shown(srcDir)} does not exist, skipping`);
      continue;
    }
    log.info(`installing ${shown(srcDir)} into ${shownDest}`);
    copyTree(srcDir, '', overlay, dest, shownDest, origins, log);
  }
}

function copyTree(
  srcDir: string,
  rel: string,
  overlay: WorkOverlay,
  dest: string,
  shownDest: string,
  origins: Map<string, string>,
  log: Logger,
): void {
  const here = join(srcDir, rel);
  const names = readdirSync(here)
    .filter((n) => !n.startsWith('.'))
    .sort();
  for (const name of names) {
    const relPath = rel ? join(rel, name) : name;
    const src = join(srcDir, relPath);
    const dst = join(dest, relPath);
    const target = selectorTarget(src, relPath, overlay);
    if (target !== undefined) {
      // the selector may be replaced; only one selector (yaml or conf) is kept: the last one installed
      for (const s of SELECTORS) {
        const existing = join(dest, s);
        if (lexistsSync(existing)) {
          log.debug(`replacing ${join(shownDest, s)} with ${relPath} -> ${target}`);
          rmSync(existing, { force: true });
          origins.delete(existing);
        }
      }
      symlinkSync(target, dst);
      origins.set(dst, src);
      continue;
    }
    let st: Stats;
    try {
      st = statSync(src);
    } catch {
      throw new UserError(`cannot install ${shown(src)}: it is a dangling symlink`);
    }
    if (lstatSync(src).isSymbolicLink()) {
      // a symlink is followed (its target is copied): it may only point inside its own overlay directory
      const root = realpathSync(dirname(srcDir));
      if (!isInside(realpathSync(src), root)) {
        throw new UserError(
          `cannot install ${shown(src)}: it is a symlink to ${shown(realpathSync(src))}, outside ${shown(dirname(srcDir))} (symlinks in an overlay must point inside it)`,
        );
      }
    }
    if (st.isDirectory()) {
      if (!lexistsSync(dst)) mkdirSync(dst);
      else if (!isDir(dst)) throw overwriteError(src, dst, shownDest, dest, origins);
      copyTree(srcDir, relPath, overlay, dest, shownDest, origins, log);
      continue;
    }
    if (lexistsSync(dst)) throw overwriteError(src, dst, shownDest, dest, origins);
    copyFileSync(src, dst);
    chmodSync(dst, st.mode & 0o7777);
    origins.set(dst, src);
  }
}

function overwriteError(
  src: string,
  dst: string,
  shownDest: string,
  dest: string,
  origins: Map<string, string>,
): UserError {
  const existing = join(shownDest, relative(dest, dst));
  const from = origins.get(dst);
  return new UserError(
    `cannot install ${shown(src)} over ${existing}${from ? ` (installed from ${shown(from)})` : ''}: overlays may not replace files (only configs/images.yaml or images.conf, a symlink to a file in the same directory)`,
  );
}

/** Which --custom overlays an installed work/configs or work/scripts came from (absent: an older work dir). */
export const OVERLAY_RECORD = '.overlays.json';

function realCustom(custom: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of custom) {
    try {
      out.push(realpathSync(resolve(d)));
    } catch {
      throw new UserError(`--custom ${d}: directory does not exist`);
    }
  }
  return out;
}

function readOverlayRecord(dir: string): string[] | undefined {
  try {
    const j = JSON.parse(readFileSync(join(dir, OVERLAY_RECORD), 'utf8')) as { custom?: unknown };
    return Array.isArray(j.custom) ? j.custom.map(String) : undefined;
  } catch {
    return undefined;
  }
}

function listed(dirs: readonly string[]): string {
  return dirs.length ? dirs.map(shown).join(' ') : '(none)';
}

/**
 * An existing work/<overlay> is used as it is; when this run names --custom overlays they must be the ones it
 * was installed from, or the new ones would be silently ignored.
 */
function checkInstalledFrom(workDir: string, overlay: WorkOverlay, custom: readonly string[]): void {
  if (custom.length === 0) return;
  const want = realCustom(custom);
  const have = readOverlayRecord(join(workDir, overlay));
  if (have && have.length === want.length && have.every((d, i) => d === want[i])) return;
  const where = shown(join(workDir, overlay));
  throw new UserError(
    have
      ? `${where} was installed from --custom ${listed(have)}, not from --custom ${listed(want)}: overlays are installed only into a fresh work directory; add --clean to reinstall it from the repository and --custom ${listed(want)} (caches are kept)`
      : `${where} was installed by an earlier version that did not record its overlays, so --custom ${listed(want)} cannot be checked against it; add --clean to reinstall it (caches are kept)`,
  );
}

/**
 * Stage the overlays that work/ needs (all of them with --clean), without touching anything else in work/.
 * Stale staging directories of earlier, interrupted runs are removed.
 */
export async function stageWorkDir(opts: StageOptions): Promise<Staged> {
  const { workDir, log } = opts;
  mkdirSync(workDir, { recursive: true });
  for (const name of readdirSync(workDir)) {
    if (name.startsWith(STAGE_PREFIX)) rmSync(join(workDir, name), { recursive: true, force: true });
  }
  const needed: WorkOverlay[] = [];
  for (const o of WORK_OVERLAYS) {
    if (opts.clean || !isDir(join(workDir, o))) needed.push(o);
    else {
      checkInstalledFrom(workDir, o, opts.custom);
      log.info(`using existing ${shown(join(workDir, o))}`);
    }
  }
  const dir = join(workDir, `${STAGE_PREFIX}${process.pid}-${randomBytes(4).toString('hex')}`);
  const origins = new Map<string, string>();
  // an interrupted run (Ctrl-C, SIGTERM) leaves no staging directory behind
  const forget = onInterrupt(() => rmSync(dir, { recursive: true, force: true }));
  const discard = async () => {
    rmSync(dir, { recursive: true, force: true });
    forget();
  };
  let removal: Promise<void> = Promise.resolve();
  if (needed.length > 0) {
    const sources = uniqueSources(opts.rootDir, opts.custom);
    try {
      const record = `${JSON.stringify({ custom: realCustom(opts.custom) }, null, 2)}\n`;
      for (const o of needed) {
        installOverlay(o, sources, join(dir, o), shown(join(workDir, o)), origins, log);
        writeFileSync(join(dir, o, OVERLAY_RECORD), record);
      }
    } catch (err) {
      await discard();
      throw err;
    }
  }
  return {
    dir,
    installed: needed,
    configsDir: needed.includes('configs') ? join(dir, 'configs') : join(workDir, 'configs'),
    origins,
    discard,
    async commit() {
      // (renames only: removing the old trees file by file took longer than resolving them; the removal runs
      // in the thread pool while the caller writes images.yaml, and an interrupted one is finished by the next
      // run, which removes stale staging directories)
      const aside = join(dir, '.replaced');
      mkdirSync(aside, { recursive: true });
      if (opts.clean) moveWorkDirAside(workDir, aside, log, [basename(dir)]);
      for (const o of needed) {
        if (lexistsSync(join(workDir, o))) renameSync(join(workDir, o), join(aside, o));
        renameSync(join(dir, o), join(workDir, o));
      }
      await syncDir(workDir);
      removal = rm(dir, { recursive: true, force: true }).then(forget, forget);
    },
    settled: () => removal,
  };
}
