import { access, constants } from 'node:fs/promises';
import { delimiter, join } from 'node:path';

/**
 * Whether a command can be run: a path with a slash must be executable as given, a bare name must be an
 * executable file in one of $PATH's directories (as the shell would find it). Used to name what is missing
 * before a step starts, instead of failing halfway with ENOENT.
 */
export async function onPath(bin: string, path: string = process.env.PATH ?? ''): Promise<boolean> {
  const candidates = bin.includes('/')
    ? [bin]
    : path.split(delimiter).flatMap((d) => (d ? [join(d, bin)] : []));
  for (const file of candidates) {
    try {
      await access(file, constants.X_OK);
      return true;
    } catch {
      // next
    }
  }
  return false;
}
