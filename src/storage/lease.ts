// Leases in storage: how many workers on many machines share one image matrix over one storage_url.
//
// A worker claims `<storage_url>/.leases/<image_key>.json` before it acts on an image, with a create-only write;
// renews it (compare-and-swap on the version it wrote) while it works; releases it (conditional delete) at the
// end. A lease not renewed by its expiry may be taken over (compare-and-swap again, so of several takers exactly
// one wins). Time is on the holder's side: it counts its own lease as lost `skew` before the expiry, takers wait
// until `skew` after it, so with clocks within `skew` of each other two workers never both hold one image.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { errorMessage, UserError } from '../util/errors.js';
import type { ConditionalOps } from './conditional.js';

/** The content of a lease object. */
export interface LeaseRecord {
  image_key: string;
  /** unique per worker process */
  holder: string;
  host: string;
  pid: number;
  /** the CI run (pipeline) the worker belongs to */
  run_id: string;
  acquired: string;
  renewed: string;
  expires: string;
  /** incremented by every write, so no two versions of a lease have the same content */
  generation: number;
  /** 'failed': the image failed in run `run_id`; other workers of that run leave it alone */
  state: 'held' | 'failed';
  error?: string;
}

export class LeaseLostError extends UserError {
  constructor(imageKey: string, why: string) {
    super(`${imageKey}: lease lost (${why}); nothing more is written for this image`);
    this.name = 'LeaseLostError';
  }
}

export interface LeaseSettings {
  /** how long a lease lasts without renewal */
  ttlMs: number;
  /** renew this often (default ttl / 3) */
  renewEveryMs?: number;
  /** allowed clock difference between workers (default ttl / 10, at most 30 s) */
  skewMs?: number;
  runId: string;
  /** this worker; default host:pid:random */
  holder?: string;
  now?: () => Date;
  log: Logger;
}

export type AcquireResult =
  | { kind: 'acquired'; lease: Lease; tookOver?: LeaseRecord }
  | { kind: 'busy'; holder: LeaseRecord }
  | { kind: 'failed'; holder: LeaseRecord };

const HOST = hostname();

export function leaseName(imageKey: string): string {
  return `${imageKey.replace(/[^A-Za-z0-9._-]/g, '_')}.json`;
}

function parseRecord(data: Buffer): LeaseRecord | undefined {
  try {
    const r = JSON.parse(data.toString('utf8')) as LeaseRecord;
    if (
      typeof r.holder === 'string' &&
      typeof r.expires === 'string' &&
      !Number.isNaN(Date.parse(r.expires))
    ) {
      return r;
    }
  } catch {
    // fall through
  }
  return undefined;
}

/** Leases of one worker, over any number of storages. */
export class LeaseManager {
  readonly holder: string;
  readonly runId: string;
  readonly ttlMs: number;
  readonly renewEveryMs: number;
  readonly skewMs: number;
  private readonly now: () => Date;
  private readonly log: Logger;
  private readonly held = new Set<Lease>();
  /** conditional requests made for leases (create, read, replace, remove) */
  requests = 0;

  constructor(s: LeaseSettings) {
    if (!(s.ttlMs > 0)) throw new UserError(`lease TTL must be positive (got ${s.ttlMs} ms)`);
    this.ttlMs = s.ttlMs;
    this.renewEveryMs = s.renewEveryMs ?? Math.max(50, Math.floor(s.ttlMs / 3));
    this.skewMs = s.skewMs ?? Math.min(30_000, Math.floor(s.ttlMs / 10));
    this.runId = s.runId;
    this.holder = s.holder ?? `${HOST}:${process.pid}:${randomBytes(3).toString('hex')}`;
    this.now = s.now ?? (() => new Date());
    this.log = s.log;
  }

  private record(imageKey: string, generation: number, acquired?: string): LeaseRecord {
    const now = this.now();
    return {
      image_key: imageKey,
      holder: this.holder,
      host: HOST,
      pid: process.pid,
      run_id: this.runId,
      acquired: acquired ?? now.toISOString(),
      renewed: now.toISOString(),
      expires: new Date(now.getTime() + this.ttlMs).toISOString(),
      generation,
      state: 'held',
    };
  }

  /** Counted access to the store: every conditional request is lease traffic. */
  private counted(ops: ConditionalOps): ConditionalOps {
    const count = <T>(p: () => Promise<T>): Promise<T> => {
      this.requests++;
      return p();
    };
    return {
      get requests() {
        return ops.requests;
      },
      read: (n) => count(() => ops.read(n)),
      create: (n, d) => count(() => ops.create(n, d)),
      replace: (n, d, e, o) => count(() => ops.replace(n, d, e, o)),
      remove: (n, e) => count(() => ops.remove(n, e)),
    };
  }

  /**
   * Claim the lease of `imageKey` in `ops` (the storage's .leases directory). `where` names it in messages.
   * Busy: another live worker holds it. Failed: the image failed in this run (another worker tried it).
   */
  async acquire(rawOps: ConditionalOps, imageKey: string, where: string): Promise<AcquireResult> {
    const ops = this.counted(rawOps);
    const name = leaseName(imageKey);
    for (let attempt = 0; attempt < 5; attempt++) {
      const mine = this.record(imageKey, 1);
      const etag = await ops.create(name, encode(mine));
      if (etag) return { kind: 'acquired', lease: this.start(ops, name, where, mine, etag) };
      const cur = await ops.read(name);
      if (!cur) continue; // released meanwhile: try again
      const rec = parseRecord(cur.data);
      if (rec && rec.state === 'failed' && rec.run_id === this.runId) return { kind: 'failed', holder: rec };
      const expired = !rec || this.now().getTime() > Date.parse(rec.expires) + this.skewMs;
      if (rec && rec.state === 'held' && !expired) return { kind: 'busy', holder: rec };
      // expired, unreadable, or failed in an earlier run: take it over (one taker wins)
      const next = this.record(imageKey, (rec?.generation ?? 0) + 1);
      const taken = await ops.replace(name, encode(next), cur.etag);
      if (taken) {
        this.log.warn(
          { image: imageKey, previous: rec?.holder, expired: rec?.expires },
          rec
            ? `${imageKey}: took over the ${rec.state === 'failed' ? 'failed' : 'expired'} lease of ${rec.holder} (run ${rec.run_id}, expired ${rec.expires})`
            : `${imageKey}: took over an unreadable lease in ${where}`,
        );
        return {
          kind: 'acquired',
          lease: this.start(ops, name, where, next, taken),
          ...(rec ? { tookOver: rec } : {}),
        };
      }
    }
    const cur = await ops.read(name);
    const rec = cur && parseRecord(cur.data);
    if (rec) return { kind: 'busy', holder: rec };
    throw new UserError(`${where}/${name}: could not claim the lease (it keeps changing)`);
  }

  private start(ops: ConditionalOps, name: string, where: string, rec: LeaseRecord, etag: string): Lease {
    const lease = new Lease(this, ops, name, where, rec, etag, this.now, this.log);
    this.held.add(lease);
    lease.onEnd = () => this.held.delete(lease);
    return lease;
  }

  /** Release every lease still held (the end of a run, or an interrupted one). */
  async releaseAll(): Promise<void> {
    await Promise.allSettled([...this.held].map((l) => l.release()));
  }

  /** @internal used by Lease */
  nextRecord(prev: LeaseRecord): LeaseRecord {
    return { ...this.record(prev.image_key, prev.generation + 1, prev.acquired) };
  }
}

function encode(r: LeaseRecord): Buffer {
  return Buffer.from(`${JSON.stringify(r, null, 2)}\n`);
}

/** One held lease: renewed in the background until released or lost. */
export class Lease {
  private etag: string;
  private rec: LeaseRecord;
  private timer: NodeJS.Timeout | undefined;
  private renewing: Promise<void> | undefined;
  private lostReason: string | undefined;
  private ended = false;
  /** @internal */
  onEnd: (() => void) | undefined;
  readonly imageKey: string;

  constructor(
    private readonly mgr: LeaseManager,
    private readonly ops: ConditionalOps,
    readonly name: string,
    readonly where: string,
    rec: LeaseRecord,
    etag: string,
    private readonly now: () => Date,
    private readonly log: Logger,
  ) {
    this.rec = rec;
    this.etag = etag;
    this.imageKey = rec.image_key;
    this.timer = setInterval(() => {
      this.renewing ??= this.renew().finally(() => {
        this.renewing = undefined;
      });
    }, mgr.renewEveryMs);
    this.timer.unref();
  }

  get record(): LeaseRecord {
    return this.rec;
  }

  get lost(): boolean {
    this.expireLocally();
    return this.lostReason !== undefined;
  }

  /** Throw LeaseLostError unless the lease is still ours (call before every write for this image). */
  check(): void {
    this.expireLocally();
    if (this.lostReason) throw new LeaseLostError(this.imageKey, this.lostReason);
  }

  private expireLocally(): void {
    if (this.lostReason || this.ended) return;
    if (this.now().getTime() >= Date.parse(this.rec.expires) - this.mgr.skewMs) {
      this.lose(`not renewed before it expired at ${this.rec.expires}`);
    }
  }

  private lose(why: string): void {
    if (this.lostReason) return;
    this.lostReason = why;
    this.stop();
    this.log.error(
      { image: this.imageKey, lease: `${this.where}/${this.name}` },
      `${this.imageKey}: lease lost: ${why}`,
    );
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Extend the lease (done on a timer; callable directly). */
  async renew(): Promise<void> {
    this.expireLocally();
    if (this.lostReason || this.ended) return;
    const next = this.mgr.nextRecord(this.rec);
    try {
      const etag = await this.ops.replace(this.name, encode(next), this.etag);
      if (this.ended) return;
      if (!etag) {
        const cur = await this.ops.read(this.name).catch(() => undefined);
        const by = cur && parseRecord(cur.data);
        this.lose(by ? `taken over by ${by.holder} (run ${by.run_id})` : 'the lease object is gone');
        return;
      }
      this.rec = next;
      this.etag = etag;
    } catch (err) {
      // the store is unreachable: keep trying until the lease runs out
      this.log.warn(
        { image: this.imageKey, err: errorMessage(err) },
        `${this.imageKey}: lease renewal failed`,
      );
    }
  }

  /** Give the lease back (conditional delete); a lost lease is left to whoever has it now. */
  async release(): Promise<void> {
    if (this.ended) return;
    this.stop();
    await this.renewing;
    this.ended = true;
    this.onEnd?.();
    if (this.lostReason) return;
    try {
      if (!(await this.ops.remove(this.name, this.etag))) {
        this.log.warn(
          { image: this.imageKey },
          `${this.imageKey}: lease changed before release; left as it is`,
        );
      }
    } catch (err) {
      this.log.warn(
        { image: this.imageKey, err: errorMessage(err) },
        `${this.imageKey}: lease release failed`,
      );
    }
  }

  /**
   * Mark the image failed for this run instead of releasing: the other workers of the run do not try it
   * again (a later run takes it over).
   */
  async fail(error: string): Promise<void> {
    if (this.ended) return;
    this.stop();
    await this.renewing;
    this.ended = true;
    this.onEnd?.();
    if (this.lostReason) return;
    const rec: LeaseRecord = {
      ...this.mgr.nextRecord(this.rec),
      state: 'failed',
      error: error.slice(0, 500),
    };
    try {
      await this.ops.replace(this.name, encode(rec), this.etag);
    } catch (err) {
      this.log.warn(
        { image: this.imageKey, err: errorMessage(err) },
        `${this.imageKey}: could not record the failure in its lease`,
      );
    }
  }
}

/**
 * Check that a store really does conditional writes, in its .leases directory: a create-only write of a new
 * key succeeds and of an existing key fails (412); a compare-and-swap with a stale version and one against a
 * missing key fail. Returns what is wrong (empty: the store behaves). Leaves nothing behind.
 */
export async function probeConditionalWrites(
  ops: ConditionalOps,
  cleanup: (names: string[]) => Promise<void>,
): Promise<string[]> {
  const id = `${HOST.replace(/[^A-Za-z0-9.-]/g, '_')}-${process.pid}-${randomBytes(4).toString('hex')}`;
  const name = `.probe-${id}.json`;
  const missing = `.probe-${id}-missing.json`;
  const problems: string[] = [];
  try {
    const first = await ops.create(name, Buffer.from('{"probe":1}\n'));
    if (!first) {
      problems.push('a create-only write (If-None-Match: *) of a new key was refused');
      return problems;
    }
    if (await ops.create(name, Buffer.from('{"probe":2}\n'))) {
      problems.push(
        'a create-only write (If-None-Match: *) of an existing key succeeded; expected 412 Precondition Failed',
      );
    }
    const cur = await ops.read(name);
    const stale = /^"/.test(first) ? '"00000000000000000000000000000000"' : '0'.repeat(32);
    if (cur && (await ops.replace(name, Buffer.from('{"probe":3}\n'), stale))) {
      problems.push(
        'a compare-and-swap write (If-Match) with a stale ETag succeeded; expected 412 Precondition Failed',
      );
    }
    if (await ops.replace(missing, Buffer.from('{"probe":4}\n'), cur?.etag ?? first)) {
      problems.push(
        'a compare-and-swap write (If-Match) against a missing key succeeded; expected it to fail',
      );
    }
    const now = await ops.read(name);
    if (now && !(await ops.replace(name, Buffer.from('{"probe":5}\n'), now.etag))) {
      problems.push('a compare-and-swap write (If-Match) with the current ETag was refused');
    }
  } finally {
    await cleanup([name, missing]).catch(() => {});
  }
  return problems;
}
