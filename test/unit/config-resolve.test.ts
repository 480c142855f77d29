import { afterAll, describe, expect, it } from 'vitest';
import { settingValue, settingValues } from '../../src/config/images-yaml.js';
import { ConfigError, resolveConfigsDir } from '../../src/config/index.js';
import type { ImagesFile } from '../../src/config/types.js';
import {
  CDN_URL,
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

async function resolveTree(spec: TreeSpec, opts: { now?: Date; selector?: string } = {}) {
  const top = Object.keys(spec).find((k) => k.startsWith('top.')) ?? 'top.yaml';
  const selector = opts.selector ?? (top.endsWith('.conf') ? 'images.conf' : 'images.yaml');
  const dir = await makeTree({ ...spec, [selector]: { symlink: top } });
  dirs.push(dir);
  const cap = captureLog();
  const result = await resolveConfigsDir(dir, resolveCtx(cap.log, opts.now ? { now: opts.now } : {}));
  return { ...result, dir, logText: cap.text, lines: cap.lines };
}

async function resolveError(
  spec: TreeSpec,
  opts: { now?: Date } = {},
): Promise<{ err: ConfigError; dir: string }> {
  const top = Object.keys(spec).find((k) => k.startsWith('top.')) ?? 'top.yaml';
  const dir = await makeTree({
    ...spec,
    [top.endsWith('.conf') ? 'images.conf' : 'images.yaml']: { symlink: top },
  });
  dirs.push(dir);
  try {
    await resolveConfigsDir(dir, resolveCtx(captureLog().log, opts.now ? { now: opts.now } : {}));
  } catch (err) {
    if (err instanceof ConfigError) return { err, dir };
    throw err;
  }
  throw new Error('expected a ConfigError');
}

const only = (images: ImagesFile, key: string) => {
  const c = images[key];
  if (!c) throw new Error(`no variant ${key}; have ${Object.keys(images).join(' ')}`);
  return c;
};

describe('the matrix', () => {
  it('makes one variant per combination, in itertools.product order, with keys, release and state fields', async () => {
    const { images, stats } = await resolveTree({
      'top.yaml': miniTop({
        dims: [
          '  version:',
          '    "3.22": {}',
          '    edge: {}',
          '  arch:',
          '    x86_64: {name: [x86_64]}',
          '    aarch64: {name: [aarch64]}',
          '  cloud:',
          '    aws: {}',
          '    my-cloud: {}',
        ].join('\n'),
      }),
    });
    expect(Object.keys(images)).toEqual([
      '3.22-x86_64-aws',
      '3.22-x86_64-my-cloud',
      '3.22-aarch64-aws',
      '3.22-aarch64-my-cloud',
      'edge-x86_64-aws',
      'edge-x86_64-my-cloud',
      'edge-aarch64-aws',
      'edge-aarch64-my-cloud',
    ]);
    expect(stats).toEqual({ combinations: 8, variants: 8, excluded: 0, endOfLife: 0 });
    const c = only(images, '3.22-aarch64-aws');
    // (the run's state fields are not part of the configuration: images.yaml shows them after config_key)
    expect(Object.keys(c).slice(0, 6)).toEqual([
      'config_key',
      'image_key',
      'release',
      'version',
      'arch',
      'cloud',
    ]);
    expect(c).toMatchObject({
      config_key: '3.22-aarch64-aws',
      image_key: '3.22.4-aarch64-aws',
      release: '3.22.4',
      version: '3.22',
      arch: 'aarch64',
      cloud: 'aws',
      name: '{cloud}_alpine-3.22.4-aarch64-r{revision}',
      description: 'Alpine 3.22.4',
      end_of_life: '2027-05-01',
      release_notes: 'https://alpinelinux.org/posts/Alpine-3.22.4-released.html',
    });
    expect(only(images, 'edge-x86_64-my-cloud')).toMatchObject({
      release: '20260301',
      image_key: '20260301-x86_64-my-cloud',
      end_of_life: '2026-03-02',
    });
  });

  it('merges Default, then each dimension in order, then Mandatory: scalars override, arrays append, maps merge', async () => {
    const { images } = await resolveTree({
      'top.yaml': miniTop({
        defaults: [
          '  who: default',
          '  scripts: [setup]',
          '  packages: {a: true, b: true}',
          '  motd: {welcome: hi}',
        ].join('\n'),
        dims: [
          '  version:',
          '    "3.22": {who: version, packages: {c: true}}',
          '  arch:',
          '    x86_64: {name: [x86_64], who: arch, scripts: [arch-script], packages: {b: false}, disk_size: [20]}',
          '  cloud:',
          '    aws: {who: cloud, scripts: [cloud-script], disk_size: [5]}',
        ].join('\n'),
        mandatory: ['  name: ["r{revision}"]', '  scripts: [cleanup]', '  login: forced'].join('\n'),
      }),
    });
    const c = only(images, '3.22-x86_64-aws');
    // a setting the tool does not read is kept (for images.yaml and placeholders), outside the typed view
    expect(settingValue(c, 'who')).toBe('cloud');
    expect(c.scripts).toEqual(['setup', 'arch-script', 'cloud-script', 'cleanup']);
    expect(c.packages).toEqual({ add: ['a', 'c'], del: ['b'], noscripts: [] });
    expect(c.disk_size).toBe(125);
    expect(c.login).toBe('forced');
    expect(c.name).toBe('{cloud}_alpine-3.22.4-x86_64-r{revision}');
  });

  it('null resets a key for the layers that follow', async () => {
    const { images } = await resolveTree({
      'top.yaml': miniTop({
        defaults: ['  scripts: [setup]', '  packages: {a: true}'].join('\n'),
        dims: [
          '  version:',
          '    "3.22": {}',
          '  arch:',
          '    x86_64: {name: [x86_64], scripts: null, packages: null}',
          '  cloud:',
          '    aws: {scripts: [only-this], packages: {z: true}}',
        ].join('\n'),
      }),
    });
    expect(only(images, '3.22-x86_64-aws')).toMatchObject({
      scripts: ['only-this'],
      packages: { add: ['z'], del: [], noscripts: [] },
    });
  });
});

describe('WHEN', () => {
  const dims = (cloudCfg: string, extra = '') =>
    [
      '  version:',
      '    "3.22": {}',
      '    "3.23": {}',
      '  arch:',
      '    x86_64: {name: [x86_64]}',
      '    aarch64: {name: [aarch64]}',
      `  bootstrap:\n    tiny: ${extra || '{}'}`,
      '  cloud:',
      `    aws: ${cloudCfg}`,
    ].join('\n');

  it('applies a block when its key is one of the variant’s dimension keys (also of later dimensions)', async () => {
    const { images } = await resolveTree({
      'top.yaml': miniTop({
        dims: dims(
          '{}',
          '{WHEN: {aws: {packages: {tiny-cloud-aws: true}}, azure: {packages: {nope: true}}}}',
        ),
      }),
    });
    expect(only(images, '3.22-x86_64-tiny-aws').packages).toEqual({
      add: ['tiny-cloud-aws'],
      del: [],
      noscripts: [],
    });
  });

  it('space-separated keys are OR; nested WHEN blocks are AND', async () => {
    const cloud = '{WHEN: {"3.21 3.22": {or: yes, WHEN: {aarch64: {and: yes}}}, "nope other": {never: yes}}}';
    const { images } = await resolveTree({ 'top.yaml': miniTop({ dims: dims(cloud) }) });
    expect(only(images, '3.22-x86_64-tiny-aws')).toMatchObject({ or: 'yes' });
    expect(only(images, '3.22-x86_64-tiny-aws')).not.toHaveProperty('and');
    expect(only(images, '3.22-aarch64-tiny-aws')).toMatchObject({ or: 'yes', and: 'yes' });
    expect(only(images, '3.23-aarch64-tiny-aws')).not.toHaveProperty('or');
    expect(only(images, '3.23-aarch64-tiny-aws')).not.toHaveProperty('and');
    for (const c of Object.values(images)) {
      expect(c).not.toHaveProperty('never');
      expect(c).not.toHaveProperty('WHEN');
    }
  });

  it('WHEN blocks are applied in order and repeatedly until none is left', async () => {
    const cloud =
      '{WHEN: {aws: {v: 1, list: [a], WHEN: {x86_64: {v: 2, list: [b], WHEN: {tiny: {v: 3, list: [c]}}}}}, tiny: {list: [d]}}}';
    const { images } = await resolveTree({ 'top.yaml': miniTop({ dims: dims(cloud) }) });
    expect(only(images, '3.22-x86_64-tiny-aws')).toMatchObject({ v: 3, list: ['a', 'd', 'b', 'c'] });
    expect(only(images, '3.22-aarch64-tiny-aws')).toMatchObject({ v: 1, list: ['a', 'd'] });
  });

  it('WHEN in Default is applied together with the first dimension’s', async () => {
    const { images } = await resolveTree({
      'top.yaml': miniTop({ defaults: '  WHEN: {aarch64: {from_default: yes}}', dims: dims('{}') }),
    });
    expect(only(images, '3.22-aarch64-tiny-aws')).toMatchObject({ from_default: 'yes' });
    expect(only(images, '3.22-x86_64-tiny-aws')).not.toHaveProperty('from_default');
  });

  it('WHEN in Mandatory is an error (it would never be applied)', async () => {
    const { err } = await resolveError({
      'top.yaml': miniTop({ dims: dims('{}'), mandatory: '  name: ["r{revision}"]\n  WHEN: {aws: {x: 1}}' }),
    });
    expect(err.message).toMatch(/Mandatory\.WHEN: WHEN is not applied in Mandatory .*top\.yaml:\d+:3\)$/);
  });
});

describe('EXCLUDE and end_of_life', () => {
  it('drops a variant when an EXCLUDE entry is one of its dimension keys (directly or from WHEN)', async () => {
    const cap = await resolveTree({
      'top.yaml': miniTop({
        dims: [
          '  version:',
          '    "3.22": {}',
          '    "3.23": {}',
          '  arch:',
          '    x86_64: {name: [x86_64]}',
          '    aarch64: {name: [aarch64], EXCLUDE: [bios]}',
          '  firmware:',
          '    bios: {}',
          '    uefi: {}',
          '  cloud:',
          '    aws: {}',
          '    gcp: {EXCLUDE: ["3.22"], WHEN: {aarch64: {EXCLUDE: [uefi]}}}',
        ].join('\n'),
      }),
    });
    expect(Object.keys(cap.images)).toEqual([
      '3.22-x86_64-bios-aws',
      '3.22-x86_64-uefi-aws',
      '3.22-aarch64-uefi-aws',
      '3.23-x86_64-bios-aws',
      '3.23-x86_64-bios-gcp',
      '3.23-x86_64-uefi-aws',
      '3.23-x86_64-uefi-gcp',
      '3.23-aarch64-uefi-aws',
    ]);
    expect(cap.stats).toEqual({ combinations: 16, variants: 8, excluded: 8, endOfLife: 0 });
    expect(cap.logText()).toContain('3.22-aarch64-bios-aws skipped: aarch64 excludes bios');
    expect(cap.logText()).toContain('3.23-aarch64-uefi-gcp skipped: gcp excludes uefi');
  });

  it('EXCLUDE in Default is checked with the first dimension (an overlay can drop keys that way)', async () => {
    const { images, stats } = await resolveTree({
      'top.yaml': miniTop({
        defaults: '  EXCLUDE: ["3.23", gcp]',
        dims: [
          '  version:',
          '    "3.22": {}',
          '    "3.23": {}',
          '  arch:',
          '    x86_64: {}',
          '  cloud:',
          '    aws: {}',
          '    gcp: {}',
        ].join('\n'),
      }),
    });
    expect(Object.keys(images)).toEqual(['3.22-x86_64-aws']);
    expect(stats.excluded).toBe(3);
  });

  it('EXCLUDE entries add up: an empty EXCLUDE in a WHEN block cancels nothing (as in the original)', async () => {
    const { images } = await resolveTree({
      'top.yaml': miniTop({
        dims: [
          '  version:',
          '    "3.22": {}',
          '  arch:',
          '    x86_64: {name: [x86_64]}',
          '  cloud:',
          '    oci: {EXCLUDE: [oci], WHEN: {"3.22": {EXCLUDE: []}}}',
        ].join('\n'),
      }),
    });
    expect(images).toEqual({});
  });

  it('drops variants whose end_of_life has passed, and logs why', async () => {
    const { images, stats, lines } = await resolveTree(
      {
        'top.yaml': miniTop({
          dims: [
            '  version:',
            '    "3.21": {}',
            '    "3.20": {end_of_life: "2026-12-01"}',
            '    "3.22": {}',
            '  arch:',
            '    x86_64: {name: [x86_64]}',
            '  cloud:',
            '    aws: {}',
            '    old: {end_of_life: "2026-11-01T12:00:00"}',
          ].join('\n'),
        }),
      },
      { now: new Date('2026-11-02T00:00:00Z') },
    );
    expect(Object.keys(images)).toEqual(['3.20-x86_64-aws', '3.22-x86_64-aws']);
    expect(images['3.20-x86_64-aws']!.end_of_life).toBe('2026-12-01');
    expect(stats).toMatchObject({ endOfLife: 4 });
    const warnings = lines()
      .filter((l) => l.level === 40)
      .map((l) => l.msg);
    expect(warnings).toContain('dropped 2 variants: 3.21 (end_of_life 2026-11-01) has passed');
    expect(warnings).toContain('dropped 2 variants: old (end_of_life 2026-11-01T12:00:00) has passed');
  });

  it('end_of_life is compared with the time given (midnight UTC of the date)', async () => {
    const spec = {
      'top.yaml': miniTop({
        dims: '  version:\n    "3.22": {end_of_life: "2026-06-01"}\n  arch:\n    x86_64: {}\n  cloud:\n    aws: {}',
      }),
    };
    expect(
      Object.keys((await resolveTree(spec, { now: new Date('2026-06-01T00:00:00Z') })).images),
    ).toHaveLength(1);
    expect(
      Object.keys((await resolveTree(spec, { now: new Date('2026-06-01T00:00:01Z') })).images),
    ).toHaveLength(0);
  });

  it('an EXCLUDE that is not a list, or end_of_life that is not a date, names variant, key and file', async () => {
    const { err, dir } = await resolveError({
      'top.yaml': miniTop({
        dims: '  version:\n    "3.22": {}\n  arch:\n    x86_64: {include: arch.yaml}\n  cloud:\n    aws: {}',
      }),
      'arch.yaml': 'name: [x86_64]\n\nEXCLUDE: bios\n',
    });
    expect(err.message).toBe(
      `variant 3.22-x86_64-aws: EXCLUDE: expected a list of dimension keys (quote versions: "3.20"), got "bios" (${dir}/arch.yaml:3:1)`,
    );
    expect(err.details).toMatchObject({
      variant: '3.22-x86_64-aws',
      key: 'EXCLUDE',
      location: { line: 3, col: 1 },
    });
    const numbers = await resolveError({
      'top.yaml': miniTop({
        dims: '  version:\n    "3.22": {}\n  arch:\n    x86_64: {EXCLUDE: [3.20]}\n  cloud:\n    aws: {}',
      }),
    });
    expect(numbers.err.message).toMatch(/EXCLUDE: expected a list .*got \[3\.2\]/);
    const eol = await resolveError({
      'top.yaml': miniTop({
        dims: '  version:\n    "3.22": {end_of_life: someday}\n  arch:\n    x86_64: {}\n  cloud:\n    aws: {}',
      }),
    });
    expect(eol.err.message).toMatch(
      /^variant 3\.22-x86_64-aws: end_of_life: expected a date such as 2026-05-01, got "someday" \(.*top\.yaml:\d+:\d+\)$/,
    );
  });

  it('a WHEN that is not a map names the file and line', async () => {
    const { err, dir } = await resolveError({
      'top.yaml': miniTop({
        dims: '  version:\n    "3.22": {}\n  arch:\n    x86_64: {include: a.yaml}\n  cloud:\n    aws: {}',
      }),
      'a.yaml': 'WHEN:\n  aws: [not, a, map]\n',
    });
    expect(err.message).toBe(
      `variant 3.22-x86_64-aws: WHEN.aws: expected a map of settings to apply, got ["not","a","map"] (${dir}/a.yaml:2:3)`,
    );
  });
});

describe('normalisation (the values images.yaml holds)', () => {
  it('turns packages, services, repos, kernel settings, motd and sizes into typed lists (images.yaml: the original’s strings)', async () => {
    const { images } = await resolveTree({
      'top.yaml': miniTop({
        defaults: [
          '  repo_keys: [https://example.org/key.rsa.pub, /etc/apk/keys/other.pub]',
          '  repos:',
          '    "https://cdn/v{version}/main": true',
          '    "https://cdn/v{version}/testing": false',
          '    "https://cdn/v{version}/ignored": null',
          '    "https://cdn/edge/testing": edgetest',
          '  packages:',
          '    plain: true',
          '    gone: false',
          '    skipped: null',
          '    tagged: edgetest',
          '    quiet: --no-scripts',
          '    quiettagged: --no-scripts edgetest',
          '  services:',
          '    boot: {a: true, b: false, c: null}',
          '    default: {d: true}',
          '    shutdown: {e: false}',
          '    empty: {f: null}',
          '  kernel_modules: {m1: true, m2: false, m3: null, m4: true}',
          '  kernel_options: {"console=ttyS0": true, quiet: true, off: false}',
          '  initfs_features: {nvme: true, ena: true}',
          '  motd:',
          '    welcome: "Welcome to {cloud} {version}!"',
          '    lines: [one, two]',
          '    dropped: null',
          '    release_notes: ["Notes:", "* <{release_notes}>"]',
          '    braces: "{{literal}}"',
          '  storage_url: "file://{work_dir}/s/{v_version}/{cloud}/{arch}/{project}"',
          '  download_url: "https://dl/{v_version}/releases/cloud"',
          '  qemu: {firmware: "{work_dir}/firmware/uefi.bin", machine_type: null, args: [[-cpu, max], [-m, 1024]]}',
        ].join('\n'),
        dims: '  version:\n    "3.22": {}\n    "3.24": {}\n    edge: {}\n  arch:\n    x86_64: {disk_size: [28]}\n  cloud:\n    aws: {}',
      }),
    });
    const c = only(images, '3.22-x86_64-aws');
    expect(c.repos).toEqual([
      { url: 'https://cdn/v3.22/main', enabled: true, tag: null },
      { url: 'https://cdn/v3.22/testing', enabled: false, tag: null },
      { url: 'https://cdn/edge/testing', enabled: true, tag: 'edgetest' },
    ]);
    expect(c.repo_keys).toEqual(['https://example.org/key.rsa.pub', '/etc/apk/keys/other.pub']);
    expect(c.packages).toEqual({
      add: ['plain', 'tagged@edgetest'],
      del: ['gone'],
      noscripts: ['quiet', 'quiettagged@edgetest'],
    });
    expect(c.services).toEqual({
      enable: { boot: ['a'], default: ['d'] },
      disable: { boot: ['b'], shutdown: ['e'] },
    });
    expect(c.kernel_modules).toEqual(['m1', 'm4']);
    expect(c.kernel_options).toEqual(['console=ttyS0', 'quiet']);
    expect(c.initfs_features).toEqual(['nvme', 'ena']);
    expect(c.disk_size).toBe(128);
    // images.yaml (and {placeholders}) show them as the original's strings
    expect(settingValues(c)).toMatchObject({
      repos: 'https://cdn/v3.22/main\n#https://cdn/v3.22/testing\n@edgetest https://cdn/edge/testing',
      repo_keys: 'https://example.org/key.rsa.pub /etc/apk/keys/other.pub',
      packages: { add: 'plain tagged@edgetest', del: 'gone', noscripts: 'quiet quiettagged@edgetest' },
      services: { enable: 'boot=a default=d', disable: 'boot=b shutdown=e' },
      kernel_modules: 'm1,m4',
      kernel_options: 'console=ttyS0 quiet',
      initfs_features: 'nvme ena',
      disk_size: '128M',
    });
    expect(c.motd).toBe(
      'Welcome to aws 3.22!\n\none\ntwo\n\nNotes:\n* <https://alpinelinux.org/posts/Alpine-3.22.4-released.html>\n\n{literal}',
    );
    expect(c.storage_url).toBe('file:///work-dir/s/v3.22/aws/x86_64/test-project');
    expect(c.download_url).toBe('https://dl/v3.22/releases/cloud');
    expect(c.qemu).toEqual({
      firmware: '/work-dir/firmware/uefi.bin',
      machine_type: null,
      args: [
        ['-cpu', 'max'],
        ['-m', 1024],
      ],
      iso_url: `${CDN_URL}/v3.24/releases/x86_64/alpine-virt-3.24.1-x86_64.iso`,
    });
    // no release notes page: the release_notes message is left out
    expect(only(images, '3.24-x86_64-aws').motd).toBe('Welcome to aws 3.24!\n\none\ntwo\n\n{literal}');
    expect(only(images, 'edge-x86_64-aws')).toMatchObject({
      storage_url: 'file:///work-dir/s/edge/aws/x86_64/test-project',
      repos: expect.arrayContaining([{ url: 'https://cdn/vedge/main', enabled: true, tag: null }]),
    });
  });

  it('unknown placeholders name the variant, the setting and the known names', async () => {
    const { err } = await resolveError({
      'top.yaml': miniTop({ defaults: '  motd: {x: "hello {nobody}"}' }),
    });
    expect(err.message).toMatch(
      /^variant 3\.22-x86_64-aws: motd: placeholder \{nobody\} is unknown \(known: .*arch, .*v_version, .*work_dir\) \(.*top\.yaml:\d+:3\)$/,
    );
    const url = await resolveError({
      'top.yaml': miniTop({ defaults: '  storage_url: "file:///x/{packages}"\n  packages: {a: true}' }),
    });
    expect(url.err.message).toMatch(/storage_url: placeholder \{packages\} is a list or map/);
  });
});

describe('wrong types are errors naming variant, key, file and what was expected', () => {
  const cases: [string, TreeSpec, RegExp][] = [
    [
      'disk_size not numbers (the file the bad value came from)',
      {
        'top.yaml': miniTop({
          dims: '  version:\n    "3.22": {}\n  arch:\n    x86_64: {include: x.yaml}\n  cloud:\n    aws: {include: aws.yaml}',
        }),
        'x.yaml': 'disk_size: [32]\n',
        'aws.yaml': '# aws\ndisk_size: [big]\n',
      },
      /^variant 3\.22-x86_64-aws: disk_size: expected a list of whole numbers \(MiB\) that add up to the disk size, got \[100,32,"big"\] \(.*\/aws\.yaml:2:1\)$/,
    ],
    [
      'packages not a map',
      { 'top.yaml': miniTop({ defaults: '  packages: [a, b]' }) },
      /^variant 3\.22-x86_64-aws: packages: expected a map of package name \(one word, no @\) to true, false, null, a tag or "--no-scripts \[tag\]", got \["a","b"\] \(.*top\.yaml:\d+:3\)$/,
    ],
    [
      'a package value of the wrong type',
      { 'top.yaml': miniTop({ defaults: '  packages: {a: 3}' }) },
      /packages: expected a map of package name .*got \{"a":3\}/,
    ],
    [
      'a package name that would not stay one word in images.yaml (and in PACKAGES_ADD)',
      { 'top.yaml': miniTop({ defaults: '  packages: {"a b": true}' }) },
      /packages: expected a map of package name \(one word, no @\) .*got \{"a b":true\}/,
    ],
    [
      'a service name with a comma',
      { 'top.yaml': miniTop({ defaults: '  services: {default: {"a,b": true}}' }) },
      /services: expected a map of runlevel to a map of service to true, false or null \(names: one word, no , or =\)/,
    ],
    [
      'a repository URL with a space',
      { 'top.yaml': miniTop({ defaults: '  repos: {"https://a b": true}' }) },
      /repos: expected a map of repository URL \(one word\)/,
    ],
    [
      'bootloader_timeout not a number',
      { 'top.yaml': miniTop({ defaults: '  bootloader_timeout: "2s"' }) },
      /bootloader_timeout: expected a whole number of seconds, or null, got "2s"/,
    ],
    [
      'a display name that is not text',
      { 'top.yaml': miniTop({ defaults: '  cloud_name: {a: 1}' }) },
      /cloud_name: expected a display name, or null, got \{"a":1\}/,
    ],
    [
      'services not a map of maps',
      { 'top.yaml': miniTop({ defaults: '  services: {boot: [a]}' }) },
      /services: expected a map of runlevel to a map of service/,
    ],
    [
      'kernel_modules values',
      { 'top.yaml': miniTop({ defaults: '  kernel_modules: {ena: maybe}' }) },
      /kernel_modules: expected a map of module name \(one word, no comma\) to true, false or null/,
    ],
    [
      'repos values',
      { 'top.yaml': miniTop({ defaults: '  repos: {"https://x": 1}' }) },
      /repos: expected a map of repository URL/,
    ],
    [
      'motd values',
      { 'top.yaml': miniTop({ defaults: '  motd: {a: {b: c}}' }) },
      /motd: expected a map of message name to text/,
    ],
    [
      'image_format unknown',
      { 'top.yaml': miniTop({ defaults: '  image_format: vmdk' }).replace('  image_format: qcow2\n', '') },
      /image_format: expected one of qcow2, vhd, raw, raw\.tar\.gz, got "vmdk"/,
    ],
    [
      'image_compress unknown',
      { 'top.yaml': miniTop({ defaults: '  image_compress: rar' }) },
      /image_compress: expected null or one of bz2, gz, xz, zstd, tar\.gz, got "rar"/,
    ],
    [
      'disk_size missing',
      { 'top.yaml': miniTop().replace('  disk_size: [100]\n', '') },
      /^variant 3\.22-x86_64-aws: disk_size: expected a list of whole numbers \(MiB\) that add up to the disk size \(it is not set\)$/,
    ],
    [
      'name not a list',
      { 'top.yaml': miniTop({ mandatory: '  name: r0' }) },
      /name: expected a list of name parts, each letters, digits .*, got \["\{cloud\}_alpine","3\.22\.4","x86_64","r0"\]|name: expected a list of name parts, .*, got "r0"/,
    ],
    [
      'qemu.args not a list of lists',
      { 'top.yaml': miniTop({ defaults: '  qemu: {args: [-m, 1024]}' }) },
      /qemu\.args: expected a list of lists of arguments, or null/,
    ],
    [
      'access values',
      { 'top.yaml': miniTop({ defaults: '  access: {PUBLIC: yes}' }) },
      /access: expected a map of account \(or PUBLIC\) to true\/false\/null, got \{"PUBLIC":"yes"\}/,
    ],
    [
      'signing_cmd not text',
      { 'top.yaml': miniTop({ defaults: '  signing_cmd: [gpg]' }) },
      /signing_cmd: expected a string or null/,
    ],
    [
      'scripts not a list',
      { 'top.yaml': miniTop({ defaults: '  scripts: setup' }) },
      /scripts: expected a list of script names/,
    ],
    [
      'a script name leaving work/scripts',
      { 'top.yaml': miniTop({ defaults: '  script_dirs: [../../etc]' }) },
      /script_dirs: expected a list of directory names \(in work\/scripts: no "\/", no "\.\."\)/,
    ],
    [
      'a script name that is a path',
      { 'top.yaml': miniTop({ defaults: '  scripts: [setup, /etc/passwd]' }) },
      /scripts: expected a list of script names \(files of work\/scripts: no "\/", no "\.\."\)/,
    ],
    [
      'project missing',
      { 'top.yaml': miniTop().replace('  project: test-project\n', '') },
      /project: expected a non-empty string identifying your images \(it is not set\)/,
    ],
  ];
  it.each(cases)('%s', async (_name, spec, re) => {
    const { err } = await resolveError(spec);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toMatch(re);
  });

  it('errors in a HOCON tree name the .conf file and line too', async () => {
    const { err, dir } = await resolveError({
      'top.conf': [
        'Default { project = p, name = [a], disk_size = [1], image_format = qcow2 }',
        'Dimensions {',
        '  version { "3.22" {} }',
        '  arch { x86_64 { include required("arch/x86.conf") } }',
        '  cloud { aws {} }',
        '}',
        'Mandatory {}',
      ].join('\n'),
      'arch/x86.conf': 'name = [x86_64]\n\npackages = [oops]\n',
    });
    expect(err.message).toBe(
      `variant 3.22-x86_64-aws: packages: expected a map of package name (one word, no @) to true, false, null, a tag or "--no-scripts [tag]", got ["oops"] (${dir}/arch/x86.conf:3:1)`,
    );
  });
});

describe('the top-level config', () => {
  it('needs Default, Dimensions (with version) and Mandatory', async () => {
    expect(
      (await resolveError({ 'top.yaml': 'Default: {}\nDimensions: {version: {"3.22": {}}}\n' })).err.message,
    ).toMatch(/top\.yaml: the top-level config has no Mandatory block/);
    expect(
      (await resolveError({ 'top.yaml': 'Default: {}\nDimensions: []\nMandatory: {}\n' })).err.message,
    ).toMatch(/^Dimensions: expected a map of settings, got \[\] \(.*top\.yaml:2:1\)$/);
    expect(
      (await resolveError({ 'top.yaml': 'Default: {}\nDimensions: {arch: {x86_64: {}}}\nMandatory: {}\n' }))
        .err.message,
    ).toMatch(/Dimensions has no "version" dimension/);
    expect(
      (
        await resolveError({
          'top.yaml': 'Default: {}\nDimensions: {version: {"3.22": [1]}}\nMandatory: {}\n',
        })
      ).err.message,
    ).toMatch(/^Dimensions\.version\.3\.22: expected a map of settings, got \[1\]/);
    expect(
      (await resolveError({ 'top.yaml': 'Default: {}\nDimensions: {version: {}}\nMandatory: {}\n' })).err
        .message,
    ).toMatch(/^Dimensions\.version: expected a map of dimension keys to their configs, got \{\}/);
  });

  it('a version that neither releases.json nor the mirror knows is an error', async () => {
    const dir = await makeTree({
      'top.yaml': miniTop({
        dims: '  version:\n    "3.99": {}\n  arch:\n    x86_64: {}\n  cloud:\n    aws: {}',
      }),
      'images.yaml': { symlink: 'top.yaml' },
    });
    dirs.push(dir);
    await expect(resolveConfigsDir(dir, resolveCtx(captureLog().log))).rejects.toThrow(
      /version "3\.99" is not in releases\.json/,
    );
  });

  it('a release candidate from the mirror resolves like a release', async () => {
    const { images } = await resolveTree({
      'top.yaml': miniTop({
        dims: '  version:\n    "3.25": {}\n  arch:\n    x86_64: {}\n  cloud:\n    aws: {}',
      }),
    });
    expect(only(images, '3.25-x86_64-aws')).toMatchObject({
      release: '3.25.0_rc1',
      image_key: '3.25.0_rc1-x86_64-aws',
      end_of_life: '2026-03-02',
      release_notes: null,
    });
  });

  it('needs exactly one selector, pointing to an existing file', async () => {
    const none = await makeTree({ 'top.yaml': miniTop() });
    const both = await makeTree({
      'top.yaml': miniTop(),
      'images.yaml': { symlink: 'top.yaml' },
      'images.conf': { symlink: 'top.yaml' },
    });
    const dangling = await makeTree({ 'images.yaml': { symlink: 'gone.yaml' } });
    dirs.push(none, both, dangling);
    const ctx = resolveCtx(captureLog().log);
    await expect(resolveConfigsDir(none, ctx)).rejects.toThrow(
      /no top-level config selector: expected images\.yaml or images\.conf in/,
    );
    await expect(resolveConfigsDir(both, ctx)).rejects.toThrow(/both images\.yaml and images\.conf exist/);
    await expect(resolveConfigsDir(dangling, ctx)).rejects.toThrow(
      /images\.yaml -> gone\.yaml: the selected top-level config does not exist/,
    );
  });
});
