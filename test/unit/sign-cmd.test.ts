// signing_cmd: a small script (argument splitting, placeholders, errors) and real gpg (verification with signing_pubkey).
import { execFileSync, spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signImage } from '../../src/release/index.js';
import type { Image } from '../../src/state/image.js';
import { exists } from '../../src/util/fs.js';
import { silentLogger } from '../../src/util/log.js';
import { imageOf, memoryLogger, variant } from './release-fixtures.js';

const hasGpg =
  spawnSync('gpg', ['--version']).status === 0 && spawnSync('gpgconf', ['--version']).status === 0;
if (!hasGpg) console.warn('sign-cmd.test: gpg/gpgconf not installed; the gpg signing_cmd tests are skipped');

let tmp: string;
let script: string;

beforeAll(async () => {
  // a space in the path: {file} must stay one argument
  tmp = await mkdtemp(join(tmpdir(), 'sign cmd-'));
  script = join(tmp, 'fake-sign.sh');
  await writeFile(
    script,
    [
      '#!/bin/sh',
      '# records its arguments, then writes a (non-OpenPGP) signature to the file after -o',
      'printf "%s\\n" "$@" > "$ARGS_OUT"',
      'while [ $# -gt 0 ]; do',
      '  if [ "$1" = "-o" ]; then printf "SIGNED BY SCRIPT\\n" > "$2"; fi',
      '  shift',
      'done',
      '',
    ].join('\n'),
  );
  await chmod(script, 0o755);
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function imageWithFile(name: string, extra: Record<string, unknown>): Promise<Image> {
  const work = join(tmp, name);
  const image = imageOf(
    variant({ version: '3.21', release: '3.21.2', storageRoot: join(work, 'storage'), extra }),
    work,
  );
  await mkdir(image.localDir, { recursive: true });
  await writeFile(image.uploadPath, Buffer.from('image bytes '.repeat(1000)));
  return image;
}

describe('signImage with signing_cmd (small script)', () => {
  it('splits quoted arguments without a shell, fills placeholders per argument, passes the environment', async () => {
    const cmd = `"${script}" --label "two words" --brace '{{x}}' --arch {arch} --vv {v_version} -o {file}.asc {file}`;
    const image = await imageWithFile('script', { signing_cmd: cmd });
    const argsOut = join(tmp, 'args.txt');
    const mem = memoryLogger();
    const r = await signImage(image, { log: mem.log, env: { ARGS_OUT: argsOut, PATH: process.env.PATH } });
    const args = (await readFile(argsOut, 'utf8')).split('\n').slice(0, -1);
    expect(args).toEqual([
      '--label',
      'two words',
      '--brace',
      '{x}',
      '--arch',
      'x86_64',
      '--vv',
      'v3.21',
      '-o',
      `${image.uploadPath}.asc`,
      image.uploadPath,
    ]);
    expect(image.uploadPath).toContain(' ');
    expect(r.files).toEqual([`${image.uploadFile}.asc`]);
    expect(r.fingerprint).toBeUndefined();
    expect(await readFile(`${image.uploadPath}.asc`, 'utf8')).toBe('SIGNED BY SCRIPT\n');
    expect(mem.text()).toContain('not an OpenPGP signature');
  });

  it('a failing command is a UserError with the command, exit code and stderr', async () => {
    const image = await imageWithFile('fail', {
      signing_cmd: `sh -c 'echo "key not found" >&2; exit 3' {file}`,
    });
    const err = await signImage(image, { log: silentLogger(), env: {} }).catch((e) => e);
    expect(err.name).toBe('UserError');
    expect(err.message).toContain(`signing_cmd for ${image.imageName} failed`);
    expect(err.message).toContain('exited with code 3');
    expect(err.message).toContain('key not found');
  });

  it('a command that writes no .asc fails, even when an old .asc is lying there', async () => {
    const image = await imageWithFile('noasc', { signing_cmd: 'true {file}' });
    await writeFile(`${image.uploadPath}.asc`, 'stale');
    await expect(signImage(image, { log: silentLogger(), env: { PATH: process.env.PATH } })).rejects.toThrow(
      /succeeded but did not write .*\.asc/,
    );
    expect(await exists(`${image.uploadPath}.asc`)).toBe(false);
  });

  it('unknown placeholders and shell operators are refused before anything runs', async () => {
    const a = await imageWithFile('badph', { signing_cmd: 'gpg --sign {nosuch} {file}' });
    await expect(signImage(a, { log: silentLogger(), env: {} })).rejects.toThrow(
      /placeholder \{nosuch\} has no value/,
    );
    const b = await imageWithFile('pipe', { signing_cmd: 'cat {file} | gpg --sign' });
    await expect(signImage(b, { log: silentLogger(), env: {} })).rejects.toThrow(/'\|' needs a shell/);
    const c = await imageWithFile('quote', { signing_cmd: "gpg --sign '{file}" });
    await expect(signImage(c, { log: silentLogger(), env: {} })).rejects.toThrow(/unterminated single quote/);
  });
});

describe.skipIf(!hasGpg)('signImage with signing_cmd running gpg', () => {
  let home: string;
  let fingerprint: string;
  let pubFile: string;
  let otherPub: string;

  beforeAll(async () => {
    home = await mkdtemp(join(tmpdir(), 'gpgh-'));
    await chmod(home, 0o700);
    const gpg = (...a: string[]) =>
      execFileSync('gpg', ['--homedir', home, '--batch', '--quiet', '--pinentry-mode', 'loopback', ...a], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      });
    gpg(
      '--passphrase',
      '',
      '--quick-gen-key',
      'Throwaway <throwaway@example.org>',
      'ed25519',
      'sign',
      'never',
    );
    gpg('--passphrase', '', '--quick-gen-key', 'Other <other@example.org>', 'ed25519', 'sign', 'never');
    const colons = gpg('--with-colons', '--list-keys', 'throwaway@example.org');
    fingerprint = /^fpr:+([0-9A-F]{40}):/m.exec(colons)![1]!;
    pubFile = join(home, 'pub.asc');
    otherPub = join(home, 'other.asc');
    await writeFile(pubFile, gpg('--armor', '--export', 'throwaway@example.org'));
    await writeFile(otherPub, gpg('--armor', '--export', 'other@example.org'));
  });

  afterAll(async () => {
    spawnSync('gpgconf', ['--homedir', home, '--kill', 'all']);
    await rm(home, { recursive: true, force: true });
  });

  const gpgCmd = () =>
    `gpg --homedir ${home} --batch --yes --pinentry-mode loopback --passphrase '' ` +
    `--local-user throwaway@example.org --detach-sign --armor -o {file}.asc {file}`;

  it('verifies the .asc with signing_pubkey and records the key fingerprint', async () => {
    const image = await imageWithFile('gpg-ok', { signing_cmd: gpgCmd(), signing_pubkey: pubFile });
    const mem = memoryLogger();
    const r = await signImage(image, { log: mem.log, env: { PATH: process.env.PATH } });
    expect(r.fingerprint).toBe(fingerprint);
    expect(r.files).toEqual([`${image.uploadFile}.asc`]);
    expect(mem.text()).toContain('verified with');
    // the --passphrase value is masked in the logged command line
    expect(mem.text()).toContain('--passphrase ***');
  });

  it('without signing_pubkey the issuer fingerprint is recorded, unverified', async () => {
    const image = await imageWithFile('gpg-noverify', { signing_cmd: gpgCmd() });
    const mem = memoryLogger();
    const r = await signImage(image, { log: mem.log, env: { PATH: process.env.PATH } });
    expect(r.fingerprint).toBe(fingerprint);
    expect(mem.text()).toContain('not verified (set signing_pubkey to verify)');
  });

  it('a signature that does not verify with signing_pubkey fails and the .asc is removed', async () => {
    const image = await imageWithFile('gpg-wrongkey', { signing_cmd: gpgCmd(), signing_pubkey: otherPub });
    await expect(signImage(image, { log: silentLogger(), env: { PATH: process.env.PATH } })).rejects.toThrow(
      /does not verify with signing_pubkey/,
    );
    expect(await exists(`${image.uploadPath}.asc`)).toBe(false);
  });
});
