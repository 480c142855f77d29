// Public API of sign / release / catalog / prune (the pipeline calls only these).
import type { Logger } from 'pino';
import type { Image } from '../state/image.js';
import { type CatalogContext, generateCatalog } from './catalog.js';
import { type PruneContext, type PruneItem, prune as runPrune } from './prune.js';
import { release } from './release.js';
import type { SignResult } from './sign.js';

export type { Catalog, CatalogContext, CatalogEntry, CatalogResult } from './catalog.js';
export { generateCatalog } from './catalog.js';
export type { PruneContext, PruneItem, PruneReason } from './prune.js';
export { formatPruneReport, pruneJson } from './prune.js';
export { releaseValues } from './release.js';
export type { SignResult } from './sign.js';

/** Whether the image has signing_cmd or signing_key configured. */
export function signingConfigured(image: Image): boolean {
  return image.signingConfigured;
}

/** Sign image.uploadPath with signing_cmd or signing_key; verify the signature right after. */
export async function signImage(
  image: Image,
  ctx: { log: Logger; env: NodeJS.ProcessEnv },
): Promise<SignResult> {
  // openpgp loads only when something is signed
  const { sign } = await import('./sign.js');
  return sign(image, ctx);
}

/** Run release_cmd (if any) for the image; throws a UserError naming the command when it fails. */
export async function releaseImage(
  image: Image,
  ctx: { log: Logger; env: NodeJS.ProcessEnv },
): Promise<void> {
  await release(image, ctx);
}

/** Write the site YAML and the JSON catalog from the metadata in storage. Returns the files written. */
export async function writeCatalog(ctx: CatalogContext): Promise<string[]> {
  return (await generateCatalog(ctx)).files;
}

/** List (and with ctx.really, remove) what the prune policy selects, in storage and in the clouds. */
export async function prune(ctx: PruneContext): Promise<PruneItem[]> {
  return runPrune(ctx);
}
