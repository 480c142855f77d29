import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../util/errors.js';
import { redactUrl } from '../util/redact.js';

export interface FileLocation {
  kind: 'file';
  /** absolute local directory */
  dir: string;
}

export interface SshLocation {
  kind: 'ssh';
  /** user from the URL, if any (otherwise ssh config / local user) */
  user?: string;
  host: string;
  /** port from the URL, if any (otherwise ssh config / 22) */
  port?: number;
  /** remote directory: relative to the remote user's home, or absolute (`ssh://host//abs`); '.' is the home */
  path: string;
}

export interface S3Location {
  kind: 's3';
  bucket: string;
  /** key prefix without leading/trailing slashes; '' for the bucket root */
  prefix: string;
}

export type StorageLocation = FileLocation | SshLocation | S3Location;

const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;

/** The URL as it may be printed: any password is replaced. */
export function displayUrl(raw: string): string {
  return redactUrl(raw);
}

function stripSlashes(p: string): string {
  return p.replace(/\/+$/, '');
}

function decode(part: string, url: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new UserError(`storage URL ${displayUrl(url)}: bad percent-encoding in "${part}"`);
  }
}

/**
 * Parse a storage URL. Accepted forms:
 * - `file:///abs/path` or a bare path (relative paths are relative to `cwd`)
 * - `ssh://[user@]host[:port]/path`: path relative to the remote user's home; `ssh://host//abs` is absolute
 * - `s3://bucket/prefix`
 * Anything else is a UserError naming the URL.
 */
export function parseStorageUrl(raw: string, cwd: string): StorageLocation {
  const shown = displayUrl(raw);
  if (raw.trim() === '') throw new UserError('storage URL is empty');
  const m = SCHEME.exec(raw);
  if (!m) {
    if (/^file:/i.test(raw)) return parseFile(raw, shown);
    return { kind: 'file', dir: resolve(cwd, raw) };
  }
  const scheme = m[1]!.toLowerCase();
  if (scheme === 'file') return parseFile(raw, shown);
  if (scheme !== 'ssh' && scheme !== 's3') {
    throw new UserError(
      `storage URL ${shown}: unsupported scheme "${scheme}://" (expected file://, ssh://, s3:// or a path)`,
    );
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UserError(`storage URL ${shown} is not a valid URL`);
  }
  if (url.search || url.hash) {
    throw new UserError(`storage URL ${shown}: query strings and fragments are not supported`);
  }
  if (scheme === 'ssh') return parseSsh(raw, url, shown);
  return parseS3(raw, url, shown);
}

function parseFile(raw: string, shown: string): FileLocation {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UserError(`storage URL ${shown} is not a valid file:// URL`);
  }
  if (url.hostname !== '' && url.hostname !== 'localhost') {
    throw new UserError(
      `storage URL ${shown}: file:// URLs take an absolute path (file:///abs/path), not host "${url.hostname}"`,
    );
  }
  if (url.search || url.hash) {
    throw new UserError(`storage URL ${shown}: query strings and fragments are not supported`);
  }
  let dir: string;
  try {
    dir = fileURLToPath(url);
  } catch (err) {
    throw new UserError(`storage URL ${shown}: ${(err as Error).message}`);
  }
  return { kind: 'file', dir: stripSlashes(dir) || '/' };
}

function parseSsh(raw: string, url: URL, shown: string): SshLocation {
  let host = url.hostname;
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (!host) throw new UserError(`storage URL ${shown}: no host (expected ssh://[user@]host[:port]/path)`);
  if (url.password) {
    throw new UserError(
      `storage URL ${shown}: passwords in ssh:// URLs are not supported; use keys or ssh-agent`,
    );
  }
  const loc: SshLocation = { kind: 'ssh', host: decode(host, raw), path: '.' };
  if (url.username) loc.user = decode(url.username, raw);
  if (url.port) loc.port = Number(url.port);
  // drop the one leading slash: the rest is relative to the home directory, or absolute when it was `//`
  const p = decode(url.pathname, raw).replace(/^\//, '');
  const trimmed = p === '/' ? '/' : stripSlashes(p);
  loc.path = trimmed === '' ? '.' : trimmed.replace(/\/{2,}/g, '/');
  if (loc.path.startsWith('/') && loc.path.length > 1) loc.path = `/${loc.path.replace(/^\/+/, '')}`;
  return loc;
}

function parseS3(raw: string, url: URL, shown: string): S3Location {
  const bucket = decode(url.hostname, raw);
  if (url.username || url.password || url.port) {
    throw new UserError(`storage URL ${shown}: expected s3://bucket/prefix (no user or port)`);
  }
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new UserError(`storage URL ${shown}: "${bucket}" is not a valid S3 bucket name`);
  }
  const prefix = decode(url.pathname, raw)
    .split('/')
    .filter((s) => s !== '')
    .join('/');
  return { kind: 's3', bucket, prefix };
}
