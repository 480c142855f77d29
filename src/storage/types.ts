import type { ConditionalOps } from './conditional.js';

/**
 * One storage location (a directory): file://, a bare path, ssh:// or s3://.
 * Every method works on plain file names inside that directory; local files live in `localDir`.
 */
export interface Storage {
  /** the URL, safe to print */
  readonly url: string;
  /**
   * Copy `files` from localDir into storage. With checksum, a `<file>.sha512` is written beside each
   * (computed locally) and stored too. Each object is written so a reader never sees a partial file
   * (temporary name then rename, or a single S3 PUT / completed multipart upload).
   */
  store(localDir: string, files: readonly string[], opts?: { checksum?: boolean }): Promise<void>;
  /**
   * Copy `files` from storage into localDir (atomically). With checksum, `<file>.sha512` is fetched
   * too and verified; on mismatch the bad file is not kept and an error names it.
   */
  retrieve(localDir: string, files: readonly string[], opts?: { checksum?: boolean }): Promise<void>;
  /** file names in the directory matching a glob (`*`, `?`); [] when the directory does not exist */
  list(pattern?: string): Promise<string[]>;
  /** remove files; missing ones are ignored */
  remove(files: readonly string[]): Promise<void>;
  /** create-only and compare-and-swap writes of small objects (leases, metadata of sharded runs) */
  readonly conditional?: ConditionalOps;
}

/** Storage handles for a whole run; one connection per ssh host / S3 client per endpoint. */
export interface StoragePool {
  get(url: string): Storage;
  /** counters for benchmarks and tests (e.g. ssh connections opened) */
  stats(): { sshConnections: number };
  close(): Promise<void>;
}
