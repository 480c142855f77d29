// Downloads for the local build (builder ISOs, checksum and signature files, firmware packages):
// http(s):// and file:// URLs, resumable into a cache directory, atomic once complete.
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { UserError } from '../util/errors.js';
import { fetchTarget } from '../util/redact.js';

/** A URL that does not exist (HTTP 404/410, or a missing file:// path). */
export class NotFoundError extends UserError {
  readonly url: string;
  constructor(url: string) {
    super(`not found: ${url}`);
    this.name = 'NotFoundError';
    this.url = url;
  }
}

function isFileUrl(url: string): boolean {
  return url.startsWith('file://');
}

function filePath(url: string): string {
  try {
    return fileURLToPath(url);
  } catch {
    throw new UserError(`bad file:// URL: ${url}`);
  }
}

function checkScheme(url: string): void {
  if (!/^(https?|file):\/\//.test(url)) {
    throw new UserError(`unsupported URL ${url}: expected http://, https:// or file://`);
  }
}

/** Fetch a small file into memory. NotFoundError when it does not exist. */
export async function fetchBytes(url: string, timeoutMs = 120_000): Promise<Buffer> {
  checkScheme(url);
  if (isFileUrl(url)) {
    try {
      return await readFile(filePath(url));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(url);
      throw new UserError(`cannot read ${url}: ${(err as Error).message}`);
    }
  }
  let res: Response;
  try {
    const t = fetchTarget(url);
    res = await fetch(t.url, {
      headers: t.headers,
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'follow',
    });
  } catch (err) {
    throw new UserError(`cannot download ${url}: ${(err as Error).message}`);
  }
  if (res.status === 404 || res.status === 410) throw new NotFoundError(url);
  if (!res.ok) throw new UserError(`cannot download ${url}: HTTP ${res.status} ${res.statusText}`);
  return Buffer.from(await res.arrayBuffer());
}

/** Fetch a small text file (checksum, signature, index). NotFoundError when it does not exist. */
export async function fetchText(url: string, timeoutMs = 60_000): Promise<string> {
  return (await fetchBytes(url, timeoutMs)).toString('utf8');
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

export interface DownloadResult {
  /** bytes fetched by this call (0 when a partial download was already complete) */
  fetched: number;
  /** bytes that were already there from an earlier, interrupted download */
  resumedFrom: number;
}

/**
 * Download `url` to `dest`. The data goes to `<dest>.part` first; an existing .part file is resumed with an
 * HTTP Range request (or from the same offset of a file:// source), and only a complete download is renamed
 * to `dest`. The caller verifies the file before trusting it.
 */
export async function downloadFile(
  url: string,
  dest: string,
  timeoutMs = 30 * 60_000,
): Promise<DownloadResult> {
  checkScheme(url);
  await mkdir(dirname(dest), { recursive: true });
  const part = `${dest}.part`;
  let offset = await sizeOf(part);
  let fetched = 0;

  if (isFileUrl(url)) {
    const src = filePath(url);
    let total: number;
    try {
      total = (await stat(src)).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(url);
      throw new UserError(`cannot read ${url}: ${(err as Error).message}`);
    }
    if (offset > total) {
      await rm(part, { force: true });
      offset = 0;
    }
    if (offset < total) {
      await pipeline(createReadStream(src, { start: offset }), createWriteStream(part, { flags: 'a' }));
      fetched = total - offset;
    }
  } else {
    const headers: Record<string, string> = {};
    if (offset > 0) headers.Range = `bytes=${offset}-`;
    let res: Response;
    try {
      const t = fetchTarget(url);
      res = await fetch(t.url, {
        headers: { ...headers, ...t.headers },
        signal: AbortSignal.timeout(timeoutMs),
        redirect: 'follow',
      });
    } catch (err) {
      throw new UserError(`cannot download ${url}: ${(err as Error).message}`);
    }
    if (res.status === 404 || res.status === 410) throw new NotFoundError(url);
    if (res.status === 416 && offset > 0) {
      // the partial file is already complete (or longer than the source): start over to be sure
      await rm(part, { force: true });
      return await downloadFile(url, dest, timeoutMs);
    }
    if (!res.ok || !res.body)
      throw new UserError(`cannot download ${url}: HTTP ${res.status} ${res.statusText}`);
    // a server that ignores Range answers 200 with the whole file: start from zero
    const append = res.status === 206 && offset > 0;
    if (!append) offset = 0;
    const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
    await pipeline(body, createWriteStream(part, { flags: append ? 'a' : 'w' }));
    fetched = (await sizeOf(part)) - offset;
  }
  await rename(part, dest);
  return { fetched, resumedFrom: offset };
}
