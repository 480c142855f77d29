// `./build configs` (and --only/--skip) through the real CLI, offline, on the bundled fixtures.
import { mkdtemp, readdir, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_CDN_URL } from '../../src/cli/options.js';
import { parseImagesYaml } from '../../src/config/images-yaml.js';
import { resolveConfigsDir } from '../../src/config/index.js';
import {
  captureLog,
  FIXTURES,
  makeTree,
  RELEASES_URL,
  ROOT,
  removeTree,
  resolveCtx,
  type TreeSpec,
} from '../fixtures/config-helpers.js';
import { runBuild } from '../helpers/cli.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await removeTree(d);
});
async function workDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'cib-configs-cli-'));
  dirs.push(d);
  return d;
}
async function overlay(spec: TreeSpec): Promise<string> {
  const d = await makeTree(spec);
  dirs.push(d);
  return d;
}
const configs = (work: string, ...args: string[]) =>
  runBuild(['configs', '--work-dir', work, '--releases-url', RELEASES_URL, '--log-format', 'json', ...args]);

/** the log lines (JSON) a run wrote to stderr */
function messages(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => (JSON.parse(l) as { msg: string }).msg);
}

describe('./build configs', () => {
  it('installs the work directory and writes images.yaml for the full matrix', async () => {
    const work = await workDir();
    const r = await configs(work);
    expect(r.stderr).not.toMatch(/"level":50/);
    expect(r.code).toBe(0);
    const images = parseImagesYaml(await readFile(join(work, 'images.yaml'), 'utf8'), 'images.yaml');
    // the same matrix as resolving in-process today (the date decides which versions are past end of life)
    const expected = await resolveConfigsDir(
      join(ROOT, 'configs'),
      resolveCtx(captureLog('warn').log, { now: new Date(), workDir: work, cdnUrl: DEFAULT_CDN_URL }),
    );
    expect(Object.keys(images)).toEqual(Object.keys(expected.images));
    expect(images).toEqual(expected.images);
    const s = expected.stats;
    expect(messages(r.stderr)).toContain(
      `resolved ${s.variants} variants from 576 combinations (${s.excluded} excluded, ${s.endOfLife} past end of life)`,
    );
    expect((await readdir(work)).sort()).toEqual(['configs', 'images.yaml', 'scripts']);
    expect((await readdir(join(work, 'configs'))).filter((n) => n !== '.overlays.json').sort()).toEqual(
      (await readdir(join(ROOT, 'configs'))).filter((n) => !n.startsWith('.')).sort(),
    );
    const first = Object.values(images)[0]!;
    expect(first.storage_url).toBe(
      `file://${work}/storage/${first.version === 'edge' ? 'edge' : `v${first.version}`}/${first.cloud}/${first.arch}`,
    );

    // a second run uses the existing images.yaml
    const before = await stat(join(work, 'images.yaml'));
    const again = await configs(work);
    expect(again.code).toBe(0);
    expect(
      messages(again.stderr).some((m) => /^using existing .*images\.yaml \(\d+ variants\)$/.test(m)),
    ).toBe(true);
    expect((await stat(join(work, 'images.yaml'))).mtimeMs).toBe(before.mtimeMs);
  });

  it('--clean resolves afresh and keeps caches', async () => {
    const work = await workDir();
    await makeTree(
      {
        'cache/boot/vmlinuz': 'kernel',
        'images.yaml': '---\nold-key:\n  arch: x86_64\n',
        'configs/images.yaml': 'broken: [',
      },
      work,
    );
    const r = await configs(work, '--clean');
    expect(r.code).toBe(0);
    expect(await readFile(join(work, 'cache/boot/vmlinuz'), 'utf8')).toBe('kernel');
    const images = parseImagesYaml(await readFile(join(work, 'images.yaml'), 'utf8'), 'images.yaml');
    expect(images['old-key']).toBeUndefined();
    expect(Object.keys(images).length).toBeGreaterThan(100);
  });

  it('--custom overlays/testing selects the testing config', async () => {
    const work = await workDir();
    const r = await configs(work, '--custom', 'overlays/testing');
    expect(r.code).toBe(0);
    const images = parseImagesYaml(await readFile(join(work, 'images.yaml'), 'utf8'), 'images.yaml');
    const hybrid = Object.values(images).filter((c) => c.firmware === 'hybrid');
    expect(hybrid.length).toBeGreaterThan(0);
    expect(hybrid[0]).toMatchObject({ project: 'alpine-cloud-images-testing', bootloader: 'grub-hybrid' });
  });

  it('an alpine-cloud-images HOCON tree and its HOCON overlay work unchanged with --custom', async () => {
    const work = await workDir();
    const r = await configs(work, '--custom', join(FIXTURES, 'hocon'), join(FIXTURES, 'hocon', 'overlay'));
    expect(r.code).toBe(0);
    const images = parseImagesYaml(await readFile(join(work, 'images.yaml'), 'utf8'), 'images.yaml');
    const c = Object.values(images).find((x) => x.firmware === 'hybrid' && x.cloud === 'aws')!;
    expect(c).toMatchObject({ project: 'hocon-overlay-test', access: { PUBLIC: false } });
    expect(c.name).toMatch(/^test-\d/);
  });
});

describe('bad input through the CLI: one clear error, exit code 1, nothing written to work/', () => {
  const top = (body: string) => ({
    'configs/top.yaml': body,
    'configs/images.yaml': { symlink: 'top.yaml' },
  });
  const cases: [string, () => Promise<{ args: string[]; expect: (dir: string) => RegExp }>][] = [
    [
      'a YAML syntax error names file, line and column',
      async () => {
        const o = await overlay(top('Default:\n  name: [a, b\nDimensions: {}\n'));
        return {
          args: ['--custom', o],
          expect: (d) => new RegExp(`${d}/configs/top\\.yaml:3:1: YAML syntax error: `),
        };
      },
    ],
    [
      'a HOCON syntax error names file, line and column',
      async () => {
        const o = await overlay({
          'configs/top.conf': 'Default {\n  name = [a\n}\n',
          'configs/images.conf': { symlink: 'top.conf' },
        });
        return {
          args: ['--custom', o],
          expect: (d) => new RegExp(`${d}/configs/top\\.conf:3:1: HOCON error: `),
        };
      },
    ],
    [
      'a missing YAML include names the including file',
      async () => {
        const o = await overlay(top('include: [alpine.yaml, nope.yaml]\n'));
        return {
          args: ['--custom', o],
          expect: (d) =>
            new RegExp(
              `${d}/configs/top\\.yaml:1:24: include "nope\\.yaml": file not found \\(/tmp/cib-configs-cli-\\w+/configs/nope\\.yaml\\)$`,
            ),
        };
      },
    ],
    [
      'a missing HOCON include names the including file',
      async () => {
        const o = await overlay({
          'configs/top.conf': 'a = 1\ninclude required("gone.conf")\n',
          'configs/images.conf': { symlink: 'top.conf' },
        });
        return {
          args: ['--custom', o],
          expect: (d) => new RegExp(`${d}/configs/top\\.conf:2:\\d+: include "gone\\.conf": file not found`),
        };
      },
    ],
    [
      'disk_size that is not numbers names variant, key, file and what was expected',
      async () => {
        const o = await overlay({
          'configs/cloud/big.yaml': 'disk_size: [huge]\n',
          ...top('include: alpine.yaml\nDimensions:\n  cloud:\n    big: {include: cloud/big.yaml}\n'),
        });
        return {
          args: ['--custom', o, '--only', 'big'],
          expect: (d) =>
            new RegExp(
              `variants [\\w.]+-x86_64-bios-tiny-vm-big, .* and 45 more: disk_size: expected a list of whole numbers \\(MiB\\) that add up to the disk size, got \\[128,"huge"\\] in the first of them \\(${d}/configs/cloud/big\\.yaml:1:1\\)`,
            ),
        };
      },
    ],
    [
      'packages that is not a map',
      async () => {
        const o = await overlay(top('include: alpine.yaml\nMandatory:\n  packages: [a, b]\n'));
        return {
          args: ['--custom', o],
          expect: (d) =>
            new RegExp(
              `: packages: expected a map of package name .*got \\[.*\\] \\(${d}/configs/top\\.yaml:3:3\\)`,
            ),
        };
      },
    ],
    [
      'an EXCLUDE that is not a list',
      async () => {
        const o = await overlay(
          top('include: alpine.yaml\nDimensions:\n  arch:\n    aarch64:\n      EXCLUDE: bios\n'),
        );
        return {
          args: ['--custom', o],
          expect: (d) =>
            new RegExp(
              `-aarch64-bios-.*: EXCLUDE: expected a list of dimension keys .*got "bios" \\(${d}/configs/top\\.yaml:5:7\\)`,
            ),
        };
      },
    ],
    [
      'installing over an existing file names both paths',
      async () => {
        const o = await overlay({ 'configs/cloud/aws.yaml': 'cloud_name: Mine\n' });
        return {
          args: ['--custom', o],
          expect: (d) =>
            new RegExp(
              `cannot install ${d}/configs/cloud/aws\\.yaml over .*/configs/cloud/aws\\.yaml \\(installed from configs/cloud/aws\\.yaml\\)`,
            ),
        };
      },
    ],
    [
      'a releases.json that does not exist names the URL',
      async () => ({
        args: ['--releases-url', `file://${FIXTURES}/missing-releases.json`],
        expect: () => /releases\.json file:\/\/.*missing-releases\.json: file not found/,
      }),
    ],
    [
      'a version that is neither released nor a release candidate',
      async () => {
        const o = await overlay(
          top('include: alpine.yaml\nDimensions:\n  version:\n    "3.99": {include: version/base.yaml}\n'),
        );
        return {
          args: ['--custom', o, '--cdn-url', `file://${FIXTURES}/cdn`],
          expect: () => /version "3\.99" is not in releases\.json .*no release candidate could be found/,
        };
      },
    ],
  ];

  it.each(cases)('%s', async (_name, setup) => {
    const work = await workDir();
    const { args, expect: pattern } = await setup();
    const customDir = args[args.indexOf('--custom') + 1] ?? '';
    const r = await configs(work, ...args);
    expect(r.code).toBe(1);
    const errors = r.stderr.split('\n').filter((l) => l.includes('"level":50'));
    expect(errors).toHaveLength(1);
    expect((JSON.parse(errors[0]!) as { msg: string }).msg).toMatch(pattern(customDir));
    expect(await readdir(work)).toEqual([]);
  });
});

describe('--only and --skip through the CLI', () => {
  it('keys that match no dimension key are an error listing the valid keys', async () => {
    const work = await workDir();
    const r = await runBuild([
      'state',
      '--work-dir',
      work,
      '--releases-url',
      RELEASES_URL,
      '--only',
      'aarch64',
      'armv7',
      '--log-format',
      'json',
    ]);
    // a usage error: exit 2
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /--only armv7: no variant has this dimension key; valid keys: 3\.2\d, .*aarch64, aws, azure, bios, cloudinit, edge, gcp, generic, metal, .*x86_64/,
    );
    const s = await runBuild([
      'state',
      '--work-dir',
      work,
      '--releases-url',
      RELEASES_URL,
      '--skip',
      'nosuch',
      '--log-format',
      'json',
    ]);
    expect(s.code).toBe(2);
    expect(s.stderr).toMatch(/--skip nosuch: no variant has this dimension key; valid keys: /);
  });
});

describe('every error at once', () => {
  const top = (body: string) => ({
    'configs/top.yaml': body,
    'configs/images.yaml': { symlink: 'top.yaml' },
  });

  it('three bad values in three variants: all reported in one run, exit 1, work/ untouched', async () => {
    const o = await overlay(
      top(
        [
          'include: alpine.yaml',
          'Dimensions:',
          '  cloud:',
          '    aws:',
          '      WHEN: {aarch64: {image_format: qcow2}}',
          '    generic:',
          '      WHEN: {x86_64: {disk_size: [huge]}}',
          '    azure:',
          '      WHEN: {bios: {name: ["../escape"]}}',
          '',
        ].join('\n'),
      ),
    );
    const work = await workDir();
    const r = await configs(work, '--custom', o);
    expect(r.code).toBe(1);
    const errors = r.stderr.split('\n').filter((l) => l.includes('"level":50'));
    expect(errors).toHaveLength(1);
    const msg = (JSON.parse(errors[0]!) as { msg: string }).msg;
    expect(msg).toMatch(/^3 errors in the configs:\n/);
    expect(msg).toMatch(
      new RegExp(
        `variants [\\w.]+-aarch64-uefi-tiny-vm-aws, .*: image_format: expected vhd \\(AWS imports VHD images\\), got "qcow2" \\(${o}/configs/top\\.yaml:5:\\d+\\)`,
      ),
    );
    expect(msg).toMatch(
      new RegExp(
        `variants [\\w.]+-x86_64-bios-tiny-vm-generic, .*: disk_size: expected a list of whole numbers .*, got .*"huge"\\].* \\(${o}/configs/top\\.yaml:7:\\d+\\)`,
      ),
    );
    expect(msg).toMatch(
      new RegExp(
        `variants [\\w.]+-x86_64-bios-tiny-vm-azure, .*: name: expected a list of name parts, each letters, digits and \\. _ \\+ - only .*"\\.\\./escape".* \\(${o}/configs/top\\.yaml:9:\\d+\\)`,
      ),
    );
    expect(await readdir(work)).toEqual([]);
  });

  it('a WHEN key or EXCLUDE entry that is no dimension key is a warning naming file and line', async () => {
    const o = await overlay(
      top(
        [
          'include: alpine.yaml',
          'Dimensions:',
          '  cloud:',
          '    aws:',
          '      WHEN: {"bois uefi": {motd: {typo: yes}}}',
          '      EXCLUDE: [armv7]',
          '',
        ].join('\n'),
      ),
    );
    const work = await workDir();
    const r = await configs(work, '--custom', o);
    expect(r.code).toBe(0);
    const warnings = messages(r.stderr).filter((m) => m.includes('is no dimension key'));
    expect(warnings).toEqual([
      expect.stringMatching(
        new RegExp(
          `^WHEN key "bois" is no dimension key \\(known: .*\\), so it never applies \\(${o}/configs/top\\.yaml:5:14\\)$`,
        ),
      ),
      expect.stringMatching(
        new RegExp(`^EXCLUDE entry "armv7" is no dimension key .* \\(${o}/configs/top\\.yaml:6:7\\)$`),
      ),
    ]);
  });

  it('dimension keys and image names keep to the safe character set', async () => {
    const o = await overlay(
      top(
        [
          'include: alpine.yaml',
          'Dimensions:',
          '  cloud:',
          '    "../../etc": {}',
          '    "bad\\u202ekey": {}',
          '',
        ].join('\n'),
      ),
    );
    const work = await workDir();
    const r = await configs(work, '--custom', o);
    expect(r.code).toBe(1);
    const msg = messages(r.stderr).find((m) => m.startsWith('2 errors'));
    expect(msg).toContain(`Dimensions.cloud: expected keys of letters, digits and . _ + - only`);
    expect(msg).toContain(`got "../../etc" (${o}/configs/top.yaml:4:5)`);
    expect(msg).toContain(`got "bad\\u202ekey" (${o}/configs/top.yaml:5:5)`);
    expect(await readdir(work)).toEqual([]);
  });
});
