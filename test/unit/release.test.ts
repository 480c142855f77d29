// release_cmd: argument splitting, placeholders, a real script, and failures that name the command and why.
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { displayArgv, fillArgument, splitCommand } from '../../src/release/command.js';
import { releaseImage, releaseValues } from '../../src/release/index.js';
import { UserError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/log.js';
import { imageOf, memoryLogger, variant } from './release-fixtures.js';

describe('splitCommand', () => {
  const split = (s: string) => splitCommand(s, 'test_cmd');
  it('splits like a POSIX shell for quotes and backslashes, with no expansion', () => {
    expect(split('a  b\tc')).toEqual(['a', 'b', 'c']);
    expect(split(`ssh host "bin/release-image {v_version} {cloud}"`)).toEqual([
      'ssh',
      'host',
      'bin/release-image {v_version} {cloud}',
    ]);
    expect(split(`echo 'it''s' "say \\"hi\\"" a\\ b`)).toEqual(['echo', 'its', 'say "hi"', 'a b']);
    expect(split(`x '' "" y`)).toEqual(['x', '', '', 'y']);
    expect(split(`echo $HOME "$HOME" '*'`)).toEqual(['echo', '$HOME', '$HOME', '*']);
    expect(split(`a "b\\nc" 'd\\e'`)).toEqual(['a', 'b\\nc', 'd\\e']);
  });
  it('refuses unquoted shell operators and unbalanced quotes, naming the setting', () => {
    for (const op of ['|', '&&', ';', '>', '2>&1']) {
      expect(() => split(`a ${op} b`)).toThrow(
        new RegExp(`test_cmd: '${op.replace(/[|&;>]/g, '\\$&')}' needs a shell`),
      );
    }
    expect(split(`a '|' ">" b`)).toEqual(['a', '|', '>', 'b']);
    expect(() => split(`a "b`)).toThrow(/test_cmd: unterminated double quote/);
    expect(() => split(`a 'b`)).toThrow(/test_cmd: unterminated single quote/);
    expect(() => split(`a \\`)).toThrow(/trailing backslash/);
    expect(() => split('   ')).toThrow(/test_cmd: empty command/);
  });
});

describe('fillArgument', () => {
  const v = { cloud: 'aws', revision: 3, flag: true, obj: { a: 1 }, none: null };
  it('fills known scalars, keeps {{ }} as literal braces', () => {
    expect(fillArgument('{cloud}-r{revision}-{flag}', v, 'x')).toBe('aws-r3-true');
    expect(fillArgument('{{"json": "{cloud}"}}', v, 'x')).toBe('{"json": "aws"}');
  });
  it('refuses unknown, empty and non-scalar placeholders', () => {
    expect(() => fillArgument('{nope}', v, 'release_cmd')).toThrow(
      /release_cmd: placeholder \{nope\} has no value/,
    );
    expect(() => fillArgument('{none}', v, 'x')).toThrow(/\{none\} has no value/);
    expect(() => fillArgument('{obj}', v, 'x')).toThrow(/\{obj\} is not a single value/);
    expect(() => fillArgument('{bad name}', v, 'x')).toThrow(/bad placeholder/);
    expect(() => fillArgument('{open', v, 'x')).toThrow(/bad placeholder/);
  });
});

describe('displayArgv', () => {
  it('quotes for the shell and masks passphrase-like values', () => {
    expect(displayArgv(['gpg', '--passphrase', 's3cret', '--password=hunter2', 'a b', "it's"])).toBe(
      `gpg --passphrase *** --password=*** 'a b' 'it'\\''s'`,
    );
  });
});

describe('releaseImage', () => {
  let tmp: string;
  let script: string;
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'release-test-'));
    script = join(tmp, 'release-image');
    await writeFile(
      script,
      [
        '#!/bin/sh',
        'printf "%s\\n" "$@" > "$ARGS_OUT"',
        'pwd >> "$ARGS_OUT"',
        'if [ "$1" = fail ]; then',
        '  echo "line 1 of noise" >&2',
        '  echo "rsync: permission denied (13)" >&2',
        '  exit 23',
        'fi',
        '',
      ].join('\n'),
    );
    await chmod(script, 0o755);
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  const make = (name: string, extra: Record<string, unknown>) =>
    imageOf(
      variant({
        version: '3.21',
        release: '3.21.2',
        revision: 2,
        storageRoot: join(tmp, name, 'storage'),
        extra,
      }),
      join(tmp, name),
    );

  it('runs release_cmd with {v_version} {cloud} {arch} {base} and any resolved setting, in the image directory', async () => {
    const image = make('ok', {
      release_cmd: `"${script}" {v_version} {cloud} {arch} {base} --project {project} --file {upload_file} "{release} r{revision}"`,
    });
    await mkdir(image.localDir, { recursive: true });
    const argsOut = join(tmp, 'ok-args.txt');
    await releaseImage(image, { log: silentLogger(), env: { ARGS_OUT: argsOut } });
    const lines = (await readFile(argsOut, 'utf8')).split('\n').slice(0, -1);
    expect(lines).toEqual([
      'v3.21',
      'aws',
      'x86_64',
      'aws_alpine-3.21.2-x86_64-uefi-tiny-r2',
      '--project',
      'https://example.org/cloud-test',
      '--file',
      'aws_alpine-3.21.2-x86_64-uefi-tiny-r2.vhd',
      '3.21.2 r2',
      image.localDir,
    ]);
    expect(releaseValues(image).base).toBe(image.imageName);
  });

  it('a failing release_cmd throws a UserError naming the command, exit code and stderr tail', async () => {
    const image = make('fail', { release_cmd: `"${script}" fail {base}` });
    const mem = memoryLogger();
    const err = await releaseImage(image, {
      log: mem.log,
      env: { ARGS_OUT: join(tmp, 'fail-args.txt') },
    }).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toContain(`release_cmd for ${image.imageName} failed`);
    expect(err.message).toContain(`${script} fail ${image.imageName}`);
    expect(err.message).toContain('exited with code 23');
    expect(err.message).toContain('rsync: permission denied (13)');
    // it ran from the current directory, as the image directory does not exist on this machine
    const lines = (await readFile(join(tmp, 'fail-args.txt'), 'utf8')).trim().split('\n');
    expect(lines.at(-1)).toBe(process.cwd());
  });

  it('a missing program is reported as not found', async () => {
    const image = make('missing', { release_cmd: 'no-such-release-tool-x9 {base}' });
    await expect(
      releaseImage(image, { log: silentLogger(), env: { PATH: '/usr/bin:/bin' } }),
    ).rejects.toThrow(
      /release_cmd for .* failed: `no-such-release-tool-x9 aws_alpine-3\.21\.2-x86_64-uefi-tiny-r2` command not found/,
    );
  });

  it('without release_cmd nothing runs', async () => {
    const image = make('none', { release_cmd: null });
    await expect(releaseImage(image, { log: silentLogger(), env: {} })).resolves.toBeUndefined();
  });

  it('a bad placeholder fails before running anything', async () => {
    const image = make('badph', { release_cmd: `"${script}" {v_version} {qemu}` });
    await expect(
      releaseImage(image, { log: silentLogger(), env: { ARGS_OUT: join(tmp, 'never.txt') } }),
    ).rejects.toThrow(/release_cmd for .*: placeholder \{qemu\} is not a single value/);
    await expect(readFile(join(tmp, 'never.txt'))).rejects.toThrow(/ENOENT/);
  });
});
