import type { Logger } from 'pino';
import type { CloudContext, CloudPlugin } from '../../clouds/types.js';
import type { BuildOptions } from '../cli/options.js';
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
}

export interface StepFailure {
  configKey: string;
  imageName: string;
  step: string;
  error: string;
}
