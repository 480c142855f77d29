// The root filesystem manifest: one line per entry, sorted by path,
//   <path> TAB <type> TAB <mode> TAB <uid>:<gid> TAB <size> TAB <sha256> TAB <link target>
// ("-" where a column does not apply), and its digest, the image's content digest. It is read from a directory
// tree (the chroot builder's target) or from an ext4 filesystem image without mounting it (debugfs), and the two
// give the same manifest for the same content.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import pLimit from 'p-limit';

export type EntryType = 'dir' | 'file' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';

export interface ManifestEntry {
  /** absolute, "/" for the root */
  path: string;
  type: EntryType;
  /** permission bits with setuid/setgid/sticky */
  mode: number;
  uid: number;
  gid: number;
  /** regular files only */
  size?: number;
  /** regular files only */
  sha256?: string;
  /** symlinks only */
  target?: string;
}

export const MANIFEST_HEADER = '# path\ttype\tmode\towner\tsize\tsha256\ttarget';

/** Entries every filesystem of this kind has and no build put there: left out of manifests. */
export const DEFAULT_EXCLUDES: readonly string[] = ['/lost+found'];

function esc(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n');
}

function unesc(s: string): string {
  return s.replace(/\\(.)/g, (_, c: string) => (c === 't' ? '\t' : c === 'n' ? '\n' : c));
}

function cmpPath(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

export function formatEntry(e: ManifestEntry): string {
  return [
    esc(e.path),
    e.type,
    (e.mode & 0o7777).toString(8).padStart(4, '0'),
    `${e.uid}:${e.gid}`,
    e.size === undefined ? '-' : String(e.size),
    e.sha256 ?? '-',
    e.target === undefined ? '-' : esc(e.target),
  ].join('\t');
}

export function parseEntry(line: string): ManifestEntry {
  const [path, type, mode, owner, size, sha256, target] = line.split('\t');
  if (target === undefined) throw new Error(`not a manifest line: ${JSON.stringify(line.slice(0, 120))}`);
  const [uid, gid] = owner!.split(':');
  return {
    path: unesc(path!),
    type: type as EntryType,
    mode: Number.parseInt(mode!, 8),
    uid: Number(uid),
    gid: Number(gid),
    ...(size !== '-' ? { size: Number(size) } : {}),
    ...(sha256 !== '-' ? { sha256: sha256! } : {}),
    ...(target !== '-' ? { target: unesc(target) } : {}),
  };
}

export interface Manifest {
  entries: ManifestEntry[];
  /** the manifest file's text */
  text: string;
  /** "sha256:<hex>" of `text` */
  digest: string;
}

export function makeManifest(entries: readonly ManifestEntry[]): Manifest {
  const sorted = [...entries].sort((a, b) => cmpPath(a.path, b.path));
  const text = `${[MANIFEST_HEADER, ...sorted.map(formatEntry)].join('\n')}\n`;
  return { entries: sorted, text, digest: `sha256:${createHash('sha256').update(text).digest('hex')}` };
}

export function parseManifest(text: string): Manifest {
  const entries = text
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map(parseEntry);
  return { entries, text, digest: `sha256:${createHash('sha256').update(text).digest('hex')}` };
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Manifest entry type of a st_mode (stat of a tree, or an inode listed by debugfs). */
export function entryTypeOfMode(mode: number): EntryType {
  switch (mode & 0o170000) {
    case 0o040000:
      return 'dir';
    case 0o100000:
      return 'file';
    case 0o120000:
      return 'symlink';
    case 0o020000:
      return 'char';
    case 0o060000:
      return 'block';
    case 0o010000:
      return 'fifo';
    default:
      return 'socket';
  }
}

export interface TreeOptions {
  /** absolute paths (in the image) left out with everything below them */
  exclude?: readonly string[];
  /** ownership and mode from somewhere else than the tree (ext4: from the inode, not from the dump) */
  meta?: ReadonlyMap<string, { mode: number; uid: number; gid: number; type: EntryType }>;
}

/** Walk a directory tree (not following symlinks) into manifest entries. */
export async function manifestFromTree(root: string, opts: TreeOptions = {}): Promise<Manifest> {
  const exclude = new Set(opts.exclude ?? []);
  const entries: ManifestEntry[] = [];
  const hashes: { entry: ManifestEntry; file: string }[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    const names = (await readdir(dir)).filter((name) => !exclude.has(`${rel}/${name}`));
    // a directory's entries are looked at together (the order of the manifest comes from its final sort)
    const stats = await Promise.all(names.map((name) => lstat(join(dir, name))));
    const subdirs: Promise<void>[] = [];
    for (const [i, name] of names.entries()) {
      const path = `${rel}/${name}`;
      const abs = join(dir, name);
      const st = stats[i]!;
      const m = opts.meta?.get(path);
      const type = m?.type ?? entryTypeOfMode(st.mode);
      const e: ManifestEntry = {
        path,
        type,
        mode: m?.mode ?? st.mode & 0o7777,
        uid: m?.uid ?? st.uid,
        gid: m?.gid ?? st.gid,
      };
      if (type === 'file') {
        e.size = st.size;
        hashes.push({ entry: e, file: abs });
      } else if (type === 'symlink') {
        subdirs.push(
          readlink(abs).then((t) => {
            e.target = t;
          }),
        );
      }
      entries.push(e);
      if (type === 'dir') subdirs.push(walk(abs, path));
    }
    await Promise.all(subdirs);
  };
  const rootSt = await lstat(root);
  const rm = opts.meta?.get('/');
  entries.push({
    path: '/',
    type: 'dir',
    mode: rm?.mode ?? rootSt.mode & 0o7777,
    uid: rm?.uid ?? rootSt.uid,
    gid: rm?.gid ?? rootSt.gid,
  });
  await walk(root, '');
  // hashing is I/O bound: a few files in flight
  const limit = pLimit(8);
  await Promise.all(
    hashes.map((h) =>
      limit(async () => {
        h.entry.sha256 = await sha256File(h.file);
      }),
    ),
  );
  return makeManifest(entries);
}

/** Line-oriented comparison: the paths that differ between two manifests, first ones first. */
export interface ManifestDiff {
  added: string[];
  removed: string[];
  changed: { path: string; fields: string[] }[];
}

export function diffManifests(a: Manifest, b: Manifest): ManifestDiff {
  const am = new Map(a.entries.map((e) => [e.path, e]));
  const bm = new Map(b.entries.map((e) => [e.path, e]));
  const out: ManifestDiff = { added: [], removed: [], changed: [] };
  for (const [p, ea] of am) {
    const eb = bm.get(p);
    if (!eb) {
      out.removed.push(p);
      continue;
    }
    const fields: string[] = [];
    for (const k of ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'target'] as const) {
      if (ea[k] !== eb[k]) fields.push(k);
    }
    if (fields.length) out.changed.push({ path: p, fields });
  }
  for (const p of bm.keys()) if (!am.has(p)) out.added.push(p);
  out.added.sort(cmpPath);
  out.removed.sort(cmpPath);
  out.changed.sort((x, y) => cmpPath(x.path, y.path));
  return out;
}

/** "changed /etc/motd (sha256, size); added /x; removed /y" with at most `max` paths named. */
export function describeDiff(d: ManifestDiff, max = 5): string {
  const items = [
    ...d.changed.map((c) => ({ path: c.path, text: `changed ${c.path} (${c.fields.join(', ')})` })),
    ...d.added.map((p) => ({ path: p, text: `added ${p}` })),
    ...d.removed.map((p) => ({ path: p, text: `removed ${p}` })),
  ].sort((x, y) => cmpPath(x.path, y.path));
  if (items.length === 0) return 'no differences';
  const shown = items.slice(0, max).map((i) => i.text);
  const more = items.length - shown.length;
  return `${shown.join('; ')}${more > 0 ? `; and ${more} more` : ''}`;
}
