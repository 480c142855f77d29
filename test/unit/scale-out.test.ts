// Sharding, the CI matrix generators and the scale-out flags: pure logic.
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseArgs } from '../../src/cli/args.js';
import type { BuildOptions } from '../../src/cli/options.js';
import type { ImageConfig } from '../../src/config/types.js';
import { expectedWork, parseShard, partition, shardOrder } from '../../src/state/shard.js';
import {
  buildMatrix,
  githubMatrix,
  gitlabPipeline,
  selectionArgs,
  shellQuote,
} from '../../src/steps/matrix.js';

function cfg(key: string, arch = 'x86_64', bootstrap = 'tiny'): ImageConfig {
  return { config_key: key, arch, bootstrap } as ImageConfig;
}

const MATRIX = [
  ...['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].map((k) => cfg(`x86-${k}`)),
  cfg('arm-1', 'aarch64'),
  cfg('arm-2', 'aarch64'),
  cfg('ci-1', 'x86_64', 'cloudinit'),
  cfg('ci-2', 'aarch64', 'cloudinit'),
];

describe('partition', () => {
  it('puts every image in exactly one shard, balanced by expected work', () => {
    for (const n of [1, 2, 3, 4, 7, 12]) {
      const parts = partition(MATRIX, n);
      expect(parts).toHaveLength(n);
      expect(parts.flat().sort()).toEqual(MATRIX.map((c) => c.config_key).sort());
      const loads = parts.map((p) =>
        p.reduce((s, k) => s + expectedWork(MATRIX.find((c) => c.config_key === k)!), 0),
      );
      // greedy on sorted weights: no shard carries more than the lightest plus the heaviest single image
      expect(Math.max(...loads) - Math.min(...loads)).toBeLessThanOrEqual(6);
    }
    // aarch64 (emulated) weighs more than x86_64; cloud-init more than tiny
    expect(expectedWork(cfg('x', 'aarch64'))).toBeGreaterThan(expectedWork(cfg('y')));
    expect(expectedWork(cfg('x', 'x86_64', 'cloudinit'))).toBeGreaterThan(expectedWork(cfg('y')));
  });

  it('is stable: the same selection in any order gives the same shards', () => {
    const shuffled = [...MATRIX].reverse();
    expect(partition(shuffled, 4)).toEqual(partition(MATRIX, 4));
    expect(partition(MATRIX, 4)).toMatchInlineSnapshot(`
      [
        [
          "ci-2",
        ],
        [
          "arm-1",
          "x86-d",
          "x86-g",
        ],
        [
          "arm-2",
          "x86-e",
          "x86-h",
        ],
        [
          "ci-1",
          "x86-a",
          "x86-b",
          "x86-c",
          "x86-f",
        ],
      ]
    `);
  });

  it('orders a worker own shard first, then the next shards in turn', () => {
    const images = MATRIX.map((config) => ({ config }));
    const order = shardOrder(images, { index: 2, count: 4 }).map((i) => i.config.config_key);
    const parts = partition(MATRIX, 4);
    expect(order).toEqual([...parts[1]!, ...parts[2]!, ...parts[3]!, ...parts[0]!]);
  });

  it('parses I/N and refuses what is not a shard', () => {
    expect(parseShard('3/8')).toEqual({ index: 3, count: 8 });
    expect(() => parseShard('0/8')).toThrow(/--shard 0\/8: I must be between 1 and 8/);
    expect(() => parseShard('9/8')).toThrow(/I must be between 1 and 8/);
    expect(() => parseShard('1/257')).toThrow(/N must be between 1 and 256/);
    expect(() => parseShard('two')).toThrow(/expected I\/N/);
  });
});

describe('CI matrix', () => {
  const m = buildMatrix(MATRIX, {
    shards: 4,
    jobStep: 'publish',
    extraArgs: ['--custom', 'overlays/my cfg'],
  });

  it('GitHub: strategy.matrix JSON, one include entry per shard running ./build <step> --shard I/N', () => {
    const json = JSON.parse(githubMatrix(m)) as { include: Record<string, unknown>[] };
    expect(json.include).toHaveLength(4);
    expect(json.include[1]).toEqual({
      shard: '2/4',
      index: 2,
      total: 4,
      images: 3,
      args: "publish --shard 2/4 --custom 'overlays/my cfg'",
    });
    expect(m.release).toEqual([
      "release --shard 1/1 --custom 'overlays/my cfg'",
      "catalog --custom 'overlays/my cfg'",
    ]);
  });

  it('GitHub: at most 256 jobs, never more jobs than images', () => {
    const many = Array.from({ length: 300 }, (_, i) => cfg(`img-${String(i).padStart(3, '0')}`));
    const big = buildMatrix(many, { jobStep: 'publish', extraArgs: [] });
    expect(JSON.parse(githubMatrix(big)).include).toHaveLength(256);
    expect(
      buildMatrix(MATRIX.slice(0, 3), { shards: 10, jobStep: 'upload', extraArgs: [] }).jobs,
    ).toHaveLength(3);
    expect(() => buildMatrix([], { jobStep: 'publish', extraArgs: [] })).toThrow(/no images selected/);
  });

  it('GitLab: a child pipeline with one job per shard, then the release job', () => {
    const doc = parse(gitlabPipeline(m)) as Record<string, Record<string, unknown>>;
    expect(doc.stages).toEqual(['build', 'release']);
    const shardJobs = Object.keys(doc).filter((k) => k.startsWith('shard '));
    expect(shardJobs).toEqual(['shard 1/4', 'shard 2/4', 'shard 3/4', 'shard 4/4']);
    expect(doc['shard 3/4']).toEqual({
      extends: '.cib-shard',
      script: ["./build publish --shard 3/4 --custom 'overlays/my cfg'"],
    });
    expect(doc['.cib-shard']!.stage).toBe('build');
    expect(doc.release!.stage).toBe('release');
    expect(doc.release!.script).toEqual([
      "./build release --shard 1/1 --custom 'overlays/my cfg'",
      "./build catalog --custom 'overlays/my cfg'",
    ]);
  });

  it('passes the selection on, with repository paths relative and no credentials', () => {
    const base = {
      rootDir: '/repo',
      custom: ['/repo/overlays/x', '/elsewhere/y'],
      only: ['3.24'],
      skip: ['aarch64'],
      disable: ['sign'],
      vars: ['/repo/fast.pkrvars.hcl'],
      padUefiBinArch: [],
      parallel: 2,
      useBroker: false,
      releasesUrl: 'https://alpinelinux.org/releases.json',
      cdnUrl: 'https://mirror.example/alpine',
    } as unknown as BuildOptions;
    expect(selectionArgs(base)).toEqual([
      '--custom',
      'overlays/x',
      '--custom',
      '/elsewhere/y',
      '--only',
      '3.24',
      '--skip',
      'aarch64',
      '--disable',
      'sign',
      '--vars',
      'fast.pkrvars.hcl',
      '--parallel',
      '2',
      '--cdn-url',
      'https://mirror.example/alpine',
    ]);
    expect(() => selectionArgs({ ...base, cdnUrl: 'https://u:secret@mirror.example/alpine' })).toThrow(
      /--cdn-url: the URL carries credentials/,
    );
    expect(shellQuote("it's")).toBe(`'it'\\''s'`);
  });
});

describe('scale-out flags', () => {
  const parse1 = (...argv: string[]) => {
    const r = parseArgs(argv, {}, '/tmp', { out: () => {}, err: () => {} });
    if ('helpShown' in r) throw new Error('help');
    return r.options;
  };

  it('--shard with a run id and lease TTL', () => {
    const o = parse1('publish', '--shard', '2/4', '--run-id', 'gh-1', '--lease-ttl', '2.5');
    expect(o.scaleOut).toEqual({
      shard: { index: 2, count: 4 },
      leaseTtlMs: 2500,
      runId: 'gh-1',
      jobStep: 'publish',
    });
    expect(parse1('upload').scaleOut).toBeUndefined();
    const ci = parseArgs(
      ['local', '--shard', '1/2'],
      { GITHUB_RUN_ID: '77', GITHUB_RUN_ATTEMPT: '2' },
      '/tmp',
    );
    expect('options' in ci && ci.options.scaleOut?.runId).toBe('gh-77-2');
  });

  it('matrix with --ci, --shards and --job-step', () => {
    const o = parse1('matrix', '--ci', 'gitlab', '--shards', '8', '--job-step', 'upload');
    expect(o.scaleOut).toMatchObject({ ci: 'gitlab', shards: 8, jobStep: 'upload' });
  });

  it.each([
    [['matrix'], /matrix needs --ci github or --ci gitlab/],
    [['matrix', '--ci', 'jenkins'], /--ci jenkins: expected github or gitlab/],
    [['matrix', '--ci', 'github', '--shards', '300'], /--shards 300: expected a whole number from 1 to 256/],
    [['matrix', '--ci', 'github', '--job-step', 'release'], /--job-step release: expected one of/],
    [['publish', '--ci', 'github'], /--ci is only valid with the matrix command/],
    [['state', '--shard', '1/2'], /--shard is only valid with the steps local, (test, )?upload/],
    [['publish', '--lease-ttl', '5'], /--lease-ttl is only valid with --shard/],
    [['publish', '--shard', '1/2', '--lease-ttl', '0'], /--lease-ttl 0: expected a number of seconds/],
    [['publish', '--shard', '1/2', '--revise'], /--revise cannot be used with --shard/],
    [['publish', '--shard', '1/2', '--run-id', 'a b'], /--run-id a b: expected/],
  ])('refuses %j', (argv, message) => {
    expect(() => parse1(...argv)).toThrow(message);
  });
});
