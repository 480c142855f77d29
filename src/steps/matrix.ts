// The matrix command: one CI job per shard, each running `./build <step> --shard I/N`, and a final job that
// releases and writes the catalog once. GitHub Actions gets the JSON for `strategy.matrix` (at most 256 jobs),
// GitLab a child-pipeline YAML. Pure generation from the selected images; nothing is read from storage.
import { relative } from 'node:path';
import { stringify } from 'yaml';
import type { BuildOptions } from '../cli/options.js';
import { DEFAULT_CDN_URL, DEFAULT_LEASE_TTL_SEC, DEFAULT_RELEASES_URL } from '../cli/options.js';
import { selectVariants } from '../config/index.js';
import type { ImageConfig, ImagesFile } from '../config/types.js';
import { expectedWork, MAX_SHARDS, partition } from '../state/shard.js';
import { UserError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';
import type { Step } from './steps.js';

export interface MatrixJob {
  /** I/N */
  shard: string;
  index: number;
  total: number;
  /** images this shard starts with */
  images: number;
  /** their expected work (x86_64 build = 1) */
  work: number;
  /** the ./build arguments of the job */
  args: string;
}

export interface Matrix {
  jobs: MatrixJob[];
  /** the ./build arguments of the final job(s): release (sharded as 1/1, so it shares the leases), catalog */
  release: string[];
}

/** Quote one argument for a POSIX shell (only when needed). */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

function hasCredentials(url: string): boolean {
  try {
    const u = new URL(url);
    return u.username !== '' || u.password !== '';
  } catch {
    return false;
  }
}

/**
 * The options every job needs to select and build the same images as this command did. Paths inside the
 * repository are made relative to it (CI jobs check it out elsewhere). URLs with credentials are refused: they
 * would end up in the CI configuration; put them in the jobs' environment (ALPINE_RELEASES_URL, ALPINE_CDN_URL).
 */
export function selectionArgs(o: BuildOptions): string[] {
  const rel = (p: string) => {
    const r = relative(o.rootDir, p);
    return r.startsWith('..') || r === '' ? p : r;
  };
  const args: string[] = [];
  for (const c of o.custom) args.push('--custom', rel(c));
  for (const k of o.only) args.push('--only', k);
  for (const k of o.skip) args.push('--skip', k);
  for (const d of o.disable) args.push('--disable', d);
  for (const v of o.vars) args.push('--vars', rel(v));
  for (const a of o.padUefiBinArch) args.push('--pad-uefi-bin-arch', a);
  if (o.parallel > 1) args.push('--parallel', String(o.parallel));
  if (o.useBroker) args.push('--use-broker');
  for (const [flag, url, dflt] of [
    ['--releases-url', o.releasesUrl, DEFAULT_RELEASES_URL],
    ['--cdn-url', o.cdnUrl, DEFAULT_CDN_URL],
  ] as const) {
    if (url === dflt) continue;
    if (hasCredentials(url)) {
      throw new UserError(
        `${flag}: the URL carries credentials, which must not be written into a CI configuration; ` +
          `set it in the jobs' environment instead`,
      );
    }
    args.push(flag, url);
  }
  return args;
}

export function buildMatrix(
  images: readonly ImageConfig[],
  o: { shards?: number; jobStep: Step; extraArgs: readonly string[]; leaseTtlSec?: number },
): Matrix {
  if (images.length === 0) throw new UserError('matrix: no images selected (check --only / --skip)');
  const count = Math.min(o.shards ?? Math.min(images.length, MAX_SHARDS), images.length);
  const parts = partition(images, count);
  const byKey = new Map(images.map((i) => [i.config_key, i]));
  const common = [...o.extraArgs, ...(o.leaseTtlSec ? ['--lease-ttl', String(o.leaseTtlSec)] : [])];
  const jobs = parts.map((keys, i) => {
    const shard = `${i + 1}/${count}`;
    const work = keys.reduce((sum, k) => sum + expectedWork(byKey.get(k)!), 0);
    return {
      shard,
      index: i + 1,
      total: count,
      images: keys.length,
      work,
      args: [o.jobStep, '--shard', shard, ...common].map(shellQuote).join(' '),
    };
  });
  return {
    jobs,
    release: [
      ['release', '--shard', '1/1', ...common].map(shellQuote).join(' '),
      ['catalog', ...o.extraArgs].map(shellQuote).join(' '),
    ],
  };
}

/** GitHub Actions: the value for `strategy.matrix` (fromJSON), one entry per job in `include`. */
export function githubMatrix(m: Matrix): string {
  if (m.jobs.length > MAX_SHARDS)
    throw new UserError(`matrix: ${m.jobs.length} jobs; GitHub allows ${MAX_SHARDS}`);
  return JSON.stringify({
    include: m.jobs.map((j) => ({
      shard: j.shard,
      index: j.index,
      total: j.total,
      images: j.images,
      args: j.args,
    })),
  });
}

/**
 * GitLab: a child pipeline (run it with `trigger: include: artifact`). One job per shard in stage `build`, then
 * `release` (release and catalog) once every shard job has succeeded.
 */
export function gitlabPipeline(m: Matrix): string {
  const doc: Record<string, unknown> = {
    stages: ['build', 'release'],
    // a child pipeline does not inherit the parent's `default`: the jobs set themselves up
    default: {
      image: 'node:20-bookworm',
      interruptible: false,
      before_script: [
        'apt-get update && xargs -a .ci/apt-packages.txt apt-get install -y --no-install-recommends',
        'npm ci --no-audit --no-fund',
      ],
    },
    variables: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    '.cib-shard': {
      stage: 'build',
      // each job has a work directory of its own; downloads (ISOs, firmware) are shared through the cache
      cache: { key: 'cib-downloads', paths: ['work/iso/', 'work/firmware/'], policy: 'pull-push' },
      artifacts: { when: 'always', paths: ['work/images/*/*/build.log'], expire_in: '1 week' },
    },
  };
  for (const j of m.jobs) {
    doc[`shard ${j.index}/${j.total}`] = {
      extends: '.cib-shard',
      script: [`./build ${j.args}`],
    };
  }
  doc.release = {
    stage: 'release',
    script: m.release.map((a) => `./build ${a}`),
    artifacts: { paths: ['work/catalog/'], expire_in: '1 month' },
  };
  const head = `# Generated by ./build matrix --ci gitlab: ${m.jobs.length} shard job(s) and a release job.\n`;
  return head + stringify(doc, { lineWidth: 0 });
}

/** The matrix command: generate the CI configuration for the selected images; stdout, or --output FILE. */
export async function matrixCommand(
  images: ImagesFile,
  options: BuildOptions,
  out: (t: string) => void,
): Promise<number> {
  const scale = options.scaleOut!;
  const selected = selectVariants(images, options.only, options.skip);
  const m = buildMatrix(selected, {
    ...(scale.shards ? { shards: scale.shards } : {}),
    jobStep: scale.jobStep,
    extraArgs: selectionArgs(options),
    ...(scale.leaseTtlMs !== DEFAULT_LEASE_TTL_SEC * 1000 ? { leaseTtlSec: scale.leaseTtlMs / 1000 } : {}),
  });
  const text = scale.ci === 'github' ? githubMatrix(m) : gitlabPipeline(m);
  if (options.output) await writeFileAtomic(options.output, text.endsWith('\n') ? text : `${text}\n`);
  else out(text.trimEnd());
  return 0;
}
