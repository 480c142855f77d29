// Public API of the config module (owned by the config work; the pipeline calls only these).
import type { Logger } from 'pino';
import type { ImageConfig, ImagesFile } from './types.js';

export interface ConfigContext {
  readonly rootDir: string;
  readonly workDir: string;
  readonly custom: readonly string[];
  readonly clean: boolean;
  readonly releasesUrl: string;
  readonly cdnUrl: string;
  readonly now: Date;
  readonly log: Logger;
}

/** --clean handling, then install work/configs and work/scripts from configs/, scripts/ and each --custom DIR. */
export async function prepareWorkDir(_ctx: ConfigContext): Promise<void> {
  throw new Error('not implemented');
}

/** Resolve work/configs/images.(conf|yaml) into variants. Writes nothing. */
export async function resolveImages(_ctx: ConfigContext): Promise<ImagesFile> {
  throw new Error('not implemented');
}

export async function loadImagesYaml(_path: string): Promise<ImagesFile | undefined> {
  throw new Error('not implemented');
}

/** Atomic write of work/images.yaml. */
export async function writeImagesYaml(_path: string, _images: ImagesFile): Promise<void> {
  throw new Error('not implemented');
}

/** Variants selected by --only (all keys must match) and --skip (any key excludes); unknown keys are a UserError. */
export function selectVariants(
  _images: ImagesFile,
  _only: readonly string[],
  _skip: readonly string[],
): ImageConfig[] {
  throw new Error('not implemented');
}
