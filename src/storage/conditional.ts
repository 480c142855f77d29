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
   * `visible`: the object must never be missing for readers, even for a moment (metadata); see PosixConditional.
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

/**
 * Conditional writes for file:// and ssh://.
 *
 * - create: the content goes to a temporary name first, then is linked to `name` with an operation that fails
 *   when `name` exists, so a reader never sees a partial object and exactly one of many creators wins.
 * - replace/remove for leases (`exclusive`): the current object is first compared with `etag`, then renamed
 *   away to a name of our own. Only one of several workers racing for the same version can rename it; the
 *   winner checks the content it now owns and links the new version in (create-only again). If the content it
 *   took is not the version it expected (changed between the comparison and the rename), it is linked back.
 * - replace with `visible` (metadata): compared, then atomically renamed over, so the object never
 *   disappears for readers. Only the lease holder writes an image's metadata; the comparison is the second
 *   line of defence that stops a worker whose lease was taken from recording anything.
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
    const tmp = await this.p.writeTemp(name, data);
    try {
      return (await this.p.linkNew(tmp, name)) ? contentTag(data) : undefined;
    } finally {
      await this.p.unlink(tmp);
    }
  }

  async replace(
    name: string,
    data: Buffer,
    etag: string,
    opts: { visible?: boolean } = {},
  ): Promise<string | undefined> {
    this.count++;
    const current = await this.p.readRaw(name);
    if (current === undefined || contentTag(current) !== etag) return undefined;
    const tmp = await this.p.writeTemp(name, data);
    try {
      if (opts.visible) {
        await this.p.replaceWith(tmp, name);
        return contentTag(data);
      }
      const taken = await this.take(name, etag);
      if (!taken) return undefined;
      try {
        return (await this.p.linkNew(tmp, name)) ? contentTag(data) : undefined;
      } finally {
        await this.p.unlink(taken);
      }
    } finally {
      await this.p.unlink(tmp);
    }
  }

  async remove(name: string, etag: string): Promise<boolean> {
    this.count++;
    const current = await this.p.readRaw(name);
    if (current === undefined || contentTag(current) !== etag) return false;
    const taken = await this.take(name, etag);
    if (!taken) return false;
    await this.p.unlink(taken);
    return true;
  }

  /** Rename `name` away if it is still version `etag`; the name it now has, or undefined. */
  private async take(name: string, etag: string): Promise<string | undefined> {
    const away = this.p.tempName(name);
    if (!(await this.p.renameAway(name, away))) return undefined;
    const got = await this.p.readRaw(away);
    if (got !== undefined && contentTag(got) === etag) return away;
    // someone replaced it between our comparison and the rename: put their version back
    await this.p.linkNew(away, name);
    await this.p.unlink(away);
    return undefined;
  }
}
