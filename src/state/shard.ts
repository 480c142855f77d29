import type { ShardSpec } from '../cli/options.js';
// Sharding: which worker of N starts on which images. Pure: the same selection gives the same shards on every
// machine, so N CI jobs that each resolve the configs agree without talking to each other.
import type { ImageConfig } from '../config/types.js';
import { UsageError } from '../util/errors.js';

/** GitHub Actions allows at most 256 jobs per matrix. */
export type { ShardSpec };

export const MAX_SHARDS = 256;

export function parseShard(text: string, flag = '--shard'): ShardSpec {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  if (!m) throw new UsageError(`${flag} ${text}: expected I/N, e.g. 2/8 (worker 2 of 8)`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (count < 1 || count > MAX_SHARDS)
    throw new UsageError(`${flag} ${text}: N must be between 1 and ${MAX_SHARDS}`);
  if (index < 1 || index > count) throw new UsageError(`${flag} ${text}: I must be between 1 and ${count}`);
  return { index, count };
}

/**
 * Expected build work of one variant, in units of an x86_64 build: an aarch64 builder VM runs under emulation
 * (TCG) on x86_64 runners, several times slower; a cloud-init image installs more packages than a tiny one.
 */
export function expectedWork(c: Pick<ImageConfig, 'arch' | 'bootstrap'>): number {
  const arch = c.arch === 'x86_64' ? 1 : 4;
  const bootstrap = c.bootstrap === 'cloudinit' ? 1.5 : 1;
  return arch * bootstrap;
}

type Keyed = Pick<ImageConfig, 'config_key' | 'arch' | 'bootstrap'>;

/**
 * Split images into `count` shards of about equal expected work: heaviest first, each to the least loaded
 * shard (ties to the lowest shard), images of equal weight in config_key order. Deterministic for a given
 * selection; every image is in exactly one shard. Returns config_keys per shard (index 0 = shard 1).
 */
export function partition(images: readonly Keyed[], count: number): string[][] {
  const shards: { keys: string[]; load: number }[] = Array.from({ length: count }, () => ({
    keys: [],
    load: 0,
  }));
  const sorted = [...images].sort(
    (a, b) =>
      expectedWork(b) - expectedWork(a) ||
      (a.config_key < b.config_key ? -1 : a.config_key > b.config_key ? 1 : 0),
  );
  for (const img of sorted) {
    let best = 0;
    for (let i = 1; i < count; i++) if (shards[i]!.load < shards[best]!.load) best = i;
    shards[best]!.keys.push(img.config_key);
    shards[best]!.load += expectedWork(img);
  }
  return shards.map((s) => s.keys);
}

/**
 * The order in which worker `shard` visits the images: its own shard first, then the others' (starting with the
 * next shard, so workers that finish early spread over different images), for the images nobody has done yet
 * (a worker that never started, or died). Leases keep two workers off one image either way.
 */
export function shardOrder<T extends { config: Keyed }>(images: readonly T[], shard: ShardSpec): T[] {
  const parts = partition(
    images.map((i) => i.config),
    shard.count,
  );
  const byKey = new Map(images.map((i) => [i.config.config_key, i]));
  const out: T[] = [];
  for (let k = 0; k < shard.count; k++) {
    for (const key of parts[(shard.index - 1 + k) % shard.count]!) out.push(byKey.get(key)!);
  }
  return out;
}
