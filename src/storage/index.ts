import type { Logger } from 'pino';
import { UserError } from '../util/errors.js';
import type { ConditionalOps } from './conditional.js';
import { FileStorage } from './file.js';
import type { S3Clients } from './s3.js';
import type { SshConnections } from './ssh-connections.js';
import type { Storage, StoragePool } from './types.js';
import { displayUrl, parseStorageUrl } from './url.js';

export type { StoragePool } from './types.js';

export interface StoragePoolOptions {
  log: Logger;
  env: NodeJS.ProcessEnv;
  /** base for relative bare paths; the process cwd by default */
  cwd?: string;
  /** S3 multipart part size in bytes (default 16 MiB; at least 5 MiB) */
  s3PartSize?: number;
  /**
   * how long another writer's temporary file must be untouched before a store removes it
   * (default: env BUILD_STORAGE_TEMP_GRACE_S, else one hour)
   */
  tempGraceMs?: number;
}

function tempGrace(opts: StoragePoolOptions): number | undefined {
  if (opts.tempGraceMs !== undefined) return opts.tempGraceMs;
  const v = opts.env.BUILD_STORAGE_TEMP_GRACE_S;
  if (v === undefined || v === '') return undefined;
  if (!/^\d+(\.\d+)?$/.test(v)) {
    throw new UserError(`BUILD_STORAGE_TEMP_GRACE_S: "${v}" is not a number of seconds`);
  }
  return Number(v) * 1000;
}

/**
 * One pool per run: file://, bare paths, ssh://[user@]host[:port]/path, s3://bucket/prefix.
 * ssh: one connection per user@host:port for the whole run; s3: one client per endpoint/region.
 * get() checks the URL at once (an unknown scheme is a UserError naming it); connections open on first use.
 */
export function createStoragePool(opts: StoragePoolOptions): StoragePool {
  const { log, env } = opts;
  // the ssh and s3 backends (ssh2, the AWS SDK) load on first use: runs on file:// storage never pay for them
  let ssh: { mod: typeof import('./ssh.js'); conns: SshConnections } | undefined;
  let s3: { mod: typeof import('./s3.js'); clients: S3Clients } | undefined;
  let sshLoading: Promise<NonNullable<typeof ssh>> | undefined;
  let s3Loading: Promise<NonNullable<typeof s3>> | undefined;
  const loadSsh = () =>
    (sshLoading ??= import('./ssh.js').then(
      (mod) => (ssh = { mod, conns: new mod.SshConnections({ log, env }) }),
    ));
  const loadS3 = () =>
    (s3Loading ??= import('./s3.js').then(
      (mod) =>
        (s3 = {
          mod,
          clients: new mod.S3Clients(
            opts.s3PartSize === undefined ? { env } : { env, partSize: opts.s3PartSize },
          ),
        }),
    ));
  const cache = new Map<string, Storage>();
  const graceMs = tempGrace(opts);
  const base = graceMs === undefined ? {} : { tempGraceMs: graceMs };
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
      if (loc.kind === 'file') storage = new FileStorage(shown, loc.dir, log, base);
      else if (loc.kind === 'ssh') {
        storage = lazyStorage(shown, () =>
          loadSsh().then((b) => new b.mod.SshStorage(shown, loc, b.conns, log, base)),
        );
      } else {
        storage = lazyStorage(shown, () =>
          loadS3().then((b) => new b.mod.S3Storage(shown, loc, b.clients, log, base)),
        );
      }
      cache.set(cacheKey, storage);
      return storage;
    },
    stats() {
      return { sshConnections: ssh?.conns.connectionsOpened ?? 0 };
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await (sshLoading ? (await sshLoading).conns.close() : undefined);
      if (s3Loading) (await s3Loading).clients.close();
    },
  };
}

/** A Storage whose backend is created on its first call. */
function lazyStorage(url: string, create: () => Promise<Storage>): Storage {
  let backend: Promise<Storage> | undefined;
  const b = () => (backend ??= create());
  return {
    url,
    store: async (localDir, files, o) => (await b()).store(localDir, files, o),
    retrieve: async (localDir, files, o) => (await b()).retrieve(localDir, files, o),
    list: async (pattern) => (await b()).list(pattern),
    remove: async (files) => (await b()).remove(files),
    conditional: lazyConditional(b),
  };
}

/** The conditional writes of a backend created on first use. */
function lazyConditional(backend: () => Promise<Storage>): ConditionalOps {
  let resolved: ConditionalOps | undefined;
  const ops = async (): Promise<ConditionalOps> => {
    const c = (await backend()).conditional;
    if (!c) throw new Error('this storage has no conditional writes');
    resolved = c;
    return c;
  };
  return {
    get requests() {
      return resolved?.requests ?? 0;
    },
    read: async (name) => (await ops()).read(name),
    create: async (name, data) => (await ops()).create(name, data),
    replace: async (name, data, etag, o) => (await ops()).replace(name, data, etag, o),
    remove: async (name, etag) => (await ops()).remove(name, etag),
  };
}
