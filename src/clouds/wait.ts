import type { Logger } from 'pino';

export interface PollOptions {
  /** first delay between checks */
  initialMs: number;
  /** the delay grows by `factor` up to this cap */
  maxMs: number;
  factor?: number;
  /** give up after this long */
  timeoutMs: number;
  /** log "still waiting" at info level at most this often (default 60 s) */
  heartbeatMs?: number;
}

export type PollStatus<T> = { done: true; value: T } | { done: false; progress?: string };

export class PollTimeoutError extends Error {
  constructor(what: string, ms: number) {
    super(`${what}: still not done after ${Math.round(ms / 1000)} s; giving up`);
    this.name = 'PollTimeoutError';
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Next delay of an exponential backoff with a cap and ±10% jitter (so concurrent waiters spread out). */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number, factor = 1.5): number {
  const base = Math.min(maxMs, initialMs * factor ** attempt);
  return Math.round(base * (0.9 + Math.random() * 0.2));
}

/**
 * Call `check` until it reports done, sleeping with capped exponential backoff in between. Progress strings are
 * logged at info level when they change; otherwise a heartbeat line now and then says how long it has been.
 */
export async function pollUntil<T>(
  what: string,
  check: () => Promise<PollStatus<T>>,
  opts: PollOptions,
  log: Logger,
  fields: Record<string, unknown> = {},
): Promise<T> {
  const started = Date.now();
  const heartbeat = opts.heartbeatMs ?? 60_000;
  let lastProgress: string | undefined;
  let lastInfo = started;
  for (let attempt = 0; ; attempt++) {
    const st = await check();
    if (st.done) return st.value;
    const elapsed = Date.now() - started;
    if (st.progress !== undefined && st.progress !== lastProgress) {
      lastProgress = st.progress;
      lastInfo = Date.now();
      log.info({ ...fields, seconds: Math.round(elapsed / 1000) }, `${what}: ${st.progress}`);
    } else if (Date.now() - lastInfo >= heartbeat) {
      lastInfo = Date.now();
      log.info({ ...fields, seconds: Math.round(elapsed / 1000) }, `${what}: still waiting`);
    }
    if (elapsed >= opts.timeoutMs) throw new PollTimeoutError(what, elapsed);
    const delay = Math.min(
      backoffDelay(attempt, opts.initialMs, opts.maxMs, opts.factor),
      opts.timeoutMs - elapsed,
    );
    log.debug({ ...fields, delayMs: delay }, `${what}: next check in ${delay} ms`);
    await sleep(Math.max(0, delay));
  }
}
