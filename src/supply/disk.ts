// Reading a built disk image without mounting it (these machines cannot mount partitions of loop devices):
// qemu-img turns a qcow2 into a sparse raw file, sfdisk finds the root partition, and debugfs reads the ext4
// filesystem at that offset: inode ownership and modes from `ls -p`, contents from `rdump` into a scratch tree.
import { mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { errorMessage, UserError } from '../util/errors.js';
import {
  DEFAULT_EXCLUDES,
  type EntryType,
  entryTypeOfMode,
  type Manifest,
  type ManifestEntry,
  makeManifest,
  manifestFromTree,
} from './manifest.js';

/** GPT type of a Linux filesystem partition; MBR type 83. */
const LINUX_GPT = '0FC63DAF-8483-4772-8E79-3D69D8477DE4';

async function run(cmd: string, args: readonly string[], what: string): Promise<string> {
  let r: Awaited<ReturnType<typeof execa>>;
  try {
    r = await execa(cmd, args, {
      reject: false,
      stdin: 'ignore',
      encoding: 'utf8',
      maxBuffer: 512 * 1024 * 1024,
    });
  } catch (err) {
    throw new UserError(`${what}: ${cmd}: ${errorMessage(err)}`);
  }
  if (r.exitCode === undefined) throw new UserError(`${what}: ${cmd} is not installed`);
  if (r.exitCode !== 0) {
    throw new UserError(
      `${what}: ${cmd} failed (exit ${r.exitCode}): ${String(r.stderr).trim().split('\n').slice(-2).join(' ')}`,
    );
  }
  return String(r.stdout);
}

/** A scratch directory, in memory when /dev/shm is there (dumping a root is then ~10x faster). */
export async function scratchDir(prefix: string): Promise<string> {
  try {
    if ((await stat('/dev/shm')).isDirectory()) return await mkdtemp(join('/dev/shm', prefix));
  } catch {
    // fall back to the temp directory
  }
  return mkdtemp(join(tmpdir(), prefix));
}

async function isQcow2(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(4);
    await fh.read(b, 0, 4, 0);
    return b.equals(Buffer.from([0x51, 0x46, 0x49, 0xfb]));
  } finally {
    await fh.close();
  }
}

/** Whether an ext2/3/4 superblock (magic 0xEF53 at byte 56 of the superblock, 1024 bytes in) starts at `offset`. */
async function hasExtSuperblockAt(path: string, offset: number): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(2);
    const { bytesRead } = await fh.read(b, 0, 2, offset + 1024 + 56);
    return bytesRead === 2 && b.readUInt16LE(0) === 0xef53;
  } finally {
    await fh.close();
  }
}

/** Byte offset of the root (Linux) partition; 0 for a bare filesystem image. The largest one wins. */
export async function rootPartitionOffset(raw: string): Promise<number> {
  // the VM builder's BIOS disk is one ext4 filesystem over the whole disk, with extlinux's boot sector in
  // front: what sfdisk reads there as a partition table is boot code, so look for the superblock first
  if (await hasExtSuperblockAt(raw, 0)) return 0;
  let text: string;
  try {
    text = await run('sfdisk', ['-J', raw], raw);
  } catch {
    return 0; // no partition table
  }
  const pt = (
    JSON.parse(text) as {
      partitiontable?: { sectorsize?: number; partitions?: { start: number; size: number; type: string }[] };
    }
  ).partitiontable;
  const sector = pt?.sectorsize ?? 512;
  const linux = (pt?.partitions ?? []).filter((p) => p.type === '83' || p.type.toUpperCase() === LINUX_GPT);
  if (linux.length === 0) throw new UserError(`${raw}: no Linux partition in its partition table`);
  const best = linux.reduce((a, b) => (b.size > a.size ? b : a));
  return best.start * sector;
}

interface InodeMeta {
  mode: number;
  uid: number;
  gid: number;
  type: EntryType;
}

function quote(p: string): string {
  return `"${p.replace(/(["\\])/g, '\\$1')}"`;
}

/** Every inode's type, mode and owner by path, read level by level with `debugfs -f` (one run per depth). */
export async function ext4Inodes(
  spec: string,
  exclude: readonly string[] = DEFAULT_EXCLUDES,
): Promise<Map<string, InodeMeta>> {
  const meta = new Map<string, InodeMeta>();
  const skip = new Set(exclude);
  let level = ['/'];
  const scratch = await mkdtemp(join(tmpdir(), 'cib-debugfs-'));
  try {
    while (level.length > 0) {
      const cmdFile = join(scratch, 'cmds');
      await writeFile(cmdFile, level.map((d) => `ls -p ${quote(d)}\n`).join(''));
      const out = await run('debugfs', ['-f', cmdFile, spec], spec);
      const next: string[] = [];
      const headers = new Map(level.map((d) => [`debugfs: ls -p ${quote(d)}`, d]));
      let dir = '';
      for (const line of out.split('\n')) {
        if (line.startsWith('debugfs: ls -p ')) {
          dir = headers.get(line) ?? '';
          continue;
        }
        // /<inode>/<mode>/<uid>/<gid>/<name>/<size or empty for dirs>/
        const m = /^\/(\d+)\/([0-7]+)\/(\d+)\/(\d+)\/(.*)\/(\d*)\/$/.exec(line);
        // inode 0: an unused slot (a deleted entry), which `ls -p` lists with an empty name
        if (!m || !dir || m[1] === '0') continue;
        const name = m[5]!;
        const mode = Number.parseInt(m[2]!, 8);
        const path = name === '.' ? dir : name === '..' ? '' : dir === '/' ? `/${name}` : `${dir}/${name}`;
        if (!path || skip.has(path)) continue;
        if (name === '.' && meta.has(path)) continue;
        const type = entryTypeOfMode(mode);
        meta.set(path, { mode: mode & 0o7777, uid: Number(m[3]), gid: Number(m[4]), type });
        if (type === 'dir' && name !== '.') next.push(path);
      }
      level = next;
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  return meta;
}

export interface DiskContents {
  manifest: Manifest;
  /** /lib/apk/db/installed, when the root has one */
  installedDb?: string;
}

/**
 * Read the root filesystem of a disk image (raw, qcow2 or another qemu-img `format`, partitioned or bare ext4):
 * its manifest and its installed-package database. Nothing is mounted; the scratch copies are removed afterwards.
 */
export async function readDisk(image: string, format?: string): Promise<DiskContents> {
  const scratch = await scratchDir('cib-disk-');
  try {
    let raw = image;
    const from = format && format !== 'raw' ? format : (await isQcow2(image)) ? 'qcow2' : undefined;
    if (from) {
      raw = join(scratch, 'disk.raw');
      await run('qemu-img', ['convert', '-f', from, '-O', 'raw', image, raw], image);
    }
    const offset = await rootPartitionOffset(raw);
    const spec = offset ? `${raw}?offset=${offset}` : raw;
    const tree = join(scratch, 'root');
    await mkdir(tree);
    // both only read the file system: the inode listing and the dump run side by side
    const [meta] = await Promise.all([
      ext4Inodes(spec),
      run('debugfs', ['-R', `rdump / ${quote(tree)}`, spec], image),
    ]);
    if (raw !== image) await rm(raw, { force: true });
    // not root: the dump keeps the image's modes, and a file like busybox's setuid helper (4111) is not readable
    // by its owner; the manifest takes modes and owners from the inodes (meta), so the dump may be opened up
    if (process.getuid?.() !== 0) await run('chmod', ['-R', 'u+rwX', tree], image);
    const fromTree = await manifestFromTree(tree, { exclude: DEFAULT_EXCLUDES, meta });
    // rdump leaves out device nodes, fifos and sockets: they come from the inode listing alone
    const seen = new Set(fromTree.entries.map((e) => e.path));
    const extra: ManifestEntry[] = [];
    for (const [path, m] of meta) {
      if (!seen.has(path)) extra.push({ path, ...m });
    }
    const manifest = extra.length ? makeManifest([...fromTree.entries, ...extra]) : fromTree;
    let installedDb: string | undefined;
    try {
      installedDb = await readFile(join(tree, 'lib/apk/db/installed'), 'utf8');
    } catch {
      installedDb = undefined;
    }
    return { manifest, ...(installedDb !== undefined ? { installedDb } : {}) };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
