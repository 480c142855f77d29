// In-process signing with signing_key (openpgp), verified with the key made in the test (and by gpg when present).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signImage, signingConfigured } from '../../src/release/index.js';
import type { Image } from '../../src/state/image.js';
import { UserError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/log.js';
import { imageOf, memoryLogger, variant } from './release-fixtures.js';

const PASSPHRASE = 'correct horse battery staple 7f3a';
const hasGpg = spawnSync('gpg', ['--version']).status === 0;
if (!hasGpg) console.warn('sign.test: gpg not installed; the cross-check with gpg is skipped');

let tmp: string;
let keyFile: string;
let plainKeyFile: string;
let publicKey: openpgp.PublicKey;
let otherPublicKey: openpgp.PublicKey;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'sign-test-'));
  const made = await openpgp.generateKey({
    type: 'ecc',
    userIDs: [{ name: 'Throwaway Signer', email: 'signer@example.org' }],
    passphrase: PASSPHRASE,
    format: 'armored',
  });
  keyFile = join(tmp, 'signer.asc');
  await writeFile(keyFile, made.privateKey);
  publicKey = await openpgp.readKey({ armoredKey: made.publicKey });
  const plain = await openpgp.generateKey({
    type: 'ecc',
    userIDs: [{ name: 'Unprotected', email: 'plain@example.org' }],
    format: 'armored',
  });
  plainKeyFile = join(tmp, 'plain.asc');
  await writeFile(plainKeyFile, plain.privateKey);
  otherPublicKey = await openpgp.readKey({ armoredKey: plain.publicKey });
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function imageWithFile(name: string, extra: Record<string, unknown>, bytes = 300_000): Promise<Image> {
  const work = join(tmp, name);
  const image = imageOf(
    variant({ version: '3.21', release: '3.21.2', storageRoot: join(work, 'storage'), extra }),
    work,
  );
  await mkdir(image.localDir, { recursive: true });
  const data = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) data[i] = (i * 31) % 251;
  await writeFile(image.uploadPath, data);
  return image;
}

async function verifyWith(file: string, asc: string, key: openpgp.PublicKey): Promise<boolean> {
  const message = await openpgp.createMessage({ binary: new Uint8Array(await readFile(file)) });
  const signature = await openpgp.readSignature({ armoredSignature: asc });
  const r = await openpgp.verify({ message, signature, verificationKeys: key });
  try {
    await r.signatures[0]!.verified;
    return true;
  } catch {
    return false;
  }
}

describe('signImage with signing_key (in-process OpenPGP)', () => {
  it('writes <upload file>.asc that verifies with the public key, and returns the fingerprint', async () => {
    const image = await imageWithFile('ok', { signing_key: keyFile, signing_passphrase_env: 'TEST_SIGN_PW' });
    expect(signingConfigured(image)).toBe(true);
    const mem = memoryLogger();
    const before = Date.now();
    const r = await signImage(image, { log: mem.log, env: { TEST_SIGN_PW: PASSPHRASE } });
    expect(r.files).toEqual([`${image.uploadFile}.asc`]);
    expect(r.fingerprint).toBe(publicKey.getFingerprint().toUpperCase());
    expect(r.fingerprint).toMatch(/^[0-9A-F]{40}$/);
    expect(Date.parse(r.signed)).toBeGreaterThanOrEqual(before - 1000);
    const asc = await readFile(`${image.uploadPath}.asc`, 'utf8');
    expect(asc.startsWith('-----BEGIN PGP SIGNATURE-----')).toBe(true);
    expect(await verifyWith(image.uploadPath, asc, publicKey)).toBe(true);
    expect(await verifyWith(image.uploadPath, asc, otherPublicKey)).toBe(false);
    // the passphrase is never logged, and the log says what was signed with which key
    expect(mem.text()).not.toContain(PASSPHRASE);
    expect(mem.text()).toContain(r.fingerprint!);
  });

  it('a tampered image no longer verifies against the signature made', async () => {
    const image = await imageWithFile('tamper', {
      signing_key: keyFile,
      signing_passphrase_env: 'TEST_SIGN_PW',
    });
    await signImage(image, { log: silentLogger(), env: { TEST_SIGN_PW: PASSPHRASE } });
    const asc = await readFile(`${image.uploadPath}.asc`, 'utf8');
    const data = await readFile(image.uploadPath);
    data[1000] = (data[1000]! + 1) % 256;
    await writeFile(image.uploadPath, data);
    expect(await verifyWith(image.uploadPath, asc, publicKey)).toBe(false);
  });

  it.skipIf(!hasGpg)('gpg verifies the signature too', async () => {
    const image = await imageWithFile('gpg', { signing_key: plainKeyFile });
    const r = await signImage(image, { log: silentLogger(), env: {} });
    const home = await mkdtemp(join(tmpdir(), 'gpgv-'));
    try {
      const ring = join(home, 'ring.gpg');
      const armored = otherPublicKey.armor();
      await writeFile(join(home, 'pub.asc'), armored);
      execFileSync('gpg', ['--homedir', home, '--batch', '--dearmor', '-o', ring, join(home, 'pub.asc')]);
      const out = spawnSync('gpgv', ['--keyring', ring, `${image.uploadPath}.asc`, image.uploadPath], {
        encoding: 'utf8',
      });
      expect(out.status, out.stderr).toBe(0);
      expect(out.stderr).toContain('Good signature');
      expect(out.stderr.replace(/\s/g, '')).toContain(r.fingerprint!.slice(-16));
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });

  it('an unprotected key needs no passphrase', async () => {
    const image = await imageWithFile('plain', { signing_key: plainKeyFile });
    const r = await signImage(image, { log: silentLogger(), env: {} });
    expect(r.fingerprint).toBe(otherPublicKey.getFingerprint().toUpperCase());
  });

  it('a wrong passphrase is a UserError naming the variable, never showing the passphrase', async () => {
    const image = await imageWithFile('wrong', {
      signing_key: keyFile,
      signing_passphrase_env: 'TEST_SIGN_PW',
    });
    const err = await signImage(image, { log: silentLogger(), env: { TEST_SIGN_PW: 'not-it-9c1e' } }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toContain('TEST_SIGN_PW');
    expect(err.message).toContain(keyFile);
    expect(err.message).not.toContain('not-it-9c1e');
  });

  it('an unset passphrase variable, or none configured, is a clear UserError', async () => {
    const image = await imageWithFile('unset', {
      signing_key: keyFile,
      signing_passphrase_env: 'TEST_SIGN_PW',
    });
    await expect(signImage(image, { log: silentLogger(), env: {} })).rejects.toThrow(
      /environment variable TEST_SIGN_PW \(named by signing_passphrase_env\) is not set/,
    );
    const image2 = await imageWithFile('noenv', { signing_key: keyFile });
    await expect(signImage(image2, { log: silentLogger(), env: {} })).rejects.toThrow(
      /set signing_passphrase_env/,
    );
  });

  it('a missing or malformed key file, a missing image, or both settings at once are UserErrors', async () => {
    const missing = await imageWithFile('nokey', { signing_key: join(tmp, 'nope.asc') });
    await expect(signImage(missing, { log: silentLogger(), env: {} })).rejects.toThrow(
      /signing_key .*nope\.asc: cannot read/,
    );
    const bad = join(tmp, 'bad.asc');
    await writeFile(bad, 'not a key');
    const malformed = await imageWithFile('badkey', { signing_key: bad });
    await expect(signImage(malformed, { log: silentLogger(), env: {} })).rejects.toThrow(
      /not an armored OpenPGP private key/,
    );
    const noImage = await imageWithFile('noimage', { signing_key: plainKeyFile });
    await rm(noImage.uploadPath);
    await expect(signImage(noImage, { log: silentLogger(), env: {} })).rejects.toThrow(
      /image to sign is missing/,
    );
    const both = await imageWithFile('both', { signing_key: plainKeyFile, signing_cmd: 'true {file}' });
    await expect(signImage(both, { log: silentLogger(), env: {} })).rejects.toThrow(
      /both signing_cmd and signing_key are set/,
    );
    const none = await imageWithFile('none', {});
    expect(signingConfigured(none)).toBe(false);
    await expect(signImage(none, { log: silentLogger(), env: {} })).rejects.toThrow(
      /neither signing_cmd nor signing_key/,
    );
  });
});
