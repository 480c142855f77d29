// Public API of the local build module (Packer + QEMU, conversion, compression, checksums).
import type { Logger } from 'pino';
import type { BuildOptions } from '../cli/options.js';
import type { Image } from '../state/image.js';

export interface LocalBuildContext {
  readonly log: Logger;
  readonly options: BuildOptions;
}

export interface LocalBuildResult {
  configKey: string;
  ok: boolean;
  error?: string;
  /** full Packer/QEMU log of this variant */
  logFile: string;
}

/**
 * Build every image (at most options.parallel at once): Packer + QEMU produce <localDir>/image.qcow2,
 * which is converted to image_format, compressed per image_compress and checksummed (.sha512).
 * One failure does not stop the others. The caller records `built` in the metadata of those that succeeded.
 */
export async function buildLocal(
  _images: readonly Image[],
  _ctx: LocalBuildContext,
): Promise<LocalBuildResult[]> {
  throw new Error('not implemented');
}
