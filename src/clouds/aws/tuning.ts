/**
 * Timing knobs of the AWS plugin. The defaults suit real AWS; tests and benchmarks shorten them through the
 * environment (ctx.env), documented in docs/clouds.md.
 */
import { UserError } from '../../util/errors.js';

export interface AwsTuning {
  /** first delay between status checks of an import task or an image copy */
  pollInitialMs: number;
  /** cap of that delay (it grows 1.5x per check); bounds how late a finished copy is noticed */
  pollMaxMs: number;
  /** give up waiting for a snapshot import after this long */
  importTimeoutMs: number;
  /** give up waiting for an image copy after this long */
  copyTimeoutMs: number;
  /** SDK attempts per API call (throttling and transient errors are retried) */
  maxAttempts: number;
  /** SDK retry backoff: base, doubling per attempt, capped */
  retryBaseMs: number;
  retryMaxMs: number;
  /** regions worked on at once while publishing */
  concurrency: number;
}

export const DEFAULT_TUNING: AwsTuning = {
  pollInitialMs: 1000,
  pollMaxMs: 3000,
  importTimeoutMs: 3 * 3600_000,
  copyTimeoutMs: 3 * 3600_000,
  maxAttempts: 10,
  retryBaseMs: 500,
  retryMaxMs: 20_000,
  concurrency: 32,
};

const KNOBS: [keyof AwsTuning, string, number][] = [
  ['pollInitialMs', 'CLOUD_POLL_INITIAL_MS', 1],
  ['pollMaxMs', 'CLOUD_POLL_MAX_MS', 1],
  ['importTimeoutMs', 'CLOUD_IMPORT_TIMEOUT_S', 1000],
  ['copyTimeoutMs', 'CLOUD_COPY_TIMEOUT_S', 1000],
  ['maxAttempts', 'AWS_MAX_ATTEMPTS', 1],
  ['retryBaseMs', 'CLOUD_RETRY_BASE_MS', 1],
  ['retryMaxMs', 'CLOUD_RETRY_MAX_MS', 1],
  ['concurrency', 'CLOUD_PUBLISH_CONCURRENCY', 1],
];

export function tuningFromEnv(env: NodeJS.ProcessEnv): AwsTuning {
  const t: AwsTuning = { ...DEFAULT_TUNING };
  for (const [key, name, scale] of KNOBS) {
    const v = env[name];
    if (v === undefined || v === '') continue;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0 || (key === 'maxAttempts' || key === 'concurrency' ? n < 1 : false)) {
      throw new UserError(`${name}: expected a positive number, got "${v}"`);
    }
    t[key] = n * scale;
  }
  t.pollMaxMs = Math.max(t.pollMaxMs, t.pollInitialMs);
  return t;
}
