// Conditional writes on a storage directory: the primitives that let many workers on many machines share one
// storage safely (leases, compare-and-swap of metadata). S3 has them natively (If-None-Match: * and If-Match on
// the ETag); on a POSIX file system (file://, and ssh:// through SFTP) they are built from the two atomic
// operations it has: creating a name that must not exist (link(2) / SFTP rename onto a new name) and renaming a
// name away (rename(2): of two renames of one name, exactly one succeeds).
import { createHash } from 'node:crypto';

/** An object's bytes and its version tag (S3: the ETag; file:// and ssh://: a hash of the content). */
export interface VersionedObject {
  data: Buffer;
  etag: string;
}

/**
 * Create-only and compare-and-swap writes of small objects (names are plain file names, as in Storage).
 * Every method answers "it did not happen" with undefined/false rather than an error; errors are for
 * failures of the store itself (unreachable, access denied, a store that refuses the condition headers).
 */
export interface ConditionalOps {
  /** the object and its version; undefined when missing */
  read(name: string): Promise<VersionedObject | undefined>;
  /** write only if `name` does not exist; the new version, or undefined when it exists */
  create(name: string, data: Buffer): Promise<string | undefined>;
  /**
   * replace only if the current version is `etag`; the new version, or undefined (changed or missing).
   * `visible`: the object must never be missing for readers, even for a moment (metadata). Every backend
   * here keeps it visible; the option is for backends that cannot.
   */
  replace(
    name: string,
    data: Buffer,
    etag: string,
    opts?: { visible?: boolean },
  ): Promise<string | undefined>;
  /** remove only if the current version is `etag`; false when it changed or is missing */
  remove(name: string, etag: string): Promise<boolean>;
  /** operations sent to the store so far (lease traffic in benchmarks) */
  readonly requests: number;
}

/** The version tag of file:// and ssh:// objects. Lease and metadata contents always differ between writes. */
export function contentTag(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex').slice(0, 32);
}

/** What a POSIX-like backend provides for conditional writes; every name is in the storage directory. */
export interface PosixPrimitives {
  /** the content, or undefined when missing */
  readRaw(name: string): Promise<Buffer | undefined>;
  /** write `data` to a fresh temporary name in the directory (flushed) and return that name */
  writeTemp(name: string, data: Buffer): Promise<string>;
  /** give `temp` the name `name` only if `name` does not exist; false when it exists (temp is kept) */
  linkNew(temp: string, name: string): Promise<boolean>;
  /** rename `name` to `to` (a fresh name); false when `name` does not exist (someone else renamed it) */
  renameAway(name: string, to: string): Promise<boolean>;
  /** replace `name` by `temp` atomically (readers see the old or the new content, never neither) */
  replaceWith(temp: string, name: string): Promise<void>;
  /** remove a name; missing is fine */
  unlink(name: string): Promise<void>;
  /** a fresh hidden name beside `name` */
  tempName(name: string): string;
}

/** A compare-and-swap lock older than this was left by a writer that died in it (the section takes milliseconds). */
export const LOCK_STALE_MS = 10_000;
/** How long a writer waits for another's compare-and-swap on the same object before it reports an error. */
const LOCK_WAIT_MS = 15_000;

/**
 * Conditional writes for file:// and ssh://.
 *
 * - create: the content goes to a temporary name first, then is linked to `name` with an operation that fails
 *   when `name` exists, so a reader never sees a partial object and exactly one of many creators wins.
 * - replace/remove: under a short lock (`.<name>.lock`, itself an exclusive create), the current object is
 *   compared with `etag` and then atomically renamed over (or removed). The object never disappears during a
 *   replace, so a create racing with it fails as it should. A lock left by a writer that died inside the
 *   section (milliseconds long) is broken after LOCK_STALE_MS; writers' clocks must agree within that.
 */
export class PosixConditional implements ConditionalOps {
  private readonly p: PosixPrimitives;
  private count = 0;

  constructor(primitives: PosixPrimitives) {
    this.p = primitives;
  }

  get requests(): number {
    return this.count;
  }

  async read(name: string): Promise<VersionedObject | undefined> {
    this.count++;
    const data = await this.p.readRaw(name);
    return data === undefined ? undefined : { data, etag: contentTag(data) };
  }

  async create(name: string, data: Buffer): Promise<string | undefined> {
    this.count++;
    return (await this.linkContent(name, data)) ? contentTag(data) : undefined;
  }

  async replace(name: string, data: Buffer, etag: string): Promise<string | undefined> {
    this.count++;
    return this.locked(name, async () => {
      const current = await this.p.readRaw(name);
      if (current === undefined || contentTag(current) !== etag) return undefined;
      const tmp = await this.p.writeTemp(name, data);
      try {
        await this.p.replaceWith(tmp, name);
      } catch (err) {
        await this.p.unlink(tmp);
        throw err;
      }
      return contentTag(data);
    });
  }

  async remove(name: string, etag: string): Promise<boolean> {
    this.count++;
    return this.locked(name, async () => {
      const current = await this.p.readRaw(name);
      if (current === undefined || contentTag(current) !== etag) return false;
      await this.p.unlink(name);
      return true;
    });
  }

  /** Give `name` the content `data` only if it does not exist. */
  private async linkContent(name: string, data: Buffer): Promise<boolean> {
    const tmp = await this.p.writeTemp(name, data);
    try {
      return await this.p.linkNew(tmp, name);
    } finally {
      await this.p.unlink(tmp);
    }
  }

  private async locked<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const lock = `.${name}.lock`;
    const deadline = Date.now() + LOCK_WAIT_MS;
    for (let attempt = 1; ; attempt++) {
      const body = Buffer.from(`${JSON.stringify({ pid: process.pid, at: new Date().toISOString() })}\n`);
      if (await this.linkContent(lock, body)) break;
      const held = await this.p.readRaw(lock);
      if (held !== undefined && this.stale(held)) {
        // its writer died inside the section: take the stale lock away (only one breaker can rename it)
        const away = this.p.tempName(lock);
        if (await this.p.renameAway(lock, away)) await this.p.unlink(away);
        continue;
      }
      if (Date.now() > deadline) {
        throw new Error(`${lock}: another writer has held it for over ${LOCK_WAIT_MS / 1000} s`);
      }
      await new Promise((r) => setTimeout(r, Math.min(attempt, 10) * (5 + Math.random() * 15)));
    }
    try {
      return await fn();
    } finally {
      await this.p.unlink(lock);
    }
  }

  private stale(lock: Buffer): boolean {
    try {
      const at = Date.parse((JSON.parse(lock.toString('utf8')) as { at?: string }).at ?? '');
      return Number.isNaN(at) || Date.now() - at > LOCK_STALE_MS;
    } catch {
      // unreadable: written by something else, or truncated by a crash
      return true;
    }
  }
}
