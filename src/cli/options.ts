import type { ExtraCommand, OptionalStep, Step } from '../steps/steps.js';
import type { LogFormat } from '../util/log.js';

export const DEFAULT_RELEASES_URL = 'https://alpinelinux.org/releases.json';
export const DEFAULT_CDN_URL = 'https://dl-cdn.alpinelinux.org/alpine';
/** Default lease time-to-live: long enough to ride out a slow storage, short enough to take over soon. */
export const DEFAULT_LEASE_TTL_SEC = 300;

/** Worker `index` (1-based) of `count` (--shard I/N). */
export interface ShardSpec {
  index: number;
  count: number;
}

/** Everything the CLI hands to the rest of the program; checked, absolute and immutable. */
export interface BuildOptions {
  readonly command: Step | ExtraCommand;
  readonly debug: boolean;
  readonly clean: boolean;
  readonly padUefiBinArch: readonly string[];
  readonly custom: readonly string[];
  readonly skip: readonly string[];
  readonly only: readonly string[];
  readonly revise: boolean;
  readonly useBroker: boolean;
  readonly color: boolean;
  readonly parallel: number;
  readonly vars: readonly string[];
  readonly disable: readonly OptionalStep[];
  readonly releasesUrl: string;
  readonly cdnUrl: string;
  readonly logFormat: LogFormat;
  /** repository root (holds configs/, scripts/, packer/) */
  readonly rootDir: string;
  /** the work directory (default <root>/work) */
  readonly workDir: string;
  /** catalog: output directory */
  readonly output?: string;
  /** prune: really remove */
  readonly really: boolean;
  /** many workers over one storage (--shard, matrix); absent for an ordinary run */
  readonly scaleOut?: ScaleOutOptions;
  /** upload, import and publish a --revise build whose content equals the released revision's */
  readonly publishUnchanged?: boolean;
  /** prune: storage only, no cloud listed (no cloud credentials needed) */
  readonly storageOnly?: boolean;
  /** state, prune and the failure summary: JSON on stdout instead of tables (schemas in docs/state.md) */
  readonly json?: boolean;
}

/** Options of sharded runs and of the matrix command (docs/scale-out.md). */
export interface ScaleOutOptions {
  /** --shard I/N: this worker's shard; leases in storage keep workers off each other's images */
  readonly shard?: ShardSpec;
  /** --lease-ttl: how long a lease lasts without renewal, in ms */
  readonly leaseTtlMs: number;
  /** --run-id (or the CI's run id): workers of one run skip images another worker of it saw fail */
  readonly runId: string;
  /** matrix: the CI system, the number of jobs, and the step each job runs */
  readonly ci?: 'github' | 'gitlab';
  readonly shards?: number;
  readonly jobStep: Step;
}
