import type { Logger } from 'pino';
import { FileStorage } from './file.js';
import { S3Clients, S3Storage } from './s3.js';
import { SshConnections, SshStorage } from './ssh.js';
import type { Storage, StoragePool } from './types.js';
import { displayUrl, parseStorageUrl } from './url.js';

export { globToRegExp, matchGlob } from './glob.js';
export type { Storage, StoragePool } from './types.js';
export { displayUrl, parseStorageUrl, type StorageLocation } from './url.js';

export interface StoragePoolOptions {
  log: Logger;
  env: NodeJS.ProcessEnv;
  /** base for relative bare paths; the process cwd by default */
  cwd?: string;
  /** S3 multipart part size in bytes (default 16 MiB; at least 5 MiB) */
  s3PartSize?: number;
}

/**
 * One pool per run: file://, bare paths, ssh://[user@]host[:port]/path, s3://bucket/prefix.
 * ssh: one connection per user@host:port for the whole run; s3: one client per endpoint/region.
 * get() checks the URL at once (an unknown scheme is a UserError naming it); connections open on first use.
 */
export function createStoragePool(opts: StoragePoolOptions): StoragePool {
  const { log, env } = opts;
  const ssh = new SshConnections({ log, env });
  const s3 = new S3Clients(opts.s3PartSize === undefined ? { env } : { env, partSize: opts.s3PartSize });
  const cache = new Map<string, Storage>();
  let closed = false;

  return {
    get(url: string): Storage {
      if (closed) throw new Error(`storage pool is closed (${displayUrl(url)})`);
      const cwd = opts.cwd ?? process.cwd();
      const cacheKey = `${cwd}\0${url}`;
      const hit = cache.get(cacheKey);
      if (hit) return hit;
      const loc = parseStorageUrl(url, cwd);
      const shown = displayUrl(url);
      let storage: Storage;
      if (loc.kind === 'file') storage = new FileStorage(shown, loc.dir, log);
      else if (loc.kind === 'ssh') storage = new SshStorage(shown, loc, ssh, log);
      else storage = new S3Storage(shown, loc, s3, log);
      cache.set(cacheKey, storage);
      return storage;
    },
    stats() {
      return { sshConnections: ssh.connectionsOpened };
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await ssh.close();
      s3.close();
    },
  };
}
