import { open, readFile, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { UserError } from './errors.js';
import { processAlive } from './process.js';

export interface LockHolder {
  pid: number;
  host: string;
  started: string;
  command: string;
}

export interface WorkLock {
  readonly path: string;
  release(): Promise<void>;
}

async function readHolder(path: string): Promise<LockHolder | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as LockHolder;
  } catch {
    return undefined;
  }
}

/**
 * Take the exclusive lock on a work directory, or fail at once with a message naming the holder.
 * A lock left by a process that no longer runs on this host is taken over.
 */
export async function lockWorkDir(workDir: string, command: string): Promise<WorkLock> {
  const path = join(workDir, '.lock');
  const me: LockHolder = { pid: process.pid, host: hostname(), started: new Date().toISOString(), command };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(path, 'wx', 0o644);
      await fh.writeFile(`${JSON.stringify(me)}\n`);
      await fh.close();
      let released = false;
      return {
        path,
        async release() {
          if (released) return;
          released = true;
          const holder = await readHolder(path);
          if (holder?.pid === me.pid && holder.host === me.host) await rm(path, { force: true });
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = await readHolder(path);
      if (holder && holder.host === me.host && !processAlive(holder.pid)) {
        await rm(path, { force: true });
        continue;
      }
      if (!holder) {
        // being written right now by its holder: give it a moment
        await new Promise((r) => setTimeout(r, 50));
        const again = await readHolder(path);
        if (!again) continue;
        throw lockedError(path, again);
      }
      throw lockedError(path, holder);
    }
  }
  throw new UserError(`could not take the lock ${path}`);
}

function lockedError(path: string, h: LockHolder): UserError {
  return new UserError(
    `work directory is locked by another build: pid ${h.pid} on ${h.host}, started ${h.started} (${h.command}); lock file ${path}`,
  );
}
