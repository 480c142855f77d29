// Public API of sign / release / catalog / prune (the pipeline calls only these).
import type { Logger } from 'pino';
import type { CloudContext, CloudPlugin } from '../../clouds/types.js';
import type { Image } from '../state/image.js';
import type { StoragePool } from '../storage/types.js';

export interface SignResult {
  /** ISO timestamp */
  signed: string;
  /** OpenPGP fingerprint of the signing key, when known */
  fingerprint?: string;
  /** files written in image.localDir (e.g. <uploadFile>.asc), to be stored beside the image */
  files: string[];
}

/** Sign image.uploadPath with signing_cmd or signing_key; verify the signature right after. */
export async function signImage(
  _image: Image,
  _ctx: { log: Logger; env: NodeJS.ProcessEnv },
): Promise<SignResult> {
  throw new Error('not implemented');
}

/** Run release_cmd (if any) for the image; throws a UserError naming the command when it fails. */
export async function releaseImage(
  _image: Image,
  _ctx: { log: Logger; env: NodeJS.ProcessEnv },
): Promise<void> {
  throw new Error('not implemented');
}

export interface CatalogContext {
  /** every resolved variant (not only the selected ones) */
  readonly images: readonly Image[];
  readonly pool: StoragePool;
  readonly outDir: string;
  readonly log: Logger;
}

/** Write the site YAML and the JSON catalog from the metadata in storage. Returns the files written. */
export async function writeCatalog(_ctx: CatalogContext): Promise<string[]> {
  throw new Error('not implemented');
}

export interface PruneContext {
  readonly images: readonly Image[];
  readonly pool: StoragePool;
  readonly clouds: (name: string) => CloudPlugin;
  readonly cloudContext: CloudContext;
  readonly really: boolean;
  readonly now: Date;
  readonly log: Logger;
}

export interface PruneItem {
  where: 'storage' | 'cloud';
  what: string;
  reason: 'old-revision' | 'end-of-life' | 'unreleased';
  removed: boolean;
}

export async function prune(_ctx: PruneContext): Promise<PruneItem[]> {
  throw new Error('not implemented');
}
