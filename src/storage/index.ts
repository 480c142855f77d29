import type { Logger } from 'pino';
import type { StoragePool } from './types.js';

export type { Storage, StoragePool } from './types.js';

/** One pool per run: file://, bare paths, ssh://[user@]host[:port]/path, s3://bucket/prefix. */
export function createStoragePool(_opts: { log: Logger; env: NodeJS.ProcessEnv }): StoragePool {
  throw new Error('not implemented');
}
