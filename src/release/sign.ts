// The sign step: a detached OpenPGP signature <upload file>.asc, made by signing_cmd or in-process with signing_key.
import { createReadStream } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import type { ReadableStream as NodeWebStream } from 'node:stream/web';
import * as openpgp from 'openpgp';
import type { Logger } from 'pino';
import type { Image } from '../state/image.js';
import { recordedSupplyFiles } from '../supply/files.js';
import { errorMessage, UserError } from '../util/errors.js';
import { exists, writeFileAtomic } from '../util/fs.js';
import { buildArgv, placeholderValues, runCommand } from './command.js';

export interface SignResult {
  /** ISO timestamp */
  signed: string;
  /** OpenPGP fingerprint of the signing key, when known */
  fingerprint?: string;
  /** files written in image.localDir (e.g. <uploadFile>.asc), to be stored beside the image */
  files: string[];
}

export interface SignContext {
  log: Logger;
  env: NodeJS.ProcessEnv;
  /** clock, for tests */
  now?: () => Date;
}

const ARMOR_HEADER = '-----BEGIN PGP SIGNATURE-----';

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v.trim() !== '' ? v : undefined;
}

/** A path from a config value: `~/` is the home directory, relative paths are taken from the working directory. */
export function configPath(p: string): string {
  if (p === '~' || p.startsWith('~/')) return resolve(homedir(), p.slice(2));
  return resolve(p);
}

function fileStream(path: string): NodeWebStream<Uint8Array> {
  // 1 MiB chunks: openpgp.js handles each chunk in JS, fewer and larger chunks are markedly faster
  return Readable.toWeb(
    createReadStream(path, { highWaterMark: 1 << 20 }),
  ) as unknown as NodeWebStream<Uint8Array>;
}

async function drain(stream: unknown): Promise<void> {
  if (stream && typeof (stream as NodeWebStream).getReader === 'function') {
    const reader = (stream as NodeWebStream).getReader();
    while (!(await reader.read()).done) {
      // the verification completes once the whole message has been read
    }
  }
}

/** Upper-case hex fingerprint (no spaces), as gpg prints it. */
function hexFingerprint(key: openpgp.Key): string {
  return key.getFingerprint().toUpperCase();
}

/**
 * Verify a detached signature over a file with the given public key(s), streaming the file.
 * Returns the fingerprint of the primary key that made it; throws an Error saying why otherwise.
 */
export async function verifyDetached(
  file: string,
  signature: openpgp.Signature,
  keys: readonly openpgp.Key[],
): Promise<string> {
  const message = await openpgp.createMessage({ binary: fileStream(file) });
  const result = await openpgp.verify({
    message,
    signature,
    verificationKeys: [...keys],
    format: 'binary',
    expectSigned: true,
  });
  await drain(result.data);
  const first = result.signatures[0];
  if (!first) throw new Error('no signature found');
  await first.verified; // throws when the digest or the key does not match
  const keyId = first.keyID;
  const key = keys.find((k) => k.getKeys(keyId).length > 0);
  if (!key) throw new Error(`signed by unknown key ${keyId.toHex().toUpperCase()}`);
  return hexFingerprint(key);
}

async function readArmoredFile(path: string, setting: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new UserError(`${setting} ${path}: cannot read: ${errorMessage(err)}`);
  }
}

/** Load and unlock the private key named by signing_key. The passphrase is never logged or put in errors. */
export async function loadSigningKey(image: Image, env: NodeJS.ProcessEnv): Promise<openpgp.PrivateKey> {
  const setting = 'signing_key';
  const path = configPath(str(image.config.signing_key)!);
  const armored = await readArmoredFile(path, setting);
  let key: openpgp.PrivateKey;
  try {
    key = await openpgp.readPrivateKey({ armoredKey: armored });
  } catch (err) {
    throw new UserError(`${setting} ${path}: not an armored OpenPGP private key: ${errorMessage(err)}`);
  }
  if (!key.isDecrypted()) {
    const envName = str(image.config.signing_passphrase_env);
    if (!envName) {
      throw new UserError(
        `${setting} ${path} is protected by a passphrase: set signing_passphrase_env to the name of the ` +
          'environment variable that holds it',
      );
    }
    const passphrase = env[envName];
    if (passphrase === undefined) {
      throw new UserError(
        `environment variable ${envName} (named by signing_passphrase_env) is not set; it must hold the passphrase of ${path}`,
      );
    }
    try {
      key = await openpgp.decryptKey({ privateKey: key, passphrase });
    } catch (err) {
      throw new UserError(
        `${setting} ${path}: cannot unlock it with the passphrase from ${envName}: ${errorMessage(err)}`,
      );
    }
  }
  try {
    await key.getSigningKey();
  } catch (err) {
    throw new UserError(`${setting} ${path}: no usable signing (sub)key: ${errorMessage(err)}`);
  }
  return key;
}

async function signInProcess(
  image: Image,
  ctx: SignContext,
  file: string,
  ascPath: string,
  key: openpgp.PrivateKey,
): Promise<string> {
  const filePath = join(image.localDir, file);
  const fingerprint = hexFingerprint(key);
  ctx.log.info(
    { image: image.imageName, fingerprint },
    // the fingerprint is in the fields (--log-format json) and the metadata, not in the line a person reads
    `signing ${file} with signing_key ${key.getUserIDs()[0] ?? fingerprint.slice(-16)}`,
  );
  const message = await openpgp.createMessage({ binary: fileStream(filePath) });
  const out = await openpgp.sign({ message, signingKeys: key, detached: true, format: 'armored' });
  let armored = '';
  for await (const chunk of out as AsyncIterable<string>) armored += chunk;
  await writeFileAtomic(ascPath, armored);
  // verify what is on disk, against the public half of the key
  try {
    const signature = await openpgp.readSignature({ armoredSignature: await readFile(ascPath, 'utf8') });
    await verifyDetached(filePath, signature, [key.toPublic()]);
  } catch (err) {
    await rm(ascPath, { force: true });
    throw new UserError(`${ascPath}: the signature just made does not verify: ${errorMessage(err)}`);
  }
  return fingerprint;
}

/** Read an OpenPGP signature (armored or binary); undefined when the file is something else. */
async function readOpenPgpSignature(path: string): Promise<openpgp.Signature | undefined> {
  const bytes = await readFile(path);
  const text = bytes.toString('utf8');
  if (text.trimStart().startsWith(ARMOR_HEADER)) {
    try {
      return await openpgp.readSignature({ armoredSignature: text });
    } catch (err) {
      throw new UserError(
        `${path}: looks like an armored OpenPGP signature but cannot be read: ${errorMessage(err)}`,
      );
    }
  }
  try {
    return await openpgp.readSignature({ binarySignature: new Uint8Array(bytes) });
  } catch {
    return undefined;
  }
}

function issuerFingerprint(signature: openpgp.Signature): string | undefined {
  const packet = signature.packets[0] as unknown as { issuerFingerprint?: Uint8Array | null } | undefined;
  const fp = packet?.issuerFingerprint;
  if (!fp || fp.length === 0) return undefined;
  return Buffer.from(fp).toString('hex').toUpperCase();
}

async function signWithCommand(
  image: Image,
  ctx: SignContext,
  file: string,
  ascPath: string,
): Promise<string | undefined> {
  const filePath = join(image.localDir, file);
  const template = str(image.config.signing_cmd)!;
  const what = `signing_cmd for ${file === image.uploadFile ? image.imageName : file}`;
  const argv = buildArgv(
    template,
    placeholderValues(image.config, {
      file: filePath,
      v_version: image.vVersion,
      base: image.imageName,
      image_name: image.imageName,
      image_file: image.imageFile,
      upload_file: image.uploadFile,
      local_dir: image.localDir,
      revision: image.revision,
    }),
    what,
  );
  // a stale signature must not pass for the new one
  await rm(ascPath, { force: true });
  ctx.log.info({ image: image.imageName }, `signing ${file} (signing_cmd)`);
  await runCommand(argv, { cwd: image.localDir, env: ctx.env, log: ctx.log, what });
  if (!(await exists(ascPath))) {
    throw new UserError(`${what}: the command succeeded but did not write ${ascPath}`);
  }
  const signature = await readOpenPgpSignature(ascPath);
  if (!signature) {
    ctx.log.warn(
      { image: image.imageName },
      `${basename(ascPath)} is not an OpenPGP signature: stored as it is, not verified`,
    );
    return undefined;
  }
  const pubPath = str(image.config.signing_pubkey);
  if (!pubPath) {
    const fp = issuerFingerprint(signature);
    ctx.log.info(
      { image: image.imageName, fingerprint: fp },
      `${basename(ascPath)}: OpenPGP signature by ${fp ?? 'an unnamed key'}; not verified (set signing_pubkey to verify)`,
    );
    return fp;
  }
  const path = configPath(pubPath);
  const armored = await readArmoredFile(path, 'signing_pubkey');
  let keys: openpgp.Key[];
  try {
    keys = await openpgp.readKeys({ armoredKeys: armored });
  } catch (err) {
    throw new UserError(`signing_pubkey ${path}: not an armored OpenPGP public key: ${errorMessage(err)}`);
  }
  try {
    const fp = await verifyDetached(filePath, signature, keys);
    ctx.log.info({ image: image.imageName, fingerprint: fp }, `${basename(ascPath)} verified with ${path}`);
    return fp;
  } catch (err) {
    await rm(ascPath, { force: true });
    throw new UserError(
      `${what}: ${ascPath} does not verify with signing_pubkey ${path}: ${errorMessage(err)}`,
    );
  }
}

/** Sign image.uploadPath with signing_cmd or signing_key; verify the signature right after. */
export async function sign(image: Image, ctx: SignContext): Promise<SignResult> {
  const cmd = str(image.config.signing_cmd);
  const key = str(image.config.signing_key);
  if (cmd && key) {
    throw new UserError(
      `${image.config.config_key}: both signing_cmd and signing_key are set; set the one you want and the other to null`,
    );
  }
  if (!cmd && !key) {
    throw new UserError(
      `${image.config.config_key}: neither signing_cmd nor signing_key is set; nothing signs`,
    );
  }
  if (!(await exists(image.uploadPath))) {
    throw new UserError(`${image.uploadPath}: image to sign is missing; run the local step first`);
  }
  // the image, then its SBOMs, manifest and provenance (those the local step wrote)
  const files = [image.uploadFile];
  for (const f of recordedSupplyFiles(image.state.supply)) {
    if (await exists(join(image.localDir, f))) files.push(f);
  }
  const privateKey = key ? await loadSigningKey(image, ctx.env) : undefined;
  let fingerprint: string | undefined;
  for (const file of files) {
    const ascPath = join(image.localDir, `${file}.asc`);
    const fp = privateKey
      ? await signInProcess(image, ctx, file, ascPath, privateKey)
      : await signWithCommand(image, ctx, file, ascPath);
    fingerprint ??= fp;
  }
  const signed = (ctx.now?.() ?? new Date()).toISOString();
  return { signed, ...(fingerprint ? { fingerprint } : {}), files: files.map((f) => `${f}.asc`) };
}
