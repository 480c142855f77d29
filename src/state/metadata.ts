import { readFile } from 'node:fs/promises';
import { parse, stringify } from 'yaml';
import { UserError } from '../util/errors.js';
import { hashFile, writeFileAtomic } from '../util/fs.js';
import { type Image, type ImageMetadata, OPTIONAL_TAGS } from './image.js';

/** The state fields a metadata file carries back into an image's config. */
export const STATE_FIELDS = ['revision', ...OPTIONAL_TAGS, 'artifacts', 'signing_key_fingerprint'] as const;

/** Metadata of an image as it stands in its config (tags + artifacts + bookkeeping). */
export function metadataOf(image: Image, now: Date): ImageMetadata {
  const c = image.config;
  return {
    ...image.tags(),
    artifacts: c.artifacts ?? null,
    ...(typeof c.signing_key_fingerprint === 'string'
      ? { signing_key_fingerprint: c.signing_key_fingerprint }
      : {}),
    metadata_updated: now.toISOString(),
  };
}

export async function readMetadata(path: string): Promise<ImageMetadata | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let data: unknown;
  try {
    data = parse(text);
  } catch (err) {
    throw new UserError(`${path}: not valid YAML metadata: ${(err as Error).message}`);
  }
  if (!data || typeof data !== 'object' || Array.isArray(data)) {
    throw new UserError(`${path}: expected a YAML mapping of image metadata`);
  }
  return data as ImageMetadata;
}

/**
 * Write <image_name>.yaml and its .sha512 in the local image directory, each atomically.
 * The checksum is written after the file it describes, so a crash never leaves a checksum for the wrong content
 * without the content also being complete.
 */
export async function writeMetadata(image: Image, now: Date): Promise<ImageMetadata> {
  const meta = metadataOf(image, now);
  image.config.metadata_updated = meta.metadata_updated;
  await writeFileAtomic(image.metadataPath, stringify(meta, { lineWidth: 0 }));
  await writeFileAtomic(`${image.metadataPath}.sha512`, `${await hashFile(image.metadataPath)}\n`);
  return meta;
}

/** Copy the state fields of a metadata file into the image's config. */
export function applyMetadata(image: Image, meta: ImageMetadata): void {
  const c = image.config as Record<string, unknown>;
  for (const k of STATE_FIELDS) {
    const v = (meta as unknown as Record<string, unknown>)[k];
    c[k] = v === undefined ? null : v;
  }
  c.revision = Number(meta.revision ?? 0);
  c.metadata_updated = meta.metadata_updated;
}

/** Forget every state field (before the state step reloads them from metadata). */
export function clearState(image: Image): void {
  const c = image.config as Record<string, unknown>;
  for (const k of STATE_FIELDS) c[k] = null;
  c.revision = 0;
  delete c.metadata_updated;
  delete c.actions;
  delete c.undo;
}

/** Revision number from a metadata file name matching the image's name pattern, or undefined. */
export function revisionFromName(image: Image, file: string): number | undefined {
  const [prefix, suffix] = image.nameFor('\u0000').split('\u0000') as [string, string];
  const tail = `${suffix}.yaml`;
  if (!file.startsWith(prefix) || !file.endsWith(tail)) return undefined;
  const mid = file.slice(prefix.length, file.length - tail.length);
  return /^\d+$/.test(mid) ? Number(mid) : undefined;
}
