import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, lstatSync } from 'node:fs';
import { lstat, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, sep } from 'node:path';

/**
 * Write a file atomically: write a temporary sibling, fsync it, rename it over the target,
 * then fsync the directory. Readers see either the old or the new content, never a torn file.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const fh = await open(tmp, 'w', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await syncDir(dir);
}

export async function syncDir(dir: string): Promise<void> {
  try {
    const dh = await open(dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  } catch {
    // some filesystems do not support fsync on directories; the rename is still atomic
  }
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Whether a path exists, without following a final symlink. */
export async function lexists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** lexists, synchronously (the work-directory installation copies a few dozen files with synchronous calls). */
export function lexistsSync(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

export type HashAlgorithm = 'sha256' | 'sha512';

/** Hex digest of a file, streamed. */
export async function hashFile(path: string, algorithm: HashAlgorithm = 'sha512'): Promise<string> {
  const hash = createHash(algorithm);
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Parse a checksum file: `<hex>` or `<hex>  <file>` (the first token is the digest). */
export function parseChecksum(text: string): string {
  const token = text.trim().split(/\s+/)[0] ?? '';
  if (!/^[0-9a-f]{64}([0-9a-f]{64})?$/i.test(token)) {
    throw new Error(`not a sha256/sha512 checksum: ${JSON.stringify(text.slice(0, 80))}`);
  }
  return token.toLowerCase();
}

/** Is `path` `root` or inside it (both real paths: symlinks resolved)? */
export function isInside(path: string, root: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : `${root}${sep}`);
}
