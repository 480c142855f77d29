// Checks of the scale-out flags (--shard, --run-id, --lease-ttl, and the matrix command's --ci, --shards,
// --job-step); see docs/scale-out.md.
import { randomBytes } from 'node:crypto';
import { MAX_SHARDS, parseShard } from '../state/shard.js';
import { IMAGE_STEPS, isImageStep, type Step } from '../steps/steps.js';
import { UsageError } from '../util/errors.js';
import { DEFAULT_LEASE_TTL_SEC, type ScaleOutOptions } from './options.js';

export interface ScaleOutFlags {
  shard?: string;
  runId?: string;
  leaseTtl?: string;
  ci?: string;
  shards?: string;
  jobStep?: string;
}

/** The run id of the CI run this worker belongs to, from the CI's environment. */
export function ciRunId(env: NodeJS.ProcessEnv): string | undefined {
  if (env.GITHUB_RUN_ID) return `gh-${env.GITHUB_RUN_ID}-${env.GITHUB_RUN_ATTEMPT ?? '1'}`;
  if (env.CI_PIPELINE_ID) return `gl-${env.CI_PIPELINE_ID}`;
  return undefined;
}

export function scaleOutOptions(
  step: string,
  f: ScaleOutFlags,
  env: NodeJS.ProcessEnv,
): ScaleOutOptions | undefined {
  const matrix = step === 'matrix';
  if (!matrix) {
    for (const [flag, v] of [
      ['--ci', f.ci],
      ['--shards', f.shards],
      ['--job-step', f.jobStep],
    ] as const) {
      if (v !== undefined) throw new UsageError(`${flag} is only valid with the matrix command`);
    }
  }
  if (f.shard !== undefined) {
    if (matrix) throw new UsageError('--shard is for the jobs of a matrix, not for the matrix command');
    if (!isImageStep(step)) {
      throw new UsageError(`--shard is only valid with the steps ${IMAGE_STEPS.join(', ')} (got ${step})`);
    }
  } else if (!matrix) {
    for (const [flag, v] of [
      ['--run-id', f.runId],
      ['--lease-ttl', f.leaseTtl],
    ] as const) {
      if (v !== undefined) throw new UsageError(`${flag} is only valid with --shard`);
    }
    return undefined;
  }
  let leaseTtlMs = DEFAULT_LEASE_TTL_SEC * 1000;
  if (f.leaseTtl !== undefined) {
    if (!/^\d+(\.\d+)?$/.test(f.leaseTtl) || Number(f.leaseTtl) < 0.5) {
      throw new UsageError(`--lease-ttl ${f.leaseTtl}: expected a number of seconds, at least 0.5`);
    }
    leaseTtlMs = Math.round(Number(f.leaseTtl) * 1000);
  }
  if (f.runId !== undefined && !/^[A-Za-z0-9._:-]{1,100}$/.test(f.runId)) {
    throw new UsageError(`--run-id ${f.runId}: expected 1 to 100 letters, digits, '.', '_', ':' or '-'`);
  }
  const runId = f.runId ?? ciRunId(env) ?? `local-${randomBytes(4).toString('hex')}`;
  let ci: 'github' | 'gitlab' | undefined;
  let shards: number | undefined;
  let jobStep: Step = 'publish';
  if (matrix) {
    if (f.ci === undefined) throw new UsageError('matrix needs --ci github or --ci gitlab');
    if (f.ci !== 'github' && f.ci !== 'gitlab') {
      throw new UsageError(`--ci ${f.ci}: expected github or gitlab`);
    }
    ci = f.ci;
    if (f.shards !== undefined) {
      if (!/^\d+$/.test(f.shards) || Number(f.shards) < 1 || Number(f.shards) > MAX_SHARDS) {
        throw new UsageError(`--shards ${f.shards}: expected a whole number from 1 to ${MAX_SHARDS}`);
      }
      shards = Number(f.shards);
    }
    if (f.jobStep !== undefined) {
      if (!isImageStep(f.jobStep) || f.jobStep === 'release') {
        throw new UsageError(
          `--job-step ${f.jobStep}: expected one of ${IMAGE_STEPS.filter((s) => s !== 'release').join(', ')} (the final job releases)`,
        );
      }
      jobStep = f.jobStep;
    }
  }
  return {
    ...(f.shard !== undefined ? { shard: parseShard(f.shard) } : {}),
    leaseTtlMs,
    runId,
    ...(ci ? { ci } : {}),
    ...(shards ? { shards } : {}),
    jobStep,
  };
}
