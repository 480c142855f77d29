/** The Storage of ssh:// locations: a directory on an ssh server, over the run's shared ssh connections. */
import { randomBytes } from 'node:crypto';
import { rename, rm } from 'node:fs/promises';
import { posix } from 'node:path';
import type { Logger } from 'pino';
import { errorMessage } from '../util/errors.js';
import { BaseStorage, type BaseStorageOptions, NotFoundError, tempName } from './base.js';
import { type ConditionalOps, PosixConditional, type PosixPrimitives } from './conditional.js';
import {
  call,
  connectionLost,
  type Session,
  SFTP_NO_SUCH_FILE,
  type SshConnections,
  sftpCode,
} from './ssh-connections.js';
import type { SshLocation } from './url.js';

export { SshConnections } from './ssh-connections.js';

async function ensureDir(s: Session, dir: string): Promise<void> {
  if (dir === '.' || dir === '/' || dir === '') return;
  let p = s.dirs.get(dir);
  if (!p) {
    p = makeDir(s, dir);
    s.dirs.set(dir, p);
    p.catch(() => s.dirs.delete(dir));
  }
  return p;
}

async function makeDir(s: Session, dir: string): Promise<void> {
  try {
    const st = await call<{ isDirectory(): boolean }>(s, (cb) => s.sftp.stat(dir, cb));
    if (st.isDirectory()) return;
    throw new Error(`${dir} exists and is not a directory`);
  } catch (err) {
    if (sftpCode(err) !== SFTP_NO_SUCH_FILE) throw err;
  }
  await ensureDir(s, posix.dirname(dir));
  try {
    await call<void>(s, (cb) => s.sftp.mkdir(dir, (e) => cb(e, undefined)));
  } catch (err) {
    // another image may have created it meanwhile
    const st = await call<{ isDirectory(): boolean }>(s, (cb) => s.sftp.stat(dir, cb)).catch(() => undefined);
    if (!st?.isDirectory()) throw new Error(`cannot create directory ${dir}: ${errorMessage(err)}`);
  }
}

async function renameOver(s: Session, from: string, to: string): Promise<void> {
  try {
    await call<void>(s, (cb) => s.sftp.ext_openssh_rename(from, to, (e) => cb(e, undefined)));
  } catch (err) {
    if (!/not support/i.test(errorMessage(err))) throw err;
    // plain SFTP rename refuses to overwrite: remove the target first (brief window without it)
    await call<void>(s, (cb) => s.sftp.unlink(to, (e) => cb(e, undefined))).catch(() => {});
    await call<void>(s, (cb) => s.sftp.rename(from, to, (e) => cb(e, undefined)));
  }
}

function unlinkQuietly(s: Session, path: string): Promise<void> {
  return call<void>(s, (cb) => s.sftp.unlink(path, (e) => cb(e, undefined))).catch(() => {});
}

/** A directory on an ssh server, reached over the pool's shared connection to that host. */
export class SshStorage extends BaseStorage {
  private readonly loc: SshLocation;
  private readonly conns: SshConnections;

  constructor(
    url: string,
    loc: SshLocation,
    conns: SshConnections,
    log: Logger,
    opts: BaseStorageOptions = {},
  ) {
    super(url, log, opts);
    this.loc = loc;
    this.conns = conns;
  }

  private path(name: string): string {
    return this.loc.path === '.' ? name : posix.join(this.loc.path, name);
  }

  /**
   * Run an operation on the shared session. If the connection dies under it, the operation runs once more on
   * a new connection: every operation here is idempotent (uploads go to a fresh temporary name each time).
   */
  private async withSession<T>(fn: (s: Session) => Promise<T>): Promise<T> {
    const s = await this.conns.session(this.loc, this.url);
    try {
      return await fn(s);
    } catch (err) {
      if (s.alive && !connectionLost(err)) throw err;
      this.conns.discard(s);
      this.log.debug({ storage: this.url, err: errorMessage(err) }, 'ssh: retrying on a new connection');
      return fn(await this.conns.session(this.loc, this.url));
    }
  }

  protected async putFile(localPath: string, name: string): Promise<void> {
    // every attempt writes its own temporary; an attempt cut off by a dropped connection leaves its partial
    // file on the server, which the attempt on the new connection removes
    const attempts: string[] = [];
    await this.withSession(async (s) => {
      const tmp = this.path(tempName(name));
      const earlier = [...attempts];
      attempts.push(tmp);
      const put = () => call<void>(s, (cb) => s.sftp.fastPut(localPath, tmp, (e) => cb(e, undefined)));
      await ensureDir(s, this.loc.path);
      try {
        try {
          await put();
        } catch (err) {
          if (sftpCode(err) !== SFTP_NO_SUCH_FILE) throw err;
          // the directory vanished since we created it: once more from scratch
          s.dirs.delete(this.loc.path);
          await ensureDir(s, this.loc.path);
          await put();
        }
        await renameOver(s, tmp, this.path(name));
      } catch (err) {
        if (s.alive) await unlinkQuietly(s, tmp);
        throw err;
      } finally {
        for (const old of earlier) {
          if (!s.alive) break;
          this.log.debug(
            { storage: this.url, file: old },
            'ssh: removing the partial file of a dropped connection',
          );
          await unlinkQuietly(s, old);
        }
      }
    });
  }

  protected override entryTimes(names: readonly string[]): Promise<Map<string, number>> {
    return this.withSession(async (s) => {
      const out = new Map<string, number>();
      for (const n of names) {
        const st = await call<{ mtime: number }>(s, (cb) => s.sftp.stat(this.path(n), cb)).catch(
          () => undefined,
        );
        if (st) out.set(n, st.mtime * 1000);
      }
      return out;
    });
  }

  protected getFile(name: string, localPath: string): Promise<void> {
    return this.withSession(async (s) => {
      // each attempt writes its own file: an abandoned attempt may still be writing to its own
      const part = `${localPath}.${randomBytes(4).toString('hex')}`;
      try {
        await call<void>(s, (cb) => s.sftp.fastGet(this.path(name), part, (e) => cb(e, undefined)));
        await rename(part, localPath);
      } catch (err) {
        await rm(part, { force: true });
        if (sftpCode(err) === SFTP_NO_SUCH_FILE) throw new NotFoundError(name);
        throw err;
      }
    });
  }

  protected readSmall(name: string): Promise<Buffer> {
    return this.withSession(async (s) => {
      try {
        return await call<Buffer>(s, (cb) => s.sftp.readFile(this.path(name), cb));
      } catch (err) {
        if (sftpCode(err) === SFTP_NO_SUCH_FILE) throw new NotFoundError(name);
        throw err;
      }
    });
  }

  protected listNames(): Promise<string[]> {
    return this.withSession(async (s) => {
      try {
        const entries = await call<Array<{ filename: string; attrs: { isDirectory(): boolean } }>>(s, (cb) =>
          s.sftp.readdir(this.loc.path, cb),
        );
        return entries.filter((e) => !e.attrs.isDirectory()).map((e) => e.filename);
      } catch (err) {
        if (sftpCode(err) === SFTP_NO_SUCH_FILE) return [];
        throw err;
      }
    });
  }

  protected removeName(name: string): Promise<void> {
    return this.withSession(async (s) => {
      try {
        await call<void>(s, (cb) => s.sftp.unlink(this.path(name), (e) => cb(e, undefined)));
      } catch (err) {
        if (sftpCode(err) !== SFTP_NO_SUCH_FILE) throw err;
      }
    });
  }

  protected describe(err: unknown): string {
    const code = sftpCode(err);
    return code === undefined ? errorMessage(err) : `${errorMessage(err)} (SFTP status ${code})`;
  }

  private cond: ConditionalOps | undefined;

  /**
   * Create-only and compare-and-swap writes over SFTP. An exclusive create is a hard link (hardlink@openssh.com)
   * or, without that extension, a plain SFTP rename onto the new name (which SFTP servers refuse when the target
   * exists; OpenSSH implements it with link(2)). Renaming a name away uses posix-rename@openssh.com (rename(2))
   * when offered.
   */
  get conditional(): ConditionalOps {
    this.cond ??= new PosixConditional(this.posixPrimitives());
    return this.cond;
  }

  private posixPrimitives(): PosixPrimitives {
    const exists = (s: Session, name: string) =>
      call<unknown>(s, (cb) => s.sftp.lstat(this.path(name), cb)).then(
        () => true,
        (err) => {
          if (sftpCode(err) === SFTP_NO_SUCH_FILE) return false;
          throw err;
        },
      );
    const hasExt = (s: Session, ext: string) =>
      (s.sftp as unknown as { _extensions?: Record<string, string> })._extensions?.[ext] === '1';
    return {
      readRaw: (name) =>
        this.withSession(async (s) => {
          try {
            return await call<Buffer>(s, (cb) => s.sftp.readFile(this.path(name), cb));
          } catch (err) {
            if (sftpCode(err) === SFTP_NO_SUCH_FILE) return undefined;
            throw err;
          }
        }),
      writeTemp: (name, data) =>
        this.withSession(async (s) => {
          await ensureDir(s, this.loc.path);
          const tmp = tempName(name);
          const handle = await call<Buffer>(s, (cb) => s.sftp.open(this.path(tmp), 'wx', 0o644, cb));
          try {
            await call<void>(s, (cb) =>
              s.sftp.write(handle, data, 0, data.length, 0, (e) => cb(e, undefined)),
            );
            if (hasExt(s, 'fsync@openssh.com')) {
              await call<void>(s, (cb) => s.sftp.ext_openssh_fsync(handle, (e) => cb(e, undefined)));
            }
          } finally {
            await call<void>(s, (cb) => s.sftp.close(handle, (e) => cb(e, undefined))).catch(() => {});
          }
          return tmp;
        }),
      linkNew: (temp, name) =>
        this.withSession(async (s) => {
          const from = this.path(temp);
          const to = this.path(name);
          for (let attempt = 1; ; attempt++) {
            try {
              if (hasExt(s, 'hardlink@openssh.com')) {
                await call<void>(s, (cb) => s.sftp.ext_openssh_hardlink(from, to, (e) => cb(e, undefined)));
              } else {
                await call<void>(s, (cb) => s.sftp.rename(from, to, (e) => cb(e, undefined)));
              }
              return true;
            } catch (err) {
              // SFTP v3 has no "already exists" status: look. A target that is gone again by then (removed
              // right after) means another try; a failure with no target at all is a real error.
              if (sftpCode(err) === undefined) throw err;
              if (await exists(s, name)) return false;
              if (attempt >= 3) throw err;
            }
          }
        }),
      renameAway: (name, to) =>
        this.withSession(async (s) => {
          try {
            if (hasExt(s, 'posix-rename@openssh.com')) {
              await call<void>(s, (cb) =>
                s.sftp.ext_openssh_rename(this.path(name), this.path(to), (e) => cb(e, undefined)),
              );
            } else {
              await call<void>(s, (cb) =>
                s.sftp.rename(this.path(name), this.path(to), (e) => cb(e, undefined)),
              );
            }
            return true;
          } catch (err) {
            if (sftpCode(err) === SFTP_NO_SUCH_FILE) return false;
            throw err;
          }
        }),
      replaceWith: (temp, name) => this.withSession((s) => renameOver(s, this.path(temp), this.path(name))),
      unlink: (name) => this.removeName(name),
      tempName,
    };
  }
}
