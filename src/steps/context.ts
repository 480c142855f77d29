import type { Logger } from 'pino';
import type { BuildOptions } from '../cli/options.js';
import type { CloudContext, CloudPlugin } from '../clouds/types.js';
import type { Image } from '../state/image.js';
import type { StoragePool } from '../storage/types.js';

/** Everything a step needs for one run; built once by the pipeline and passed down. */
export interface RunContext {
  readonly options: BuildOptions;
  readonly log: Logger;
  readonly pool: StoragePool;
  readonly cloud: (name: string) => CloudPlugin;
  readonly cloudContext: CloudContext;
  /** clock, injectable for tests */
  readonly now: () => Date;
  /** the environment steps read (signing passphrases, release commands); process.env unless given */
  readonly env?: NodeJS.ProcessEnv;
  /**
   * The local step's build, replaceable (a test stubs it): puts each image's upload file in place and reports per
   * image. The default builds with the chroot or VM builder and records the supply chain.
   */
  readonly build?: LocalBuild;
}

/** A build of the local step: the images it built (configKey -> ok or the error). */
export type LocalBuild = (
  images: readonly Image[],
  ctx: RunContext,
) => Promise<readonly { configKey: string; ok: boolean; error?: string }[]>;

export interface StepFailure {
  configKey: string;
  imageName: string;
  step: string;
  error: string;
}
