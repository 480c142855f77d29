// Safe names and paths: includes stay in their config tree, overlay symlinks stay in their overlay, settings carry
// no credentials (and errors never echo them).
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveConfigsDir } from '../../src/config/index.js';
import { stageWorkDir } from '../../src/config/workdir.js';
import { isSafeName, isSafeNameTemplate } from '../../src/util/safe-name.js';
import {
  captureLog,
  makeTree,
  miniTop,
  removeTree,
  resolveCtx,
  type TreeSpec,
} from '../fixtures/config-helpers.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await removeTree(d);
});
async function tree(spec: TreeSpec): Promise<string> {
  const d = await makeTree(spec);
  dirs.push(d);
  return d;
}
async function resolveError(dir: string): Promise<Error> {
  const err = await resolveConfigsDir(dir, resolveCtx(captureLog().log)).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(Error);
  return err as Error;
}

describe('the safe character set', () => {
  it('allows letters, digits and . _ + -, and refuses paths, dot-dot, spaces, control and bidi characters', () => {
    for (const ok of ['x86_64', '3.22', 'edge', 'aws', 'my-cloud', 'r0', 'c++'])
      expect(isSafeName(ok), ok).toBe(true);
    for (const bad of [
      '',
      '.',
      '..',
      'a..b',
      '../x',
      'a/b',
      'a\\b',
      '-rf',
      '.hidden',
      'a b',
      'a\nb',
      'a\u202eb',
      'x'.repeat(129),
    ]) {
      expect(isSafeName(bad), JSON.stringify(bad)).toBe(false);
    }
    expect(isSafeNameTemplate('{cloud}_alpine')).toBe(true);
    expect(isSafeNameTemplate('r{revision}')).toBe(true);
    expect(isSafeNameTemplate('{cloud}/../x')).toBe(false);
  });
});

describe('includes stay inside their config tree', () => {
  it('YAML: an include that leaves the tree is an error naming the include and the including file', async () => {
    const outside = await tree({ 'secret.yaml': 'project: stolen\n' });
    const dir = await tree({
      'top.yaml': `include: ${join(outside, 'secret.yaml')}\n${miniTop()}`,
      'images.yaml': { symlink: 'top.yaml' },
    });
    const err = await resolveError(dir);
    expect(err.message).toBe(
      `${dir}/top.yaml:1:10: include "${join(outside, 'secret.yaml')}": outside the config tree ${dir} (includes may only read files of the tree they belong to)`,
    );
    const rel = await tree({
      'configs/top.yaml': `${miniTop()}`.replace('Default:\n', 'Default:\n  include: ../../escape.yaml\n'),
      'configs/images.yaml': { symlink: 'top.yaml' },
      'escape.yaml': 'project: x\n',
    });
    expect((await resolveError(join(rel, 'configs'))).message).toMatch(
      /top\.yaml:\d+:\d+: include "\.\.\/\.\.\/escape\.yaml": (file not found|outside the config tree)/,
    );
  });

  it('YAML: a symlink inside the tree that points out of it is refused too', async () => {
    const outside = await tree({ 'secret.yaml': 'project: stolen\n' });
    const dir = await tree({
      'top.yaml': `include: link.yaml\n${miniTop()}`,
      'link.yaml': { symlink: join(outside, 'secret.yaml') },
      'images.yaml': { symlink: 'top.yaml' },
    });
    expect((await resolveError(dir)).message).toMatch(
      /top\.yaml:1:10: include "link\.yaml": outside the config tree/,
    );
  });

  it('HOCON: an include that leaves the tree is refused before the parser reads it', async () => {
    const outside = await tree({ 'secret.conf': 'project = stolen\n' });
    const dir = await tree({
      'top.conf': `include required(file("${join(outside, 'secret.conf')}"))\nDefault { project = p }\n`,
      'images.conf': { symlink: 'top.conf' },
    });
    const err = await resolveError(dir);
    expect(err.message).toMatch(
      new RegExp(`^${dir}/top\\.conf:1: include ".*secret\\.conf": outside the config tree`),
    );
    const url = await tree({
      'top.conf': 'include url("https://user:hunter2@example.org/x.conf")\nDefault { project = p }\n',
      'images.conf': { symlink: 'top.conf' },
    });
    const e2 = await resolveError(url);
    expect(e2.message).toMatch(/include url\(".*"\): only files of the config tree may be included/);
    expect(e2.message).not.toContain('hunter2');
  });
});

describe('overlay symlinks stay inside their overlay', () => {
  it('a symlink to a file outside the --custom directory is refused, and work/ is left as it was', async () => {
    const outside = await tree({ passwd: 'root:x:0:0\n' });
    const root = await tree({
      'configs/alpine.yaml': miniTop(),
      'configs/images.yaml': { symlink: 'alpine.yaml' },
    });
    const custom = await tree({ 'configs/cloud/leak.yaml': { symlink: join(outside, 'passwd') } });
    const inside = await tree({
      'configs/cloud/real.yaml': 'x: 1\n',
      'configs/cloud/alias.yaml': { symlink: 'real.yaml' },
    });
    const work = await tree({});
    const log = captureLog().log;
    const err = await stageWorkDir({
      rootDir: root,
      workDir: work,
      custom: [custom],
      clean: false,
      log,
    }).catch((e: unknown) => e);
    expect((err as Error).message).toBe(
      `cannot install ${custom}/configs/cloud/leak.yaml: it is a symlink to ${outside}/passwd, outside ${custom} (symlinks in an overlay must point inside it)`,
    );
    expect(await readdir(work)).toEqual([]);
    // a symlink to a file of the same overlay is fine
    const ok = await stageWorkDir({ rootDir: root, workDir: work, custom: [inside], clean: false, log });
    await ok.discard();
  });
});

describe('credentials in settings', () => {
  it('a URL with credentials in any setting is refused, and the error shows it redacted', async () => {
    const dir = await tree({
      'top.yaml': miniTop({
        defaults: [
          '  storage_url: "https://builder:hunter2@storage.example.org/images"',
          '  repos:',
          '    "https://TOKEN123@mirror.example.org/alpine/main": true',
        ].join('\n'),
      }),
      'images.yaml': { symlink: 'top.yaml' },
    });
    const err = await resolveError(dir);
    expect(err.message).not.toContain('hunter2');
    expect(err.message).not.toContain('TOKEN123');
    expect(err.message).toContain('Default.storage_url: expected URLs without credentials');
    expect(err.message).toContain('"https://builder:***@storage.example.org/images"');
    expect(err.message).toContain(
      'Default.repos.https://***@mirror.example.org/alpine/main: expected URLs without credentials',
    );
    expect(err.message).toMatch(/top\.yaml:\d+:\d+\)/);
  });
});
