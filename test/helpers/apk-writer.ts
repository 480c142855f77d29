// Writing signed apk v2 packages and a signed APKINDEX.tar.gz, the way abuild and `apk index` + abuild-sign do:
//
//   <name>-<ver>.apk = [signature tar.gz][control tar.gz][data tar.gz]   (three concatenated gzip streams)
//     signature: one entry .SIGN.RSA.<key>.rsa.pub = RSA/SHA-1 signature over the control gzip stream
//     control:   .PKGINFO (+ .post-install ...), its `datahash` = SHA-256 of the data gzip stream
//     data:      the files, each regular file and symlink with an APK-TOOLS.checksum.SHA1 pax record
//   APKINDEX.tar.gz = [signature tar.gz][index tar.gz]; the signature covers the index gzip stream, and each
//     entry's C:Q1<base64 SHA-1 of the control stream> ties the package to the signed index.
//
// Only for the stand-in packages of the tests (kernel, mkinitfs, bootloaders): the real Alpine packages are
// never re-signed. Output is deterministic (fixed mtimes, sorted entries, gzip without a timestamp).
import { createHash, sign } from 'node:crypto';
import { gzipSync } from 'node:zlib';

export interface ApkFile {
  /** path inside the root, without a leading slash ("usr/bin/x"; directories without a trailing slash) */
  path: string;
  mode: number;
  /** regular file contents */
  data?: Buffer;
  /** symlink target */
  symlink?: string;
  /** a directory */
  dir?: boolean;
}

export interface ApkSigningKey {
  /** the public key's file name as installed in /etc/apk/keys, e.g. "cib-test-1a2b3c4d.rsa.pub" */
  name: string;
  privatePem: string;
}

export interface ApkSpec {
  name: string;
  version: string;
  arch: string;
  description: string;
  license?: string;
  depends?: string[];
  provides?: string[];
  /** apk's provider_priority (k: in the index): picks this package for an unversioned virtual name */
  providerPriority?: number;
  files: ApkFile[];
  scripts?: Partial<Record<'pre-install' | 'post-install' | 'post-upgrade' | 'pre-deinstall', string>>;
  /** build date (seconds since the epoch), also every entry's mtime */
  builddate: number;
}

export interface BuiltApk {
  fileName: string;
  buf: Buffer;
  indexEntry: string;
}

function octal(n: number, width: number): string {
  return `${n.toString(8).padStart(width - 1, '0')}\0`;
}

function header(o: {
  name: string;
  mode: number;
  size: number;
  mtime: number;
  type: string;
  linkname?: string;
}): Buffer {
  const h = Buffer.alloc(512);
  let name = o.name;
  let prefix = '';
  if (Buffer.byteLength(name) > 100) {
    const cut = name.lastIndexOf('/', name.length - 2);
    prefix = name.slice(0, cut);
    name = name.slice(cut + 1);
    if (Buffer.byteLength(name) > 100 || Buffer.byteLength(prefix) > 155) {
      throw new Error(`tar: path too long: ${o.name}`);
    }
  }
  h.write(name, 0, 100, 'utf8');
  h.write(octal(o.mode & 0o7777, 8), 100, 'latin1');
  h.write(octal(0, 8), 108, 'latin1');
  h.write(octal(0, 8), 116, 'latin1');
  h.write(octal(o.size, 12), 124, 'latin1');
  h.write(octal(o.mtime, 12), 136, 'latin1');
  h.write('        ', 148, 'latin1');
  h.write(o.type, 156, 'latin1');
  if (o.linkname) h.write(o.linkname, 157, 100, 'utf8');
  h.write('ustar\0', 257, 'latin1');
  h.write('00', 263, 'latin1');
  h.write('root', 265, 'latin1');
  h.write('root', 297, 'latin1');
  h.write(octal(0, 8), 329, 'latin1');
  h.write(octal(0, 8), 337, 'latin1');
  h.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return h;
}

function pad(buf: Buffer): Buffer {
  const rest = buf.length % 512;
  return rest === 0 ? buf : Buffer.concat([buf, Buffer.alloc(512 - rest)]);
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = body.length + 1;
  while (`${len}${body}`.length !== len) len = `${len}${body}`.length;
  return `${len}${body}`;
}

/** An uncompressed tar stream of the entries (in the given order); `end` appends the end-of-archive blocks. */
export function tarStream(
  entries: readonly ApkFile[],
  mtime: number,
  opts: { checksums?: boolean; end?: boolean } = {},
): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const name = e.dir ? `${e.path}/` : e.path;
    if (opts.checksums && !e.dir) {
      const sha1 = createHash('sha1')
        .update(e.symlink !== undefined ? e.symlink : (e.data ?? Buffer.alloc(0)))
        .digest('hex');
      const pax = Buffer.from(paxRecord('APK-TOOLS.checksum.SHA1', sha1));
      parts.push(header({ name: 'PaxHeader', mode: 0o644, size: pax.length, mtime, type: 'x' }), pad(pax));
    }
    if (e.dir) parts.push(header({ name, mode: e.mode, size: 0, mtime, type: '5' }));
    else if (e.symlink !== undefined) {
      parts.push(header({ name, mode: e.mode, size: 0, mtime, type: '2', linkname: e.symlink }));
    } else {
      const data = e.data ?? Buffer.alloc(0);
      parts.push(header({ name, mode: e.mode, size: data.length, mtime, type: '0' }), pad(data));
    }
  }
  if (opts.end) parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** The files plus every parent directory, sorted by path (as `tar -c` of a sorted tree lists them). */
function withParents(files: readonly ApkFile[]): ApkFile[] {
  const byPath = new Map<string, ApkFile>();
  for (const f of files) {
    const parts = f.path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (!byPath.has(d)) byPath.set(d, { path: d, mode: 0o755, dir: true });
    }
    byPath.set(f.path, f);
  }
  return [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

function gz(buf: Buffer): Buffer {
  return gzipSync(buf, { level: 9 });
}

function signatureStream(signed: Buffer, key: ApkSigningKey, mtime: number): Buffer {
  const sig = sign('sha1', signed, key.privatePem);
  return gz(tarStream([{ path: `.SIGN.RSA.${key.name}`, mode: 0o644, data: sig }], mtime));
}

/** Build one signed package and its APKINDEX entry. */
export function buildApk(spec: ApkSpec, key: ApkSigningKey): BuiltApk {
  const entries = withParents(spec.files);
  const data = gz(tarStream(entries, spec.builddate, { checksums: true, end: true }));
  const installed = entries.reduce((n, e) => n + (e.data ? Math.ceil(e.data.length / 4096) * 4096 : 0), 0);
  const info = [
    '# Generated by the cloud-image-builder test stand-in repository',
    `pkgname = ${spec.name}`,
    `pkgver = ${spec.version}`,
    `pkgdesc = ${spec.description}`,
    'url = https://example.invalid/stand-in',
    `builddate = ${spec.builddate}`,
    'packager = stand-in <test@example.invalid>',
    `size = ${installed}`,
    `arch = ${spec.arch}`,
    `origin = ${spec.name}`,
    `license = ${spec.license ?? 'GPL-2.0-only'}`,
    ...(spec.depends ?? []).map((d) => `depend = ${d}`),
    ...(spec.provides ?? []).map((p) => `provides = ${p}`),
    ...(spec.providerPriority !== undefined ? [`provider_priority = ${spec.providerPriority}`] : []),
    `datahash = ${createHash('sha256').update(data).digest('hex')}`,
    '',
  ].join('\n');
  const controlFiles: ApkFile[] = [{ path: '.PKGINFO', mode: 0o644, data: Buffer.from(info) }];
  for (const [name, body] of Object.entries(spec.scripts ?? {})) {
    controlFiles.push({ path: `.${name}`, mode: 0o755, data: Buffer.from(body) });
  }
  const control = gz(tarStream(controlFiles, spec.builddate));
  const buf = Buffer.concat([signatureStream(control, key, spec.builddate), control, data]);
  const indexEntry = [
    `C:Q1${createHash('sha1').update(control).digest('base64')}`,
    `P:${spec.name}`,
    `V:${spec.version}`,
    `A:${spec.arch}`,
    `S:${buf.length}`,
    `I:${installed}`,
    `T:${spec.description}`,
    'U:https://example.invalid/stand-in',
    `L:${spec.license ?? 'GPL-2.0-only'}`,
    `o:${spec.name}`,
    `t:${spec.builddate}`,
    ...(spec.depends?.length ? [`D:${spec.depends.join(' ')}`] : []),
    ...(spec.provides?.length ? [`p:${spec.provides.join(' ')}`] : []),
    ...(spec.providerPriority !== undefined ? [`k:${spec.providerPriority}`] : []),
    '',
  ].join('\n');
  return { fileName: `${spec.name}-${spec.version}.apk`, buf, indexEntry };
}

/** A signed APKINDEX.tar.gz for the packages. */
export function buildIndex(
  packages: readonly BuiltApk[],
  key: ApkSigningKey,
  description: string,
  mtime: number,
): Buffer {
  const text = `${[...packages]
    .sort((a, b) => (a.fileName < b.fileName ? -1 : 1))
    .map((p) => p.indexEntry)
    .join('\n')}\n`;
  const index = gz(
    tarStream(
      [
        { path: 'DESCRIPTION', mode: 0o644, data: Buffer.from(description) },
        { path: 'APKINDEX', mode: 0o644, data: Buffer.from(text) },
      ],
      mtime,
      { end: true },
    ),
  );
  return Buffer.concat([signatureStream(index, key, mtime), index]);
}
