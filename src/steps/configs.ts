// Stub: the config work replaces this with the real configs step.
import type { Logger } from 'pino';
import type { BuildOptions } from '../cli/options.js';
import type { ImagesFile } from '../config/types.js';

/** prepareWorkDir, then resolve and write work/images.yaml unless it exists (else load it). */
export async function configsStep(_options: BuildOptions, _log: Logger, _now?: Date): Promise<ImagesFile> {
  throw new Error('not implemented');
}
