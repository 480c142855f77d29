// Reading Alpine packages without apk-tools, with the same chain of trust apk uses:
//   APKINDEX.tar.gz  = [signature tar.gz][index tar.gz]: an RSA signature (.SIGN.RSA.<key> = SHA-1,
//                      .SIGN.RSA256.<key> = SHA-256) over the compressed index stream, by a key in keys/apk/
//   index entry      = P:<name> V:<version> C:Q1<base64 SHA-1 of the package's control stream>
//   <name>-<ver>.apk = [signature tar.gz][control tar.gz][data tar.gz]: .PKGINFO in the control stream
//                      names the SHA-256 of the data stream (datahash)
// so a package file is trusted once the index signature, its control checksum and its data hash all match.
import { createHash, createPublicKey, verify } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync, inflateRawSync } from 'node:zlib';
import { UserError } from '../util/errors.js';

/** The raw bytes of each member of a multi-member gzip file, in order. */
export function gzipMembers(buf: Buffer, what = 'file'): Buffer[] {
  const out: Buffer[] = [];
  let pos = 0;
  while (pos < buf.length) {
    if (buf[pos] !== 0x1f || buf[pos + 1] !== 0x8b || buf[pos + 2] !== 8) {
      throw new UserError(`${what}: not a gzip stream at byte ${pos}`);
    }
    const flags = buf[pos + 3] ?? 0;
    let p = pos + 10;
    if (flags & 4) p += 2 + buf.readUInt16LE(p); // FEXTRA
    if (flags & 8) p = buf.indexOf(0, p) + 1; // FNAME
    if (flags & 16) p = buf.indexOf(0, p) + 1; // FCOMMENT
    if (flags & 2) p += 2; // FHCRC
    if (p <= pos || p > buf.length) throw new UserError(`${what}: truncated gzip header at byte ${pos}`);
    let consumed: number;
    try {
      const r = inflateRawSync(buf.subarray(p), { info: true }) as unknown as {
        engine: { bytesWritten: number };
      };
      consumed = r.engine.bytesWritten;
    } catch (err) {
      throw new UserError(`${what}: corrupt gzip stream at byte ${pos} (${(err as Error).message})`);
    }
    const end = p + consumed + 8; // CRC32 + ISIZE
    if (end > buf.length) throw new UserError(`${what}: truncated gzip stream at byte ${pos}`);
    out.push(buf.subarray(pos, end));
    pos = end;
  }
  return out;
}

export interface TarEntry {
  name: string;
  data: Buffer;
}

/** Regular files of an uncompressed tar stream (ustar/pax; the end marker may be missing, as in APK segments). */
export function tarEntries(tar: Buffer): TarEntry[] {
  const out: TarEntry[] = [];
  let pos = 0;
  let paxName: string | undefined;
  while (pos + 512 <= tar.length) {
    const h = tar.subarray(pos, pos + 512);
    if (h.every((b) => b === 0)) break;
    const field = (o: number, n: number) => h.toString('latin1', o, o + n).replace(/\0.*$/s, '');
    const size = Number.parseInt(field(124, 12).trim() || '0', 8);
    const type = field(156, 1) || '0';
    const prefix = field(345, 155);
    const name = paxName ?? (prefix ? `${prefix}/${field(0, 100)}` : field(0, 100));
    const data = tar.subarray(pos + 512, pos + 512 + size);
    pos += 512 + Math.ceil(size / 512) * 512;
    if (type === 'x') {
      const m = /\d+ path=([^\n]*)\n/.exec(data.toString('utf8'));
      paxName = m?.[1];
      continue;
    }
    paxName = undefined;
    if (type === '0' || type === '\0') out.push({ name: name.replace(/^\.\//, ''), data });
  }
  return out;
}

export interface ApkKeys {
  /** key file name (as in .SIGN.RSA.<name>) -> PEM */
  keys: Map<string, string>;
  dirs: readonly string[];
}

/** RSA public keys (*.rsa.pub) of apk repositories, from each directory (missing ones skipped). */
export async function loadApkKeys(dirs: readonly string[]): Promise<ApkKeys> {
  const keys = new Map<string, string>();
  for (const dir of dirs) {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      continue;
    }
    for (const n of names.filter((x) => x.endsWith('.pub')).sort()) {
      const pem = await readFile(join(dir, n), 'utf8');
      try {
        createPublicKey(pem);
      } catch (err) {
        throw new UserError(`${join(dir, n)}: not an RSA public key (${(err as Error).message})`);
      }
      keys.set(n, pem);
    }
  }
  return { keys, dirs };
}

/** Verify a signed APKINDEX.tar.gz; returns the APKINDEX text. */
export function verifyApkIndex(buf: Buffer, keys: ApkKeys, url: string): string {
  const members = gzipMembers(buf, url);
  if (members.length < 2) throw new UserError(`${url}: not a signed APKINDEX (no signature stream)`);
  const sigEntries = tarEntries(gunzipSync(members[0]!));
  const sig = sigEntries.find((e) => e.name.startsWith('.SIGN.RSA'));
  if (!sig) throw new UserError(`${url}: not a signed APKINDEX (no .SIGN.RSA entry)`);
  const m = /^\.SIGN\.(RSA|RSA256)\.(.+)$/.exec(sig.name);
  if (!m) throw new UserError(`${url}: unknown signature type ${sig.name}`);
  const keyName = m[2]!;
  const pem = keys.keys.get(keyName);
  if (!pem) {
    throw new UserError(
      `${url} is signed by ${keyName}, which is not a trusted repository key (${keys.dirs.join(', ') || 'no keys/apk directory'})`,
    );
  }
  const signed = Buffer.concat(members.slice(1));
  const ok = verify(m[1] === 'RSA' ? 'sha1' : 'sha256', signed, createPublicKey(pem), sig.data);
  if (!ok) throw new UserError(`${url}: bad signature by ${keyName}`);
  const index = tarEntries(gunzipSync(signed)).find((e) => e.name === 'APKINDEX');
  if (!index) throw new UserError(`${url}: no APKINDEX in the index stream`);
  return index.data.toString('utf8');
}

export interface IndexEntry {
  name: string;
  version: string;
  /** "Q1<base64 sha1>" */
  checksum: string;
}

/** Find package `name` in an APKINDEX. */
export function indexEntry(apkindex: string, name: string): IndexEntry | undefined {
  for (const block of apkindex.split(/\n\s*\n/)) {
    const f: Record<string, string> = {};
    for (const line of block.split('\n')) {
      const i = line.indexOf(':');
      if (i === 1) f[line[0]!] = line.slice(2).trim();
    }
    if (f.P === name && f.V) return { name, version: f.V, checksum: f.C ?? '' };
  }
  return undefined;
}

/**
 * Check an .apk against its index entry (control stream SHA-1, data stream SHA-256 from .PKGINFO) and return
 * the files of its data stream.
 */
export function verifyApk(buf: Buffer, entry: IndexEntry, url: string): TarEntry[] {
  const members = gzipMembers(buf, url);
  if (members.length < 2) throw new UserError(`${url}: not an APK (expected control and data streams)`);
  const data = members[members.length - 1]!;
  const control = members[members.length - 2]!;
  const want = entry.checksum.startsWith('Q1') ? entry.checksum.slice(2) : '';
  if (!want) throw new UserError(`${url}: its index entry has no Q1 (SHA-1) checksum`);
  const have = createHash('sha1').update(control).digest('base64');
  if (have !== want) {
    throw new UserError(
      `${url}: control checksum mismatch: the index says Q1${want}, the package has Q1${have}`,
    );
  }
  const pkginfo = tarEntries(gunzipSync(control)).find((e) => e.name === '.PKGINFO');
  const datahash = /^datahash = ([0-9a-f]{64})$/m.exec(pkginfo?.data.toString('utf8') ?? '')?.[1];
  if (!datahash) throw new UserError(`${url}: .PKGINFO has no datahash`);
  const dataHave = createHash('sha256').update(data).digest('hex');
  if (dataHave !== datahash) {
    throw new UserError(
      `${url}: data checksum mismatch: .PKGINFO says ${datahash}, the package has ${dataHave}`,
    );
  }
  return tarEntries(gunzipSync(data));
}
