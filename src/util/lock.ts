import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { link, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { UserError } from './errors.js';
import { onInterrupt } from './interrupt.js';
import { processAlive } from './process.js';

export interface LockHolder {
  pid: number;
  host: string;
  started: string;
  command: string;
  /** the holder's start time in clock ticks since boot (/proc/PID/stat field 22), so a reused pid is told apart */
  pidStart?: number;
}

export interface WorkLock {
  readonly path: string;
  release(): Promise<void>;
}

/** What a later run may do about the lock file it found. */
export type LockVerdict =
  | { kind: 'held'; holder: LockHolder }
  | { kind: 'stale'; why: string; holder?: LockHolder };

/** Start time of a process (clock ticks since boot), where /proc tells it. */
export function processStart(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so count from the last ')'
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const v = Number(fields[19]);
    return Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

function parseHolder(text: string): LockHolder | undefined {
  try {
    const h = JSON.parse(text) as Partial<LockHolder>;
    if (
      typeof h === 'object' &&
      h !== null &&
      Number.isInteger(h.pid) &&
      (h.pid as number) > 0 &&
      typeof h.host === 'string' &&
      h.host !== ''
    ) {
      return {
        pid: h.pid as number,
        host: h.host,
        started: typeof h.started === 'string' ? h.started : '?',
        command: typeof h.command === 'string' ? h.command : '?',
        ...(typeof h.pidStart === 'number' ? { pidStart: h.pidStart } : {}),
      };
    }
  } catch {
    // not JSON: torn or foreign
  }
  return undefined;
}

/**
 * Judge a lock file's content. A lock never blocks unless it names a holder that may still be running:
 * - content that is not a complete holder record (empty, torn, foreign) is stale — this tool writes the record
 *   completely before the file takes the lock's name, so such a file was never a lock of a live run;
 * - a holder on this host whose process is gone (or whose pid now belongs to another process) is stale;
 * - a holder on another host cannot be checked from here and is taken as held (remove the file if that host's
 *   build is known to be gone).
 */
export function judgeLock(text: string, host = hostname()): LockVerdict {
  const holder = parseHolder(text);
  if (!holder) {
    return {
      kind: 'stale',
      why: text.trim() === '' ? 'the lock file is empty' : 'the lock file names no holder',
    };
  }
  if (holder.host !== host) return { kind: 'held', holder };
  if (holder.pid === process.pid) return { kind: 'held', holder };
  if (!processAlive(holder.pid)) return { kind: 'stale', why: `pid ${holder.pid} is not running`, holder };
  if (holder.pidStart !== undefined) {
    const now = processStart(holder.pid);
    if (now !== undefined && now !== holder.pidStart) {
      return { kind: 'stale', why: `pid ${holder.pid} now belongs to another process`, holder };
    }
  }
  return { kind: 'held', holder };
}

/**
 * Take the exclusive lock on a work directory, or fail at once with a message naming the holder.
 *
 * The holder record is written and synced to a private temporary file first, which then gets the name `.lock`
 * with link(2): that either succeeds atomically with the complete record or fails because a lock exists. So a
 * crash can never leave a half-written lock. A lock that does not name a live holder (see judgeLock) is moved
 * aside (rename(2), atomic) and removed; when two runs race for a stale lock, only one of them moves it, and the
 * other finds the winner's complete lock.
 */
export async function lockWorkDir(
  workDir: string,
  command: string,
  warn: (msg: string) => void = () => {},
): Promise<WorkLock> {
  const path = join(workDir, '.lock');
  const start = processStart(process.pid);
  const me: LockHolder = {
    pid: process.pid,
    host: hostname(),
    started: new Date().toISOString(),
    command,
    ...(start !== undefined ? { pidStart: start } : {}),
  };
  const tmp = join(workDir, `.lock.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o644);
  try {
    await fh.writeFile(`${JSON.stringify(me)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await link(tmp, path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        let text: string;
        let ino: number;
        try {
          ino = (await stat(path)).ino;
          text = await readFile(path, 'utf8');
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // released meanwhile
          throw e;
        }
        const verdict = judgeLock(text, me.host);
        if (verdict.kind === 'held') throw lockedError(path, verdict.holder);
        await removeStale(path, ino, warn, verdict.why);
        continue;
      }
      return held(path, me);
    }
  } finally {
    await rm(tmp, { force: true });
  }
  throw new UserError(`could not take the lock ${path} (other runs keep taking it); try again`);
}

/** Move a stale lock aside and remove it, unless another run replaced it meanwhile (then leave that one). */
async function removeStale(path: string, ino: number, warn: (m: string) => void, why: string): Promise<void> {
  const aside = `${path}.stale.${process.pid}.${randomBytes(4).toString('hex')}`;
  try {
    await rename(path, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const moved = await stat(aside).catch(() => undefined);
  if (moved && moved.ino !== ino) {
    // between our look and the rename another run took the lock: give it back
    await link(aside, path).catch(() => {});
    await rm(aside, { force: true });
    return;
  }
  warn(`taking over the work directory lock ${path}: ${why}`);
  await rm(aside, { force: true });
}

function held(path: string, me: LockHolder): WorkLock {
  let released = false;
  const isMine = (text: string) => {
    const h = parseHolder(text);
    return h?.pid === me.pid && h.host === me.host && h.started === me.started;
  };
  // Ctrl-C / SIGTERM: the lock goes with the run
  const forget = onInterrupt(() => {
    try {
      if (isMine(readFileSync(path, 'utf8'))) rmSync(path, { force: true });
    } catch {
      // gone already
    }
  });
  return {
    path,
    async release() {
      if (released) return;
      released = true;
      forget();
      const text = await readFile(path, 'utf8').catch(() => '');
      if (isMine(text)) await rm(path, { force: true });
    },
  };
}

function lockedError(path: string, h: LockHolder): UserError {
  return new UserError(
    `work directory is locked by another build: pid ${h.pid} on ${h.host}, started ${h.started} (${h.command}); lock file ${path}`,
  );
}
