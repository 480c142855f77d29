import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { UserError } from '../util/errors.js';
import { fetchTarget } from '../util/redact.js';

const TIMEOUT_MS = 15_000;

function filePath(url: string): string {
  try {
    return fileURLToPath(url);
  } catch (err) {
    throw new UserError(`${url}: not a valid file:// URL (${(err as Error).message})`);
  }
}

/** Text of an http(s):// or file:// URL; failures are UserErrors naming the URL and what to do. */
export async function readUrl(url: string, what: string, hint = ''): Promise<string> {
  if (url.startsWith('file:')) {
    try {
      return await readFile(filePath(url), 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new UserError(
        `${what} ${url}: ${code === 'ENOENT' ? 'file not found' : (err as Error).message}${hint}`,
      );
    }
  }
  if (!/^https?:\/\//.test(url)) throw new UserError(`${what} ${url}: expected an http(s):// or file:// URL`);
  let res: Response;
  try {
    const t = fetchTarget(url);
    res = await fetch(t.url, {
      headers: t.headers,
      signal: AbortSignal.timeout(TIMEOUT_MS),
      redirect: 'follow',
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const why =
      (err as Error).name === 'TimeoutError'
        ? `no answer within ${TIMEOUT_MS / 1000} s`
        : (cause?.code ?? cause?.message ?? (err as Error).message);
    throw new UserError(`${what} ${url}: cannot be fetched (${why})${hint}`);
  }
  if (!res.ok) throw new UserError(`${what} ${url}: HTTP ${res.status} ${res.statusText}${hint}`);
  return await res.text();
}

/**
 * Names in a directory: for file:// the directory's entries, for http(s):// the targets of the `href="..."`
 * links of its HTML index page (what Alpine's mirrors serve).
 */
export async function listUrl(url: string, what: string): Promise<string[]> {
  if (url.startsWith('file:')) {
    try {
      return (await readdir(filePath(url))).sort();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new UserError(
        `${what} ${url}: ${code === 'ENOENT' ? 'directory not found' : (err as Error).message}`,
      );
    }
  }
  const html = await readUrl(url.endsWith('/') ? url : `${url}/`, what);
  const names: string[] = [];
  for (const m of html.matchAll(/href="([^"?#]+)"/g)) {
    const name = decodeURIComponent(m[1] ?? '');
    if (name && !name.includes('/')) names.push(name);
  }
  return names;
}
