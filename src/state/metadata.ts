// Per-image metadata files (<image_name>.yaml): the image's tags, then the state fields that are not tags.
// Written from the image's configuration and state; read back with every field type-checked, so bad metadata
// (hand-edited, truncated by another tool, written by a newer version) is refused with the file, the field, what
// was expected and what was found, before anything of it is used or copied into work/.
import { readFile } from 'node:fs/promises';
import { parse, stringify } from 'yaml';
import { describeValue } from '../config/errors.js';
import { UserError } from '../util/errors.js';
import { hashFile, writeFileAtomic } from '../util/fs.js';
import { redactText } from '../util/redact.js';
import type { Image, ImageMetadata } from './image.js';
import { type ImageState, readState, STATE_FIELDS, stateAfter } from './image-state.js';

/** The state fields a metadata file carries (the one list, from image-state.ts). */
export { STATE_FIELDS };

/** The configuration's tags in a metadata file: text (a number is taken as its text, e.g. version 3.20). */
const CONFIG_TAGS = [
  'arch',
  'bootstrap',
  'cloud',
  'description',
  'end_of_life',
  'firmware',
  'image_key',
  'machine',
  'name',
  'project',
  'release',
  'version',
] as const;

/** Metadata of an image as it stands (tags + artifacts + bookkeeping). */
export function metadataOf(image: Image, now: Date): ImageMetadata {
  const s = image.state;
  return {
    ...image.tags(),
    artifacts: s.artifacts ? { ...s.artifacts } : null,
    ...(s.signing_key_fingerprint ? { signing_key_fingerprint: s.signing_key_fingerprint } : {}),
    ...(s.supply ? { supply: s.supply } : {}),
    ...(s.boot_test ? { boot_test: s.boot_test } : {}),
    metadata_updated: now.toISOString(),
  };
}

/**
 * Check a metadata mapping read from `where`: every tag is text, every state field has its type. Throws a
 * UserError listing every bad field.
 */
export function checkMetadata(data: unknown, where: string): { meta: ImageMetadata; state: ImageState } {
  if (!data || typeof data !== 'object' || Array.isArray(data)) {
    throw new UserError(`${where}: expected a YAML mapping of image metadata, found ${describeValue(data)}`);
  }
  const m = { ...(data as Record<string, unknown>) };
  const bad: string[] = [];
  for (const k of CONFIG_TAGS) {
    const v = m[k];
    if (v === undefined || v === null) delete m[k];
    else if (typeof v === 'number' && Number.isFinite(v)) m[k] = String(v);
    else if (typeof v !== 'string') bad.push(`${k}: expected text, found ${describeValue(v)}`);
  }
  const read = readState(m);
  if ('problems' in read) {
    for (const p of read.problems)
      bad.push(`${p.field}: expected ${p.expected}, found ${describeValue(p.found)}`);
  }
  if (bad.length > 0 || 'problems' in read) {
    throw new UserError(`${where}: bad image metadata (${bad.join('; ')})`);
  }
  const { state } = read;
  for (const f of STATE_FIELDS) if (Object.hasOwn(m, f)) m[f] = state[f];
  m.revision = state.revision;
  return { meta: m as unknown as ImageMetadata, state };
}

/** Parse and check the text of a metadata file (see checkMetadata). */
export function parseMetadata(text: string, where: string): { meta: ImageMetadata; state: ImageState } {
  let data: unknown;
  try {
    data = parse(text);
  } catch (err) {
    throw new UserError(`${where}: not valid YAML metadata: ${(err as Error).message.split('\n')[0]}`);
  }
  return checkMetadata(data, where);
}

/** Read and check a metadata file; undefined when it does not exist. `where` names it in errors. */
export async function readMetadata(
  path: string,
  where: string = path,
): Promise<{ meta: ImageMetadata; state: ImageState } | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return parseMetadata(text, where);
}

/**
 * Write <image_name>.yaml and its .sha512 in the local image directory, each atomically.
 * The checksum is written after the file it describes, so a crash never leaves a checksum for the wrong content
 * without the content also being complete.
 */
export async function writeMetadata(image: Image, now: Date): Promise<ImageMetadata> {
  const meta = metadataOf(image, now);
  image.record(stateAfter.metadataWritten(image.state, meta.metadata_updated));
  await writeFileAtomic(image.metadataPath, redactText(stringify(meta, { lineWidth: 0 })));
  await writeFileAtomic(`${image.metadataPath}.sha512`, `${await hashFile(image.metadataPath)}\n`);
  return meta;
}

/** Revision number from a metadata file name matching the image's name pattern, or undefined. */
export function revisionFromName(image: Image, file: string): number | undefined {
  const [prefix, suffix] = image.nameFor('\u0000').split('\u0000') as [string, string];
  const tail = `${suffix}.yaml`;
  if (!file.startsWith(prefix) || !file.endsWith(tail)) return undefined;
  const mid = file.slice(prefix.length, file.length - tail.length);
  return /^\d+$/.test(mid) ? Number(mid) : undefined;
}
