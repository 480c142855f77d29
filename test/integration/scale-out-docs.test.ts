// `./build matrix` through the real CLI for both CI systems, and the example pipelines in docs/ci that run it:
// generated and checked for the structure the CI systems need (jobs, the matrix hand-over, the final release).
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ROOT, runBuild } from '../helpers/cli.js';
import { makeOverlay, RELEASES_URL } from '../helpers/overlay.js';

let root: string;
let overlay: string;
const args = (...extra: string[]) => [
  '--work-dir',
  join(root, 'work'),
  '--custom',
  overlay,
  '--releases-url',
  RELEASES_URL,
  ...extra,
];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'cib-matrix-'));
  // 2 arches x 2 bootstraps x 3 clouds = 12 images
  overlay = await makeOverlay({
    storageUrl: 's3://images/{v_version}/{cloud}/{arch}',
    arches: ['x86_64', 'aarch64'],
    bootstraps: ['tiny', 'cloudinit'],
    clouds: ['aws', 'nocloud', 'generic'],
    cloudSettings: { aws: { image_format: 'vhd' } },
  });
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
  await rm(overlay, { recursive: true, force: true });
});

describe('./build matrix', { timeout: 120_000 }, () => {
  it('GitHub: strategy.matrix JSON on stdout, one job per shard, the selection passed on', async () => {
    const r = await runBuild(['matrix', '--ci', 'github', '--shards', '5', ...args()]);
    expect(r.code, r.stderr).toBe(0);
    const m = JSON.parse(r.stdout) as {
      include: { shard: string; index: number; images: number; args: string }[];
    };
    expect(m.include.map((j) => j.shard)).toEqual(['1/5', '2/5', '3/5', '4/5', '5/5']);
    expect(m.include.reduce((n, j) => n + j.images, 0)).toBe(12);
    for (const j of m.include) {
      expect(j.args).toBe(`publish --shard ${j.index}/5 --custom ${overlay} --releases-url ${RELEASES_URL}`);
    }
    // --only narrows the matrix; fewer images than shards gives one job per image
    const only = await runBuild([
      'matrix',
      '--ci',
      'github',
      '--shards',
      '8',
      ...args('--only', 'aarch64', 'aws'),
    ]);
    expect(only.code, only.stderr).toBe(0);
    const small = JSON.parse(only.stdout) as { include: { args: string }[] };
    expect(small.include).toHaveLength(2);
    expect(small.include[0]!.args).toContain('--only aarch64 --only aws');
  });

  it('GitLab: a child pipeline written to --output, shard jobs then the release job', async () => {
    const file = join(root, 'child.yml');
    const r = await runBuild([
      'matrix',
      '--ci',
      'gitlab',
      '--shards',
      '4',
      '--job-step',
      'upload',
      '--output',
      file,
      ...args(),
    ]);
    expect(r.code, r.stderr).toBe(0);
    const doc = parse(await readFile(file, 'utf8')) as Record<string, Record<string, unknown>>;
    expect(doc.stages).toEqual(['build', 'release']);
    const jobs = Object.keys(doc).filter(
      (k) => !['stages', 'default', 'variables'].includes(k) && !k.startsWith('.'),
    );
    expect(jobs).toEqual(['shard 1/4', 'shard 2/4', 'shard 3/4', 'shard 4/4', 'release']);
    for (const [i, j] of jobs.slice(0, 4).entries()) {
      expect(doc[j]!.extends).toBe('.cib-shard');
      expect(doc[j]!.script).toEqual([
        `./build upload --shard ${i + 1}/4 --custom ${overlay} --releases-url ${RELEASES_URL}`,
      ]);
    }
    expect(doc['.cib-shard']!.stage).toBe('build');
    expect(doc['.cib-shard']!.cache).toMatchObject({ paths: ['work/iso/', 'work/firmware/'] });
    expect(doc.release!.stage).toBe('release');
    expect(doc.release!.script).toEqual([
      `./build release --shard 1/1 --custom ${overlay} --releases-url ${RELEASES_URL}`,
      `./build catalog --custom ${overlay} --releases-url ${RELEASES_URL}`,
    ]);
    expect((doc.default as { before_script: string[] }).before_script.join('\n')).toContain('npm ci');
  });

  it('refuses bad matrix flags with one line and exit 2', async () => {
    const r = await runBuild(['matrix', '--ci', 'circleci', ...args()]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe('build: error: --ci circleci: expected github or gitlab');
  });
});

describe('example pipelines (docs/ci)', () => {
  it('GitHub Actions: plan makes the matrix, build runs each shard, release runs once after', async () => {
    const wf = parse(await readFile(join(ROOT, 'docs', 'ci', 'github-actions.yml'), 'utf8')) as {
      jobs: Record<
        string,
        {
          needs?: string[] | string;
          strategy?: Record<string, unknown>;
          steps: {
            run?: string;
            uses?: string;
            with?: Record<string, string>;
            env?: Record<string, string>;
          }[];
          outputs?: Record<string, string>;
        }
      >;
    };
    const { plan, build, release } = wf.jobs;
    const runs = (job: typeof plan) => job!.steps.map((s) => s.run ?? '').join('\n');
    expect(runs(plan)).toMatch(/\.\/build matrix --ci github --shards "\$SHARDS".* --output matrix\.json/);
    expect(runs(plan)).toContain('>> "$GITHUB_OUTPUT"');
    expect(plan!.outputs!.matrix).toBe('${{ steps.matrix.outputs.matrix }}');
    expect(build!.needs).toBe('plan');
    expect(build!.strategy).toEqual({
      'fail-fast': false,
      matrix: '${{ fromJSON(needs.plan.outputs.matrix) }}',
    });
    const shardStep = build!.steps.find((s) => s.run?.includes('./build $ARGS'));
    expect(shardStep?.env?.ARGS).toBe('${{ matrix.args }}');
    expect(
      build!.steps.some((s) => s.uses?.startsWith('actions/cache@') && s.with?.path?.includes('work/iso')),
    ).toBe(true);
    expect(JSON.stringify(build)).toContain('secrets.AWS_ROLE_ARN');
    expect(release!.needs).toEqual(['plan', 'build']);
    expect(runs(release)).toMatch(/\.\/build release --shard 1\/1[^\n]*\n\.\/build catalog/);
  });

  it('GitLab: the matrix job writes the child pipeline that the trigger job runs', async () => {
    const ci = parse(await readFile(join(ROOT, 'docs', 'ci', 'gitlab-ci.yml'), 'utf8')) as Record<
      string,
      Record<string, unknown>
    >;
    expect(ci.stages).toEqual(['plan', 'images']);
    const script = (ci.matrix!.script as string[]).join('\n');
    const out = /--output (\S+)/.exec(script)?.[1];
    expect(script).toContain('./build matrix --ci gitlab');
    expect(ci.matrix!.artifacts).toMatchObject({ paths: [out] });
    expect(ci.images!.trigger).toEqual({ include: [{ artifact: out, job: 'matrix' }], strategy: 'depend' });
    expect(ci.images!.needs).toEqual(['matrix']);
  });
});
