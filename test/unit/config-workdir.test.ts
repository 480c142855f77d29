import { chmod, lstat, readdir, readFile, readlink, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { BuildOptions } from '../../src/cli/options.js';
import { prepareWorkDir, WORK_KEEP } from '../../src/config/index.js';
import { stageWorkDir } from '../../src/config/workdir.js';
import { configsStep } from '../../src/steps/configs.js';
import { UserError } from '../../src/util/errors.js';
import {
  CDN_URL,
  captureLog,
  makeTree,
  miniTop,
  NOW,
  RELEASES_URL,
  removeTree,
  type TreeSpec,
} from '../fixtures/config-helpers.js';

/** an aws variant that passes the AWS plugin's checks (a VHD image, a firmware AWS can boot) */
const AWS_DIMS = [
  '  version:',
  '    "3.22": {}',
  '  arch:',
  '    x86_64: {name: [x86_64]}',
  '  cloud:',
  '    aws: {image_format: vhd, firmware: bios}',
].join('\n');

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await removeTree(d);
});
async function tree(spec: TreeSpec): Promise<string> {
  const d = await makeTree(spec);
  dirs.push(d);
  return d;
}

/** a repository root with configs/ (YAML, selected by images.yaml) and scripts/ */
async function repo(extra: TreeSpec = {}): Promise<string> {
  return tree({
    'configs/alpine.yaml': miniTop({ defaults: '  scripts: [setup]', dims: AWS_DIMS }),
    'configs/images.yaml': { symlink: 'alpine.yaml' },
    'configs/cloud/aws.yaml': 'cloud_name: AWS\n',
    'configs/.hidden': 'not installed\n',
    'scripts/setup': '#!/bin/sh\necho setup\n',
    'scripts/setup.d/fstab': 'data\n',
    ...extra,
  });
}

function ctx(rootDir: string, workDir: string, custom: string[] = [], clean = false) {
  return {
    rootDir,
    workDir,
    custom,
    clean,
    releasesUrl: RELEASES_URL,
    cdnUrl: CDN_URL,
    now: NOW,
    log: captureLog().log,
  };
}

async function listTree(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(join(dir, rel))).sort()) {
    const p = rel ? `${rel}/${name}` : name;
    const st = await lstat(join(dir, p));
    if (st.isSymbolicLink()) out.push(`${p} -> ${await readlink(join(dir, p))}`);
    else if (st.isDirectory()) out.push(`${p}/`, ...(await listTree(dir, p)));
    else out.push(p);
  }
  return out;
}

describe('installing work/configs and work/scripts', () => {
  it('copies configs/ and scripts/, then each --custom DIR in order, keeping modes and skipping dotfiles', async () => {
    const root = await repo();
    await chmod(join(root, 'scripts/setup'), 0o755);
    const o1 = await tree({ 'configs/cloud/mine.yaml': 'cloud_name: Mine\n', 'scripts/setup-mine': 'x\n' });
    const o2 = await tree({ 'configs/extra/more.yaml': 'a: 1\n' });
    const work = await tree({});
    await prepareWorkDir(ctx(root, work, [o1, o2]));
    expect(await listTree(work)).toEqual([
      'configs/',
      'configs/.overlays.json',
      'configs/alpine.yaml',
      'configs/cloud/',
      'configs/cloud/aws.yaml',
      'configs/cloud/mine.yaml',
      'configs/extra/',
      'configs/extra/more.yaml',
      'configs/images.yaml -> alpine.yaml',
      'scripts/',
      'scripts/.overlays.json',
      'scripts/setup',
      'scripts/setup-mine',
      'scripts/setup.d/',
      'scripts/setup.d/fstab',
    ]);
    expect((await stat(join(work, 'scripts/setup'))).mode & 0o777).toBe(0o755);
    expect(await readFile(join(work, 'configs/cloud/mine.yaml'), 'utf8')).toBe('cloud_name: Mine\n');
  });

  it('refuses --custom on a work dir installed from other overlays, naming both lists and --clean', async () => {
    const root = await repo();
    const o1 = await tree({ 'configs/cloud/mine.yaml': 'cloud_name: Mine\n' });
    const o2 = await tree({ 'configs/cloud/other.yaml': 'cloud_name: Other\n' });
    const work = await tree({});
    await prepareWorkDir(ctx(root, work, [o1]));
    // the same overlays again, or none named: the installed work dir is used as it is
    await prepareWorkDir(ctx(root, work, [o1]));
    await prepareWorkDir(ctx(root, work, []));
    const err = await prepareWorkDir(ctx(root, work, [o2])).then(
      () => undefined,
      (e: Error) => e.message,
    );
    expect(err).toContain(`was installed from --custom ${o1}, not from --custom ${o2}`);
    expect(err).toContain('add --clean');
    expect(await readFile(join(work, 'configs/cloud/mine.yaml'), 'utf8')).toBe('cloud_name: Mine\n');
    // --clean reinstalls from the new list
    await prepareWorkDir(ctx(root, work, [o2], true));
    expect((await listTree(work)).filter((l) => l.startsWith('configs/cloud/'))).toEqual([
      'configs/cloud/',
      'configs/cloud/aws.yaml',
      'configs/cloud/other.yaml',
    ]);
  });

  it('an overlay’s images.yaml or images.conf (a same-directory symlink) replaces the selector', async () => {
    const root = await repo();
    const yamlOverlay = await tree({
      'configs/mine.yaml': 'include: alpine.yaml\n',
      'configs/images.yaml': { symlink: 'mine.yaml' },
    });
    const confOverlay = await tree({
      'configs/mine.conf': 'include required("x.conf")\n',
      'configs/images.conf': { symlink: 'mine.conf' },
    });
    const w1 = await tree({});
    await prepareWorkDir(ctx(root, w1, [yamlOverlay]));
    expect(await readlink(join(w1, 'configs/images.yaml'))).toBe('mine.yaml');
    const w2 = await tree({});
    await prepareWorkDir(ctx(root, w2, [yamlOverlay, confOverlay]));
    expect((await listTree(w2)).filter((l) => l.startsWith('configs/images'))).toEqual([
      'configs/images.conf -> mine.conf',
    ]);
  });

  it('installing over an existing file is an error naming both paths; work/ stays as it was', async () => {
    const root = await repo();
    const clash = await tree({ 'configs/cloud/aws.yaml': 'cloud_name: Other\n' });
    const work = await tree({ 'cache/iso/keep.iso': 'iso' });
    const err = await prepareWorkDir(ctx(root, work, [clash])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toBe(
      `cannot install ${join(clash, 'configs/cloud/aws.yaml')} over ${join(work, 'configs/cloud/aws.yaml')} (installed from ${join(root, 'configs/cloud/aws.yaml')}): overlays may not replace files (only configs/images.yaml or images.conf, a symlink to a file in the same directory)`,
    );
    expect(await listTree(work)).toEqual(['cache/', 'cache/iso/', 'cache/iso/keep.iso']);
  });

  it('an images.yaml that is a plain file, or a symlink out of its directory, is an ordinary file (and clashes)', async () => {
    const root = await repo();
    const plain = await tree({ 'configs/images.yaml': 'Default: {}\n' });
    const outside = await tree({
      'configs/images.yaml': { symlink: '../elsewhere/top.yaml' },
      'elsewhere/top.yaml': 'a: 1\n',
    });
    for (const o of [plain, outside]) {
      const work = await tree({});
      await expect(prepareWorkDir(ctx(root, work, [o]))).rejects.toThrow(
        /cannot install .*configs\/images\.yaml over .*configs\/images\.yaml/,
      );
    }
  });

  it('a directory over a file (or the reverse) clashes too; a dangling symlink is an error', async () => {
    const root = await repo();
    const dirOverFile = await tree({ 'configs/alpine.yaml/inner.yaml': 'a: 1\n' });
    await expect(prepareWorkDir(ctx(root, await tree({}), [dirOverFile]))).rejects.toThrow(
      /cannot install .* over .*configs\/alpine\.yaml/,
    );
    const dangling = await tree({ 'scripts/broken': { symlink: 'nowhere' } });
    await expect(prepareWorkDir(ctx(root, await tree({}), [dangling]))).rejects.toThrow(
      /scripts\/broken: it is a dangling symlink/,
    );
  });

  it('leaves existing work/configs and work/scripts alone, installing only what is missing', async () => {
    const root = await repo();
    const work = await tree({ 'configs/mine.yaml': 'edited: true\n' });
    await prepareWorkDir(ctx(root, work, []));
    expect(await listTree(join(work, 'configs'))).toEqual(['mine.yaml']);
    expect(await listTree(join(work, 'scripts'))).toEqual([
      '.overlays.json',
      'setup',
      'setup.d/',
      'setup.d/fstab',
    ]);
  });

  it('--clean empties work/ but keeps caches and the lock, then installs afresh', async () => {
    const root = await repo();
    const work = await tree({
      '.lock': '{}',
      'cache/x': '1',
      'firmware/uefi-x86_64.bin': 'fw',
      'packer_cache/p': 'p',
      'images.yaml': 'old',
      'images/aws/key/image.qcow2': 'img',
      'configs/old.yaml': 'old',
      '.stage-1-dead/configs/x': 'stale',
    });
    await prepareWorkDir(ctx(root, work, [], true));
    const top = await readdir(work);
    expect(top.sort()).toEqual(['.lock', 'cache', 'configs', 'firmware', 'packer_cache', 'scripts']);
    expect(await listTree(join(work, 'configs'))).toContain('alpine.yaml');
    expect(WORK_KEEP).toEqual(expect.arrayContaining(['.lock', 'cache', 'firmware', 'packer_cache']));
  });

  it('the same directory given twice is installed once', async () => {
    const root = await repo();
    const o = await tree({ 'configs/x.yaml': 'a: 1\n' });
    const work = await tree({});
    await prepareWorkDir(ctx(root, work, [o, o, root]));
    expect(await listTree(join(work, 'configs'))).toContain('x.yaml');
  });

  it('staging happens inside work/ and is discarded without a trace', async () => {
    const root = await repo();
    const work = await tree({});
    const staged = await stageWorkDir(ctx(root, work));
    expect(staged.installed).toEqual(['configs', 'scripts']);
    expect(staged.configsDir.startsWith(join(work, '.stage-'))).toBe(true);
    expect(staged.origins.get(join(staged.configsDir, 'alpine.yaml'))).toBe(
      join(root, 'configs/alpine.yaml'),
    );
    await staged.discard();
    expect(await readdir(work)).toEqual([]);
  });
});

describe('the configs step', () => {
  function options(rootDir: string, workDir: string, over: Partial<BuildOptions> = {}): BuildOptions {
    return {
      command: 'configs',
      debug: false,
      clean: false,
      padUefiBinArch: [],
      custom: [],
      skip: [],
      only: [],
      revise: false,
      useBroker: false,
      color: false,
      parallel: 1,
      vars: [],
      disable: [],
      releasesUrl: RELEASES_URL,
      cdnUrl: CDN_URL,
      logFormat: 'json',
      rootDir,
      workDir,
      really: false,
      ...over,
    };
  }

  it('resolves and writes images.yaml once; later runs load it; --clean resolves afresh', async () => {
    const root = await repo();
    const work = await tree({ 'cache/keep': 'k' });
    const cap = captureLog();
    const first = await configsStep(options(root, work), cap.log, NOW);
    expect(Object.keys(first)).toEqual(['3.22-x86_64-aws']);
    expect(first['3.22-x86_64-aws']!.scripts).toEqual(['setup']);
    const text = await readFile(join(work, 'images.yaml'), 'utf8');

    // edit the work copy: without --clean the existing images.yaml is used as it is
    await writeFile(
      join(work, 'configs/alpine.yaml'),
      miniTop({ defaults: '  scripts: [edited]', dims: AWS_DIMS }),
    );
    const second = await configsStep(options(root, work), cap.log, NOW);
    expect(second).toEqual(first);
    expect(await readFile(join(work, 'images.yaml'), 'utf8')).toBe(text);
    expect(cap.text()).toMatch(/using existing .*images\.yaml \(1 variants\)/);

    // --clean: configs are installed afresh from the sources, caches stay
    const third = await configsStep(options(root, work, { clean: true }), cap.log, NOW);
    expect(third['3.22-x86_64-aws']!.scripts).toEqual(['setup']);
    expect(await readFile(join(work, 'cache/keep'), 'utf8')).toBe('k');
  });

  it('writes nothing to work/ when resolution fails (and names the source file, not the staged copy)', async () => {
    const root = await repo({ 'configs/cloud/aws.yaml': 'disk_size: [lots]\n' });
    await writeFile(
      join(root, 'configs/alpine.yaml'),
      miniTop({
        dims: '  version:\n    "3.22": {}\n  arch:\n    x86_64: {}\n  cloud:\n    aws: {include: cloud/aws.yaml}',
      }),
    );
    const work = await tree({ 'cache/keep': 'k' });
    const err = await configsStep(options(root, work), captureLog().log, NOW).catch((e: unknown) => e);
    expect((err as Error).message).toBe(
      `variant 3.22-x86_64-aws: disk_size: expected a list of whole numbers (MiB) that add up to the disk size, got [100,"lots"] (${join(root, 'configs/cloud/aws.yaml')}:1:1)`,
    );
    expect(await listTree(work)).toEqual(['cache/', 'cache/keep']);
    // with --clean too: nothing is removed when resolution fails
    await expect(configsStep(options(root, work, { clean: true }), captureLog().log, NOW)).rejects.toThrow(
      /disk_size/,
    );
    expect(await listTree(work)).toEqual(['cache/', 'cache/keep']);
  });

  it('creates the work directory when it does not exist', async () => {
    const root = await repo();
    const parent = await tree({});
    const work = join(parent, 'a', 'work');
    await configsStep(options(root, work), captureLog().log, NOW);
    expect((await readdir(work)).sort()).toEqual(['configs', 'images.yaml', 'scripts']);
  });
});
