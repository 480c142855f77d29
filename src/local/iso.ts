// The builder ISO: downloaded once per release and arch into work/iso/, verified by its .sha512/.sha256 file
// AND its detached OpenPGP signature (.asc) against the release signing keys shipped in keys/.
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { Readable } from 'node:stream';
import * as openpgp from 'openpgp';
import type { Logger } from 'pino';
import { UserError } from '../util/errors.js';
import { exists, type HashAlgorithm, hashFile, writeFileAtomic } from '../util/fs.js';
import { downloadFile, fetchText, NotFoundError } from './download.js';

export interface TrustedKeys {
  keys: openpgp.PublicKey[];
  /** the key files read, for messages */
  files: string[];
}

const KEY_EXTENSIONS = new Set(['.asc', '.gpg', '.pgp', '.key']);

/** Read every OpenPGP public key (*.asc armored, *.gpg/*.pgp binary) in the given directories; missing ones are skipped. */
export async function loadTrustedKeys(dirs: readonly string[]): Promise<TrustedKeys> {
  const keys: openpgp.PublicKey[] = [];
  const files: string[] = [];
  for (const dir of dirs) {
    let names: string[];
    try {
      names = (await readdir(dir)).sort();
    } catch {
      continue;
    }
    for (const name of names) {
      if (!KEY_EXTENSIONS.has(extname(name))) continue;
      const path = join(dir, name);
      const data = await readFile(path);
      let read: openpgp.Key[];
      const text = data.toString('utf8');
      if (text.includes('PRIVATE KEY BLOCK')) {
        throw new UserError(`${path}: holds a private key; only public keys belong in keys/`);
      }
      try {
        read = text.includes('-----BEGIN PGP PUBLIC KEY BLOCK-----')
          ? await openpgp.readKeys({ armoredKeys: text })
          : await openpgp.readKeys({ binaryKeys: new Uint8Array(data) });
      } catch (err) {
        throw new UserError(`${path}: not an OpenPGP public key (${(err as Error).message})`);
      }
      for (const k of read) {
        if (k.isPrivate())
          throw new UserError(`${path}: holds a private key; only public keys belong in keys/`);
        keys.push(k as openpgp.PublicKey);
      }
      files.push(path);
    }
  }
  return { keys, files };
}

/** The digest for `fileName` in a checksum file (`<hex>` or `<hex>  <name>` lines, as sha256sum writes them). */
export function checksumFor(text: string, fileName: string, source: string): string {
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const parsed = lines.map((l) => {
    const [digest = '', name] = l.split(/\s+/);
    return { digest: digest.toLowerCase(), name: name?.replace(/^\*/, '') };
  });
  const match =
    parsed.find((p) => p.name && basename(p.name) === fileName) ??
    (parsed.length === 1 ? parsed[0] : undefined);
  if (!match || !/^([0-9a-f]{64}|[0-9a-f]{128})$/.test(match.digest)) {
    throw new UserError(`${source}: no sha256/sha512 checksum for ${fileName}`);
  }
  return match.digest;
}

/**
 * Check a detached signature over `file`. Throws a UserError naming `sigName` when the signature is malformed,
 * made by a key that is not trusted, or does not match the file.
 */
export async function verifySignature(
  file: string,
  armoredSignature: string,
  trusted: TrustedKeys,
  sigName: string,
): Promise<{ keyId: string; fingerprint: string }> {
  if (trusted.keys.length === 0) {
    throw new UserError(`cannot check ${sigName}: no trusted release signing keys (keys/*.asc)`);
  }
  let signature: openpgp.Signature;
  try {
    if (!armoredSignature.includes('-----BEGIN PGP SIGNATURE-----'))
      throw new Error('not an armored OpenPGP signature');
    signature = await openpgp.readSignature({ armoredSignature });
  } catch (err) {
    throw new UserError(`bad signature file ${sigName}: ${(err as Error).message}`);
  }
  const message = await openpgp.createMessage({
    binary: Readable.toWeb(createReadStream(file)) as unknown as ReadableStream<Uint8Array>,
  });
  const result = await openpgp.verify({
    message,
    signature,
    verificationKeys: trusted.keys,
    format: 'binary',
  });
  // the data must be read through for the verification to finish
  const reader = (result.data as ReadableStream<Uint8Array>).getReader();
  while (!(await reader.read()).done) {
    // drain
  }
  const sigs = result.signatures;
  if (sigs.length === 0) throw new UserError(`bad signature file ${sigName}: it holds no signature`);
  const errors: string[] = [];
  for (const s of sigs) {
    try {
      await s.verified;
      const keyId = s.keyID.toHex();
      const key = trusted.keys.find((k) => k.getKeys(s.keyID).length > 0);
      return { keyId, fingerprint: key?.getFingerprint() ?? keyId };
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  const known = sigs.some((s) => trusted.keys.some((k) => k.getKeys(s.keyID).length > 0));
  if (!known) {
    throw new UserError(
      `signature ${sigName} was made by key ${sigs.map((s) => s.keyID.toHex()).join(', ')}, which is not a trusted release signing key (${trusted.files.join(', ')})`,
    );
  }
  throw new UserError(`signature check failed for ${sigName}: ${errors.join('; ')}`);
}

export interface VerifiedIso {
  url: string;
  /** the verified file in the cache */
  path: string;
  sha256?: string;
  sha512?: string;
  /** for Packer's iso_checksum */
  packerChecksum: string;
  signedBy: string;
  /** true when it came from the cache without a download */
  cached: boolean;
}

export interface IsoContext {
  cacheDir: string;
  trusted: TrustedKeys;
  log: Logger;
  /** what the file is, for messages (default "builder ISO") */
  what?: string;
}

const SIDECARS: readonly { ext: string; alg: HashAlgorithm }[] = [
  { ext: '.sha512', alg: 'sha512' },
  { ext: '.sha256', alg: 'sha256' },
];

async function fetchSidecar(url: string, dest: string): Promise<string | undefined> {
  try {
    const text = await fetchText(url);
    await writeFileAtomic(dest, text);
    return text;
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
}

async function readCached(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * Make sure the ISO at `url` is in the cache and verified. A cached copy is verified again against its cached
 * checksum and signature files (no network needed); a download is resumed from a leftover .part file.
 */
export async function fetchVerifiedIso(url: string, ctx: IsoContext): Promise<VerifiedIso> {
  const name = decodeURIComponent(basename(new URL(url).pathname));
  if (!name) throw new UserError(`${ctx.what ?? 'qemu.iso_url'} ${url}: no file name in the URL`);
  await mkdir(ctx.cacheDir, { recursive: true });
  const path = join(ctx.cacheDir, name);
  const sigPath = `${path}.asc`;

  let cached = (await exists(path)) && (await exists(sigPath));
  if (cached && !(await exists(`${path}.sha512`)) && !(await exists(`${path}.sha256`))) cached = false;

  if (!cached) {
    // checksum and signature files first: no point downloading a large file that cannot be verified
    const sums: string[] = [];
    for (const s of SIDECARS) {
      if ((await fetchSidecar(url + s.ext, path + s.ext)) !== undefined) sums.push(s.ext);
      else await rm(path + s.ext, { force: true });
    }
    if (sums.length === 0) {
      throw new UserError(`no checksum for ${url}: neither ${url}.sha512 nor ${url}.sha256 exists`);
    }
    if ((await fetchSidecar(`${url}.asc`, sigPath)) === undefined) {
      throw new UserError(
        `missing signature ${url}.asc for ${name}: refusing to use an unsigned ${ctx.what ?? 'builder ISO'}`,
      );
    }
    ctx.log.info({ url, dest: path }, `downloading ${name}`);
    const t0 = Date.now();
    const r = await downloadFile(url, path);
    ctx.log.info(
      {
        file: path,
        seconds: Math.round((Date.now() - t0) / 100) / 10,
        bytes: r.fetched,
        ...(r.resumedFrom ? { resumedFrom: r.resumedFrom } : {}),
      },
      `downloaded ${name}`,
    );
  } else {
    ctx.log.info({ file: path }, `using cached ${name}`);
  }

  try {
    return await verifyIsoFiles(url, path, ctx, cached);
  } catch (err) {
    // never keep (or reuse) a file that failed verification
    await rm(path, { force: true });
    throw err;
  }
}

async function verifyIsoFiles(
  url: string,
  path: string,
  ctx: IsoContext,
  cached: boolean,
): Promise<VerifiedIso> {
  const name = basename(path);
  const out: Partial<Record<HashAlgorithm, string>> = {};
  for (const s of SIDECARS) {
    const text = await readCached(path + s.ext);
    if (text === undefined) continue;
    const expected = checksumFor(text, name, url + s.ext);
    const actual = await hashFile(path, expected.length === 128 ? 'sha512' : 'sha256');
    if (actual !== expected) {
      throw new UserError(
        `checksum mismatch for ${path}: ${url}${s.ext} says ${expected}, the file has ${actual} (the download was removed)`,
      );
    }
    out[expected.length === 128 ? 'sha512' : 'sha256'] = actual;
  }
  if (!out.sha512 && !out.sha256) throw new UserError(`no checksum for ${url}`);
  const sig = await readCached(`${path}.asc`);
  if (sig === undefined) throw new UserError(`missing signature ${url}.asc for ${name}`);
  const signer = await verifySignature(path, sig, ctx.trusted, `${url}.asc`);
  ctx.log.info(
    { file: path, sha512: out.sha512, sha256: out.sha256, signedBy: signer.fingerprint },
    `verified ${name}: checksum and signature good`,
  );
  return {
    url,
    path,
    ...out,
    packerChecksum: out.sha512 ? `sha512:${out.sha512}` : `sha256:${out.sha256}`,
    signedBy: signer.fingerprint,
    cached,
  };
}
