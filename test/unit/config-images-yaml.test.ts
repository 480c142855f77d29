import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { imagesYamlText, parseImagesYaml, settingValue } from '../../src/config/images-yaml.js';
import {
  loadImagesYaml,
  resolveConfigsDir,
  selectVariants,
  writeImagesYaml,
} from '../../src/config/index.js';
import type { ImageConfig, ImagesFile } from '../../src/config/types.js';
import { stageWorkDir } from '../../src/config/workdir.js';
import { emitYaml, isPlainSafe, readYamlFast, Unsupported } from '../../src/config/yaml-fast.js';
import { UserError } from '../../src/util/errors.js';
import { redactText } from '../../src/util/redact.js';
import {
  captureLog,
  FIXTURES,
  makeTree,
  miniTop,
  ROOT,
  removeTree,
  resolveCtx,
} from '../fixtures/config-helpers.js';

let images: ImagesFile;
let dir: string;
beforeAll(async () => {
  images = (await resolveConfigsDir(join(ROOT, 'configs'), resolveCtx(captureLog('warn').log))).images;
  dir = await mkdtemp(join(tmpdir(), 'cib-images-'));
});
afterAll(async () => {
  await removeTree(dir);
});

describe('work/images.yaml', () => {
  it('is the one serializer of the configuration: the original layout, and read back to the same value', () => {
    const text = imagesYamlText(images);
    const first = Object.values(YAML.parse(text) as Record<string, Record<string, unknown>>)[0]!;
    // alpine-cloud-images' layout: config_key, then the run's state fields (null until set), then the settings
    expect(Object.keys(first).slice(0, 9)).toEqual([
      'config_key',
      'built',
      'uploaded',
      'imported',
      'signed',
      'published',
      'released',
      'artifacts',
      'image_key',
    ]);
    const back = parseImagesYaml(text, 'images.yaml');
    expect(back).toEqual(images);
    expect(imagesYamlText(back)).toBe(text);
  });

  it('shows the run fields it is given beside the configuration, and leaves them out when read back', () => {
    const key = Object.keys(images)[0]!;
    const run = { built: '2026-11-20T10:00:00.000Z', revision: 3, actions: ['upload'], undo: [] };
    const text = imagesYamlText(images, (k) => (k === key ? run : undefined));
    const shown = (YAML.parse(text) as Record<string, Record<string, unknown>>)[key]!;
    expect(shown).toMatchObject({ built: '2026-11-20T10:00:00.000Z', uploaded: null, revision: 3 });
    expect(Object.keys(shown).slice(-3)).toEqual(['revision', 'actions', 'undo']);
    expect(parseImagesYaml(text, 'images.yaml')).toEqual(images);
  });

  it('is written atomically and read back unchanged, in matrix order', async () => {
    const path = join(dir, 'images.yaml');
    await writeImagesYaml(path, images);
    expect((await readdir(dir)).filter((n) => n.includes('.tmp'))).toEqual([]);
    const text = await readFile(path, 'utf8');
    expect(
      text.startsWith('---\n"3.24-x86_64-bios-tiny-vm-aws":\n  config_key: "3.24-x86_64-bios-tiny-vm-aws"\n'),
    ).toBe(true);
    const back = await loadImagesYaml(path);
    expect(back).toEqual(images);
    expect(Object.keys(back!)).toEqual(Object.keys(images));
  });

  it('reads the same in YAML 1.2 and YAML 1.1 readers (versions, dates and numbers stay strings)', () => {
    const text = imagesYamlText(images);
    expect(YAML.parse(text)).toEqual(YAML.parse(text, { version: '1.1' }));
    expect(parseImagesYaml(YAML.stringify(YAML.parse(text, { version: '1.1' })), 'x')).toEqual(images);
    expect(text).toContain('  version: "3.24"\n');
    expect(text).toContain('  end_of_life: "2028-05-01"\n');
    expect(text).toContain('  release: "20260301"\n');
    expect(text).toContain('  disk_size: "128M"\n');
  });

  it('quotes every string a reader could take for something else', () => {
    const tricky: Record<string, unknown> = {
      s: [
        'yes',
        'No',
        'on',
        'OFF',
        'y',
        'null',
        '~',
        '',
        ' lead',
        'trail ',
        '3.20',
        '0755',
        '0x1F',
        '1_000',
        '1:20',
        '.inf',
        '-1',
        '+1',
        '2026-05-01',
        '@at',
        '`tick',
        '!tag',
        '&anchor',
        '*alias',
        '- dash',
        '-cpu',
        '? q',
        'a: b',
        'a #c',
        'end:',
        '{x}',
        '[y]',
        '"q"',
        "'q'",
        '%p',
        '|bar',
        '>gt',
        'ünïcode',
        'tab\there',
        'nul\u0000',
        'line\n',
        'a\n\nb\n\n',
        '\nstarts',
        '  indented\nsecond',
        'trailing \nspace',
        'fine\nlines\n',
        'crlf\r\nx',
        'plain-text',
        'file:///a/b',
        'https://x/y?z=1#frag',
      ],
      n: [0, -5, 1.5, 1e21, true, false, null],
      nested: [[['-m', 1024]], [{ a: 1, b: [] }], {}, []],
      '3.20': { 'key with space': 'v', yes: 'no' },
    };
    const text = emitYaml(tricky);
    expect(YAML.parse(text)).toEqual(tricky);
    expect(YAML.parse(text, { version: '1.1' })).toEqual(tricky);
    expect(readYamlFast(text)).toEqual(tricky);
    expect(isPlainSafe('alpine-base linux-virt')).toBe(true);
    expect(isPlainSafe('3.24')).toBe(false);
  });

  it('applies its edit to every key, value and line of a multi-line value (images.yaml: no credentials)', () => {
    const data = {
      'https://k:key-secret@h/': { url: 'https://u:val-secret@h/x', list: ['s3://a:item-secret@b/k'] },
      motd: 'line one\nsee https://m:motd-secret@h/notes\n',
      again: 'https://u:val-secret@h/x',
    };
    const text = emitYaml(data, redactText);
    expect(text).not.toMatch(/secret/);
    expect(readYamlFast(text)).toEqual({
      'https://k:***@h/': { url: 'https://u:***@h/x', list: ['s3://a:***@b/k'] },
      motd: 'line one\nsee https://m:***@h/notes\n',
      again: 'https://u:***@h/x',
    });
  });

  it('leaves out undefined values and writes dates as text, like the YAML library', () => {
    const data = {
      a: { x: undefined, y: 1, when: new Date('2026-01-02T03:04:05Z') },
      b: { gone: undefined },
    };
    const text = emitYaml(data);
    expect(readYamlFast(text)).toEqual({ a: { y: 1, when: '2026-01-02T03:04:05.000Z' }, b: {} });
    expect(YAML.parse(text)).toEqual(readYamlFast(text));
  });

  it('reads files in other block styles (PyYAML lists at the key’s indentation) and falls back to the YAML library for the rest', () => {
    const pyyaml =
      'a:\n  scripts:\n  - setup\n  - cleanup\n  qemu:\n    args:\n    - - -cpu\n      - max\n  flags: {}\n';
    expect(readYamlFast(pyyaml)).toEqual({
      a: { scripts: ['setup', 'cleanup'], qemu: { args: [['-cpu', 'max']] }, flags: {} },
    });
    expect(() => readYamlFast('a: 1 # comment\n')).toThrow(Unsupported);
    expect(() => readYamlFast("a: 'single'\n")).toThrow(Unsupported);
    expect(() => readYamlFast('a: &x 1\nb: *x\n')).toThrow(Unsupported);
    expect(() => readYamlFast('a: {b: 1}\n')).toThrow(Unsupported);
    // the general reader takes over, with the same result
    const other =
      "# written by hand\n'3.20-x86_64-aws':\n  config_key: 3.20-x86_64-aws   # a comment\n  flags: {a: 1}\n  version: '3.20'\n";
    expect(parseImagesYaml(other, 'images.yaml')).toEqual({
      '3.20-x86_64-aws': { config_key: '3.20-x86_64-aws', flags: { a: 1 }, version: '3.20' },
    });
  });

  it('fills config_key from the key when a file lacks it, and rejects what is not a map of maps', () => {
    expect(parseImagesYaml('---\nx-y:\n  arch: x86_64\n', 'p')).toEqual({
      'x-y': { arch: 'x86_64', config_key: 'x-y' },
    });
    expect(parseImagesYaml('', 'p')).toEqual({});
    expect(() => parseImagesYaml('- a\n', 'p')).toThrow('p: expected a map of config_key to image config');
    expect(() => parseImagesYaml('a: 1\n', 'p')).toThrow('p: a: expected an image config (a map), got 1');
    expect(() => parseImagesYaml('a:\n  b: [1\n  c: 2\n', 'p/images.yaml')).toThrow(
      /^p\/images\.yaml:3:3: YAML syntax error: /,
    );
  });

  it('a missing file is undefined; an unreadable one is an error', async () => {
    expect(await loadImagesYaml(join(dir, 'nope.yaml'))).toBeUndefined();
    await expect(loadImagesYaml(dir)).rejects.toBeInstanceOf(UserError);
  });

  it('round-trips every resolved variant exactly', async () => {
    const path = join(dir, 'again.yaml');
    await writeFile(path, imagesYamlText(images));
    const back = await loadImagesYaml(path);
    const differing = Object.keys(images).filter((k) => !isDeepStrictEqual(images[k], back?.[k]));
    expect(differing).toEqual([]);
  });
});

describe('the typed configuration and its images.yaml form', () => {
  const roundTrip = (all: ImagesFile): string[] => {
    const text = imagesYamlText(all);
    const back = parseImagesYaml(text, 'images.yaml');
    expect(imagesYamlText(back)).toBe(text);
    return Object.keys(all).filter((k) => !isDeepStrictEqual(all[k], back[k]));
  };

  it('the HOCON twin and the overlays read back to the same typed value', async () => {
    const { log } = captureLog('warn');
    const hocon = await resolveConfigsDir(join(FIXTURES, 'hocon', 'configs'), resolveCtx(log));
    expect(roundTrip(hocon.images)).toEqual([]);
    for (const custom of [
      [join(ROOT, 'overlays', 'official')],
      [join(ROOT, 'overlays', 'testing')],
      [join(FIXTURES, 'hocon'), join(FIXTURES, 'hocon', 'overlay')],
    ]) {
      const workDir = await mkdtemp(join(dir, 'work-'));
      const staged = await stageWorkDir({ rootDir: ROOT, workDir, custom, clean: false, log });
      try {
        const paths = { origins: staged.origins, stageDir: staged.dir, workDir };
        const r = await resolveConfigsDir(staged.configsDir, resolveCtx(log, { workDir }), paths);
        expect(roundTrip(r.images), custom.join(' ')).toEqual([]);
      } finally {
        await staged.discard();
      }
    }
  });

  it('lists and maps are typed; images.yaml holds the original joined strings, and they read back', async () => {
    const tree = await makeTree({
      'top.yaml': miniTop({
        defaults: [
          '  repo_keys: [https://example.org/a.rsa.pub, /keys/b.rsa.pub]',
          '  repos: {"https://cdn/main": true, "https://cdn/testing": false, "https://cdn/edge": edgy, "https://cdn/x": null}',
          '  packages: {a: true, b: false, c: edgy, d: --no-scripts, e: "--no-scripts edgy", f: null}',
          '  services: {boot: {s1: true, s2: false}, default: {s3: true}, shutdown: {s4: false}, none: {s5: null}}',
          '  kernel_modules: {m1: true, m2: false}',
          '  kernel_options: {"console=ttyS0 quiet": true, nomodeset: true, off: false}',
          '  initfs_features: {nvme: true}',
          '  bootloader_timeout: 5',
          '  ntp_server: 169.254.169.123',
          '  bootstrap_url: https://example.org/not-read-by-the-tool',
        ].join('\n'),
      }),
      'images.yaml': { symlink: 'top.yaml' },
    });
    try {
      const { images: all } = await resolveConfigsDir(tree, resolveCtx(captureLog('warn').log));
      const c = all['3.22-x86_64-aws']!;
      expect(c).toMatchObject({
        repo_keys: ['https://example.org/a.rsa.pub', '/keys/b.rsa.pub'],
        repos: [
          { url: 'https://cdn/main', enabled: true, tag: null },
          { url: 'https://cdn/testing', enabled: false, tag: null },
          { url: 'https://cdn/edge', enabled: true, tag: 'edgy' },
        ],
        packages: { add: ['a', 'c@edgy'], del: ['b'], noscripts: ['d', 'e@edgy'] },
        services: { enable: { boot: ['s1'], default: ['s3'] }, disable: { boot: ['s2'], shutdown: ['s4'] } },
        kernel_modules: ['m1'],
        // a key holding several options gives several
        kernel_options: ['console=ttyS0', 'quiet', 'nomodeset'],
        initfs_features: ['nvme'],
        disk_size: 100,
        bootloader_timeout: 5,
        ntp_server: '169.254.169.123',
      });
      const text = imagesYamlText(all);
      const shown = (YAML.parse(text) as Record<string, Record<string, unknown>>)['3.22-x86_64-aws']!;
      expect(shown).toMatchObject({
        repo_keys: 'https://example.org/a.rsa.pub /keys/b.rsa.pub',
        repos: 'https://cdn/main\n#https://cdn/testing\n@edgy https://cdn/edge',
        packages: { add: 'a c@edgy', del: 'b', noscripts: 'd e@edgy' },
        services: { enable: 'boot=s1 default=s3', disable: 'boot=s2 shutdown=s4' },
        kernel_modules: 'm1',
        kernel_options: 'console=ttyS0 quiet nomodeset',
        initfs_features: 'nvme',
        disk_size: '100M',
        bootloader_timeout: 5,
        bootstrap_url: 'https://example.org/not-read-by-the-tool',
      });
      expect(roundTrip(all)).toEqual([]);
      expect(settingValue(c, 'bootstrap_url')).toBe('https://example.org/not-read-by-the-tool');
    } finally {
      await removeTree(tree);
    }
  });

  it('a hand-edited images.yaml with a list or map in the wrong form is an error naming file, variant and key', () => {
    expect(() => parseImagesYaml('v:\n  disk_size: lots\n', 'w/images.yaml')).toThrow(
      'w/images.yaml: v: disk_size: "lots" is not a size such as "416M"',
    );
    expect(() => parseImagesYaml('v:\n  packages: [a]\n', 'w/images.yaml')).toThrow(
      'w/images.yaml: v: packages: expected a map, got ["a"]',
    );
    expect(() => parseImagesYaml('v:\n  services: {enable: sshd}\n', 'w/images.yaml')).toThrow(
      'w/images.yaml: v: services: "sshd" is not runlevel=service,...',
    );
    expect(() => parseImagesYaml('v:\n  repos: [a]\n', 'w/images.yaml')).toThrow(
      'w/images.yaml: v: repos: expected text, got ["a"]',
    );
    // the other settings have the types configs gives them
    expect(() =>
      parseImagesYaml('v:\n  image_format: iso\n  qemu: {args: -m}\n  builder: docker\n', 'w/images.yaml'),
    ).toThrow(
      'w/images.yaml: v: image_format: expected one of qcow2, vhd, raw, raw.tar.gz, got "iso"; builder: expected chroot, vm, or null (chroot where the host can), got "docker"; qemu.args: expected a list of lists of arguments, or null, got "-m"',
    );
  });
});

describe('selectVariants (--only, --skip)', () => {
  const keys = (list: ImageConfig[]) => list.map((c) => c.config_key);

  it('--only keeps variants having all the keys; --skip drops variants having any', () => {
    const all = Object.keys(images);
    expect(keys(selectVariants(images, [], []))).toEqual(all);
    const onlyArm = selectVariants(images, ['aarch64', '3.24'], []);
    expect(onlyArm.length).toBeGreaterThan(0);
    expect(onlyArm.every((c) => c.arch === 'aarch64' && c.version === '3.24')).toBe(true);
    expect(onlyArm.length).toBe(all.filter((k) => k.startsWith('3.24-aarch64-')).length);
    const skipped = selectVariants(images, ['aarch64'], ['metal', 'gcp']);
    expect(skipped.some((c) => c.machine === 'metal' || c.cloud === 'gcp')).toBe(false);
    expect(keys(skipped)).toEqual(
      all.filter((k) => k.includes('-aarch64-') && !k.includes('-metal-') && !k.endsWith('-gcp')),
    );
  });

  it('keys that match no variant are an error listing the valid keys', () => {
    expect(() => selectVariants(images, ['aarch64', 'armv7'], [])).toThrow(
      /^--only armv7: no variant has this dimension key; valid keys: 3\.20, 3\.21, 3\.22, 3\.23, 3\.24, aarch64, aws, azure, bios, cloudinit, edge, gcp, generic, metal, nocloud, oci, tiny, uefi, vm, x86_64$/,
    );
    expect(() => selectVariants(images, [], ['x', 'y'])).toThrow(
      /^--skip x y: no variant has these dimension keys; valid keys: /,
    );
    expect(() => selectVariants(images, [], ['x'])).toThrow(UserError);
  });

  it('dimension keys with "-" in them work', () => {
    const sample = Object.values(images)
      .filter((c) => c.cloud === 'aws')
      .slice(0, 2)
      .map((c) => ({ ...c, cloud: 'my-cloud', config_key: c.config_key.replace(/aws$/, 'my-cloud') }));
    const custom: ImagesFile = Object.fromEntries(sample.map((c) => [c.config_key, c]));
    expect(selectVariants(custom, ['my-cloud'], [])).toHaveLength(2);
    // skipping every variant selects nothing: refused
    expect(() => selectVariants(custom, [], ['my-cloud'])).toThrow(
      /--skip my-cloud: together these select no variant/,
    );
  });
});
