import { copyFile, link, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { errorMessage } from '../util/errors.js';
import { syncDir } from '../util/fs.js';
import { BaseStorage, type BaseStorageOptions, NotFoundError, tempName } from './base.js';
import { type ConditionalOps, PosixConditional, type PosixPrimitives } from './conditional.js';

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

/** A local (or locally mounted) directory: file:///abs/path or a bare path. */
export class FileStorage extends BaseStorage {
  readonly dir: string;

  constructor(url: string, dir: string, log: Logger, opts: BaseStorageOptions = {}) {
    super(url, log, opts);
    this.dir = dir;
  }

  protected async putFile(localPath: string, name: string): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const tmp = join(this.dir, tempName(name));
    try {
      await copyFile(localPath, tmp);
      const fh = await open(tmp, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, join(this.dir, name));
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    await syncDir(this.dir);
  }

  protected async getFile(name: string, localPath: string): Promise<void> {
    try {
      await copyFile(join(this.dir, name), localPath);
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(name);
      throw err;
    }
  }

  protected async readSmall(name: string): Promise<Buffer> {
    try {
      return await readFile(join(this.dir, name));
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(name);
      throw err;
    }
  }

  protected async listNames(): Promise<string[]> {
    try {
      const entries = await readdir(this.dir, { withFileTypes: true });
      return entries.filter((e) => !e.isDirectory()).map((e) => e.name);
    } catch (err) {
      if (isNotFound(err)) return [];
      throw err;
    }
  }

  protected override async entryTimes(names: readonly string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const n of names) {
      const st = await stat(join(this.dir, n)).catch(() => undefined);
      if (st) out.set(n, st.mtimeMs);
    }
    return out;
  }

  protected async removeName(name: string): Promise<void> {
    await rm(join(this.dir, name), { force: true });
  }

  protected describe(err: unknown): string {
    return errorMessage(err);
  }

  private cond: ConditionalOps | undefined;

  /** Create-only and compare-and-swap writes (link(2) and rename(2) in this directory). */
  get conditional(): ConditionalOps {
    this.cond ??= new PosixConditional(this.posixPrimitives());
    return this.cond;
  }

  private posixPrimitives(): PosixPrimitives {
    const path = (name: string) => join(this.dir, name);
    const code = (err: unknown) => (err as NodeJS.ErrnoException | undefined)?.code;
    return {
      readRaw: async (name) => {
        try {
          return await readFile(path(name));
        } catch (err) {
          if (isNotFound(err)) return undefined;
          throw err;
        }
      },
      writeTemp: async (name, data) => {
        await mkdir(this.dir, { recursive: true });
        const tmp = tempName(name);
        const fh = await open(path(tmp), 'wx', 0o644);
        try {
          await fh.writeFile(data);
          await fh.sync();
        } finally {
          await fh.close();
        }
        return tmp;
      },
      linkNew: async (temp, name) => {
        try {
          await link(path(temp), path(name));
        } catch (err) {
          if (code(err) === 'EEXIST') return false;
          throw err;
        }
        await syncDir(this.dir);
        return true;
      },
      renameAway: async (name, to) => {
        try {
          await rename(path(name), path(to));
          return true;
        } catch (err) {
          if (isNotFound(err)) return false;
          throw err;
        }
      },
      replaceWith: async (temp, name) => {
        await rename(path(temp), path(name));
        await syncDir(this.dir);
      },
      unlink: (name) => rm(path(name), { force: true }),
      tempName,
    };
  }
}
