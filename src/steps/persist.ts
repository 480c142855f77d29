import type { Image } from '../state/image.js';
import { writeMetadata } from '../state/metadata.js';
import { supplyFileNames } from '../supply/files.js';
import { crashPoint } from '../util/crash.js';
import type { RunContext } from './context.js';

/**
 * Save the image's metadata locally (atomically, with .sha512) and, once the image has been uploaded, in storage
 * too. Storage always gets the metadata after the files it describes.
 */
export async function saveMetadata(image: Image, ctx: RunContext): Promise<void> {
  await writeMetadata(image, ctx.now());
  crashPoint('metadata:after-local-write');
  if (image.state.uploaded && image.storageUrl) {
    await ctx.pool.get(image.storageUrl).store(image.localDir, [image.metadataFile], { checksum: true });
    crashPoint('metadata:after-store');
  }
}

/** Every file of one revision in storage. */
export function revisionFiles(image: Image): string[] {
  const up = image.uploadFile;
  const supply = Object.values(supplyFileNames(image.imageName)).flatMap((f) => [
    f,
    `${f}.sha512`,
    `${f}.asc`,
  ]);
  return [up, `${up}.sha512`, `${up}.asc`, ...supply, image.metadataFile, `${image.metadataFile}.sha512`];
}
