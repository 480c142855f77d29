import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { errorMessage, UserError } from '../util/errors.js';
import { hashFile, parseChecksum, syncDir, writeFileAtomic } from '../util/fs.js';
import { processAlive } from '../util/process.js';
import { filterNames } from './glob.js';
import type { Storage } from './types.js';

/** Thrown by backends when an object does not exist (mapped to a clear UserError by BaseStorage). */
export class NotFoundError extends Error {
  constructor(what: string) {
    super(`${what}: not found`);
    this.name = 'NotFoundError';
  }
}

const HOST = hostname().replace(/[^A-Za-z0-9.-]/g, '_') || 'localhost';

/**
 * A hidden temporary sibling name for `name`, unique per call: `.<name>.<host>.<pid>.<random>.tmp`.
 * The host and pid let a later run recognise the leftovers of a writer that was killed.
 */
export function tempName(name: string): string {
  return `.${name}.${HOST}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
}

/** `.<name>.<host>.<pid>.<random>.tmp`, as tempName writes them */
const TEMP_RE = /^\.(.+)\.([A-Za-z0-9._-]+)\.(\d+)\.[0-9a-f]{8}\.tmp$/;

/** How long a temporary of another writer must have been left untouched before a store removes it. */
export const DEFAULT_TEMP_GRACE_MS = 3600_000;

export interface StoredEntry {
  name: string;
  /** last modification (ms since the epoch), when the backend knows it */
  mtimeMs?: number;
}

/**
 * Temporary names among `entries` that a store may remove:
 * - left by a writer of one of `files` that ran on this host and is gone (killed mid-store): at once;
 * - left by any writer (any host, any file) and not written to for `graceMs`: a writer that is still
 *   uploading keeps touching its temporary, so one this old was abandoned (a dropped connection, a killed
 *   run on another machine).
 */
export function staleTempNames(
  entries: readonly StoredEntry[],
  files: readonly string[],
  graceMs: number = DEFAULT_TEMP_GRACE_MS,
  now: number = Date.now(),
): string[] {
  const wanted = new Set(files);
  const out: string[] = [];
  for (const { name: n, mtimeMs } of entries) {
    const m = TEMP_RE.exec(n);
    if (!m) continue;
    if (mtimeMs !== undefined && now - mtimeMs > graceMs) {
      out.push(n);
      continue;
    }
    if (!wanted.has(m[1]!) || m[2] !== HOST) continue;
    const pid = Number(m[3]);
    if (pid !== process.pid && !processAlive(pid)) out.push(n);
  }
  return out;
}

async function syncFile(path: string): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function writeSynced(path: string, text: string): Promise<void> {
  const fh = await open(path, 'wx', 0o644);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export function checkFileName(url: string, name: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new UserError(`${url}: "${name}" is not a plain file name`);
  }
}

/**
 * The behaviour shared by every backend (checksums, atomic local writes, globbing, error wording);
 * subclasses only move bytes.
 */
export interface BaseStorageOptions {
  /** see staleTempNames (default DEFAULT_TEMP_GRACE_MS) */
  tempGraceMs?: number;
}

export abstract class BaseStorage implements Storage {
  readonly url: string;
  protected readonly log: Logger;
  protected readonly tempGraceMs: number;

  constructor(url: string, log: Logger, opts: BaseStorageOptions = {}) {
    this.url = url;
    this.log = log;
    this.tempGraceMs = opts.tempGraceMs ?? DEFAULT_TEMP_GRACE_MS;
  }

  /** Copy a local file to `name` so that no reader ever sees a partial object. */
  protected abstract putFile(localPath: string, name: string): Promise<void>;
  /** Copy object `name` to the local path (which does not exist yet). NotFoundError when missing. */
  protected abstract getFile(name: string, localPath: string): Promise<void>;
  /** Read a small object into memory. NotFoundError when missing. */
  protected abstract readSmall(name: string): Promise<Buffer>;
  /** Names in the directory; [] when it does not exist. */
  protected abstract listNames(): Promise<string[]>;
  /** Remove one object; missing is not an error. */
  protected abstract removeName(name: string): Promise<void>;
  /**
   * Store a data file whose sha512 is `sha512`, and make sure the store holds exactly it before its checksum is
   * written. Backends whose writes are atomic renames of a verified local copy need nothing more than putFile.
   */
  protected putData(localPath: string, name: string, _sha512: string): Promise<void> {
    return this.putFile(localPath, name);
  }
  /**
   * Store the checksum file `sumName` of `name` (written locally at `localSum`). Backends where two writers of
   * one name can interleave (S3) override it to write the checksum of what the store holds at the end.
   */
  protected putChecksum(localSum: string, sumName: string, _name: string, _sha512: string): Promise<void> {
    return this.putFile(localSum, sumName);
  }
  /** Modification times of temporary names, for removing abandoned ones; backends that cannot tell return {}. */
  protected async entryTimes(_names: readonly string[]): Promise<Map<string, number>> {
    return new Map();
  }
  /** Does putFile write temporary names that a killed run can leave behind? */
  protected readonly leavesTemps: boolean = true;
  /** Turn a backend error into a one-line message (without the URL). */
  protected abstract describe(err: unknown): string;

  protected where(name?: string): string {
    return name === undefined ? this.url : `${this.url.replace(/\/+$/, '')}/${name}`;
  }

  /** Run a backend operation; anything but a UserError becomes one UserError naming the URL. */
  protected async guard<T>(what: string, name: string | undefined, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof UserError) throw err;
      if (err instanceof NotFoundError) throw new UserError(`${this.where(name)}: not found in storage`);
      throw new UserError(`${this.where(name)}: ${what} failed: ${this.describe(err)}`);
    }
  }

  async store(localDir: string, files: readonly string[], opts: { checksum?: boolean } = {}): Promise<void> {
    const stored: string[] = [];
    for (const file of files) {
      checkFileName(this.url, file);
      const local = join(localDir, file);
      try {
        const st = await stat(local);
        if (!st.isFile()) throw new UserError(`${local}: not a regular file, cannot store it in ${this.url}`);
      } catch (err) {
        if (err instanceof UserError) throw err;
        throw new UserError(`${local}: cannot store it in ${this.url}: ${errorMessage(err)}`);
      }
      this.log.debug({ storage: this.url, file }, 'storing');
      if (opts.checksum) {
        const sum = `${file}.sha512`;
        const hash = await hashFile(local);
        await writeFileAtomic(join(localDir, sum), `${hash}\n`);
        // the checksum goes after the file it describes, once the store is known to hold that file
        await this.guard('store', file, () => this.putData(local, file, hash));
        await this.guard('store', sum, () => this.putChecksum(join(localDir, sum), sum, file, hash));
        stored.push(file, sum);
      } else {
        await this.guard('store', file, () => this.putFile(local, file));
        stored.push(file);
      }
    }
    if (this.leavesTemps && stored.length) await this.removeStaleTemps(stored);
  }

  /**
   * Remove what killed runs on this host left while storing these files, and temporaries of any writer that
   * were abandoned longer than the grace period; failures here do not matter.
   */
  private async removeStaleTemps(files: readonly string[]): Promise<void> {
    try {
      const names = await this.listNames();
      const times = await this.entryTimes(names.filter((n) => TEMP_RE.test(n)));
      const entries = names.map((name) => ({
        name,
        ...(times.has(name) ? { mtimeMs: times.get(name)! } : {}),
      }));
      for (const n of staleTempNames(entries, files, this.tempGraceMs)) {
        this.log.debug({ storage: this.url, file: n }, 'removing the leftover of an interrupted store');
        await this.removeName(n);
      }
    } catch (err) {
      this.log.debug({ storage: this.url, err: errorMessage(err) }, 'could not clean up leftovers');
    }
  }

  async retrieve(
    localDir: string,
    files: readonly string[],
    opts: { checksum?: boolean } = {},
  ): Promise<void> {
    if (files.length === 0) return;
    await mkdir(localDir, { recursive: true });
    for (const file of files) {
      checkFileName(this.url, file);
      this.log.debug({ storage: this.url, file }, 'retrieving');
      const sumName = `${file}.sha512`;
      const final = join(localDir, file);
      const tmp = join(localDir, tempName(file));
      const sumTmp = opts.checksum ? join(localDir, tempName(sumName)) : undefined;
      try {
        // the checksum and the file travel at the same time (one round trip less per file)
        const [sum, got] = await Promise.allSettled([
          opts.checksum ? this.guard('retrieve', sumName, () => this.readSmall(sumName)) : undefined,
          this.guard('retrieve', file, () => this.getFile(file, tmp)),
        ]);
        if (sum.status === 'rejected') throw sum.reason;
        if (got.status === 'rejected') throw got.reason;
        const sumText = sum.value?.toString('utf8');
        if (sumText !== undefined) {
          let expected: string;
          try {
            expected = parseChecksum(sumText);
          } catch {
            throw new UserError(`${this.where(sumName)}: not a sha512 checksum file`);
          }
          const actual = await hashFile(tmp);
          if (actual !== expected) {
            throw new UserError(
              `${this.where(file)}: checksum mismatch (stored sha512 ${expected.slice(0, 16)}…, ` +
                `retrieved file has ${actual.slice(0, 16)}…); the retrieved copy was discarded`,
            );
          }
        }
        // both files reach the disk (concurrently) before either takes its final name
        await Promise.all([syncFile(tmp), sumTmp && writeSynced(sumTmp, sumText!)]);
        await rename(tmp, final);
        if (sumTmp) await rename(sumTmp, `${final}.sha512`);
      } catch (err) {
        await rm(tmp, { force: true });
        if (sumTmp) await rm(sumTmp, { force: true });
        throw err;
      }
    }
    await syncDir(localDir);
  }

  async list(pattern = '*'): Promise<string[]> {
    const names = await this.guard('list', undefined, () => this.listNames());
    return filterNames(names, pattern);
  }

  async remove(files: readonly string[]): Promise<void> {
    for (const file of files) {
      checkFileName(this.url, file);
      this.log.debug({ storage: this.url, file }, 'removing');
      await this.guard('remove', file, () => this.removeName(file));
    }
  }
}
