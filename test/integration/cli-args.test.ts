import { describe, expect, it } from 'vitest';
import { colorFromEnv, parseArgs } from '../../src/cli/args.js';
import { ROOT, runBuild } from '../helpers/cli.js';

describe('./build argument checks (real CLI)', () => {
  const bad: [string, string[], RegExp][] = [
    ['unknown step', ['bogus'], /unknown step 'bogus': expected one of configs, state, rollback/],
    ['missing step', [], /missing required argument 'step'/],
    ['unknown option', ['state', '--frobnicate'], /unknown option '--frobnicate'/],
    [
      'missing --custom dir',
      ['configs', '--custom', '/no/such/dir'],
      /--custom \/no\/such\/dir: directory does not exist/,
    ],
    [
      'missing --vars file',
      ['local', '--vars', '/no/such/file.pkrvars.hcl'],
      /--vars \/no\/such\/file.pkrvars.hcl: file does not exist/,
    ],
    ['rollback with --revise', ['rollback', '--revise'], /--revise cannot be used with the rollback step/],
    ['zero --parallel', ['local', '--parallel', '0'], /--parallel 0: expected a positive whole number/],
    ['negative --parallel', ['local', '--parallel', '-3'], /--parallel -3: expected a positive whole number/],
    [
      'non-numeric --parallel',
      ['local', '--parallel', 'many'],
      /--parallel many: expected a positive whole number/,
    ],
    [
      'bad --disable',
      ['publish', '--disable', 'local'],
      /--disable local: expected one of test, import, sign, publish/,
    ],
    [
      'bad --log-format',
      ['state', '--log-format', 'xml'],
      /--log-format.*xml.*Allowed choices are pretty, json/,
    ],
    [
      'bad --releases-url',
      ['configs', '--releases-url', 'ftp://x/releases.json'],
      /--releases-url ftp:\/\/x\/releases.json: expected an http/,
    ],
    [
      'bad --pad-uefi-bin-arch',
      ['local', '--pad-uefi-bin-arch', 'sparc'],
      /--pad-uefi-bin-arch sparc: expected one of aarch64, x86_64/,
    ],
    ['--really outside prune', ['state', '--really'], /--really is only valid with the prune command/],
  ];
  it.each(bad)('%s: one line on stderr, exit 2', async (_name, args, message) => {
    const r = await runBuild(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stdout).toBe('');
  });

  it('--help explains every step and option', async () => {
    const r = await runBuild(['--help']);
    expect(r.code).toBe(0);
    for (const word of [
      'configs',
      'state',
      'rollback',
      'local',
      'test',
      'upload',
      'import',
      'sign',
      'publish',
      'release',
      'catalog',
      'prune',
      '--debug',
      '--clean',
      '--pad-uefi-bin-arch',
      '--custom',
      '--skip',
      '--only',
      '--revise',
      '--use-broker',
      '--no-color',
      '--parallel',
      '--vars',
      '--disable',
      '--releases-url',
      '--cdn-url',
      '--log-format',
    ]) {
      expect(r.stdout).toContain(word);
    }
  });
});

describe('./build as the ecosystem expects', () => {
  it('--version prints the version and the commit', async () => {
    const r = await runBuild(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^cloud-image-builder \d+\.\d+\.\d+ \(commit [0-9a-f]{7,}(-dirty)?, node \d+/);
  });

  it('STEP --help shows that step, its options only, and the exit codes', async () => {
    const r = await runBuild(['prune', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: build prune \[options\]/);
    expect(r.stdout).toContain('--really');
    expect(r.stdout).toContain('--only');
    expect(r.stdout).not.toContain('--vars');
    expect(r.stdout).toContain('Exit codes:');
    const l = await runBuild(['local', '--help']);
    expect(l.stdout).toContain('configs → state → rollback → local');
    expect(l.stdout).toContain('--vars');
  });

  it('--help shows each environment variable once, with its option, and the exit codes', async () => {
    const r = await runBuild(['--help']);
    for (const v of ['ALPINE_RELEASES_URL', 'ALPINE_CDN_URL', 'BUILD_WORK_DIR']) {
      expect(r.stdout.split(v).length - 1).toBe(1);
    }
    expect(r.stdout.replace(/\s+/g, ' ')).toContain(
      '--cdn-url <url> Alpine mirror base URL, https:// or file:// (default: "https://dl-cdn.alpinelinux.org/alpine", env: ALPINE_CDN_URL)',
    );
    expect(r.stdout).toContain('Exit codes:');
    expect(r.stdout).toContain('FORCE_COLOR');
  });
});

const io = { out: () => {}, err: () => {} };
describe('parseArgs', () => {
  it('parses --parallel as a number', () => {
    const r = parseArgs(['state', '--parallel', '3'], {}, ROOT, io);
    if ('helpShown' in r) throw new Error('unexpected help');
    expect(r.options.parallel).toBe(3);
    const d = parseArgs(['state'], {}, ROOT, io);
    if ('helpShown' in d) throw new Error('unexpected help');
    expect(d.options.parallel).toBe(1);
  });

  it('colour: FORCE_COLOR, NO_COLOR, else the terminal', () => {
    expect(colorFromEnv({ FORCE_COLOR: '1' }, false)).toBe(true);
    expect(colorFromEnv({ FORCE_COLOR: '' }, false)).toBe(true);
    expect(colorFromEnv({ FORCE_COLOR: '0' }, true)).toBe(false);
    expect(colorFromEnv({ NO_COLOR: '1' }, true)).toBe(false);
    expect(colorFromEnv({}, true)).toBe(true);
    expect(colorFromEnv({}, false)).toBe(false);
    const r = parseArgs(['state'], { FORCE_COLOR: '1' }, ROOT, io);
    if ('helpShown' in r) throw new Error('unexpected help');
    expect(r.options.color).toBe(true);
  });

  const io = { out: () => {}, err: () => {} };
  it('--disable import also disables publish, with a warning', () => {
    const r = parseArgs(['publish', '--disable', 'import'], {}, ROOT, io);
    if ('helpShown' in r) throw new Error('unexpected help');
    expect([...r.options.disable].sort()).toEqual(['import', 'publish']);
    expect(r.warnings).toEqual(['--disable import also disables publish']);
  });

  it('takes --releases-url and --cdn-url from the environment, flags win', () => {
    const env = { ALPINE_RELEASES_URL: 'file:///srv/releases.json', ALPINE_CDN_URL: 'file:///srv/mirror/' };
    const a = parseArgs(['configs'], env, ROOT, io);
    if ('helpShown' in a) throw new Error('unexpected help');
    expect(a.options.releasesUrl).toBe('file:///srv/releases.json');
    expect(a.options.cdnUrl).toBe('file:///srv/mirror');
    const d = parseArgs(['configs'], {}, ROOT, io);
    if ('helpShown' in d) throw new Error('unexpected help');
    expect(d.options.releasesUrl).toBe('https://alpinelinux.org/releases.json');
    const b = parseArgs(
      ['configs', '--cdn-url', 'file:///m/', '--releases-url', 'file:///r.json'],
      env,
      ROOT,
      io,
    );
    if ('helpShown' in b) throw new Error('unexpected help');
    expect(b.options.cdnUrl).toBe('file:///m');
    expect(b.options.releasesUrl).toBe('file:///r.json');
  });

  it('accepts --custom relative to the repository root, in order', () => {
    const r = parseArgs(['configs', '--custom', 'src', 'test', '--parallel', '4'], {}, ROOT, io);
    if ('helpShown' in r) throw new Error('unexpected help');
    expect(r.options.custom.map((d) => d.slice(ROOT.length + 1))).toEqual(['src', 'test']);
    expect(r.options.parallel).toBe(4);
  });
});
