// work/images.yaml: config_key -> resolved variant, in matrix order, with the field names and value formats of
// alpine-cloud-images. Written atomically; strings that a YAML 1.1 reader (PyYAML, ruamel, Packer's yamldecode)
// would take for dates, booleans or numbers are quoted, so every reader sees the same values.
import { readFile } from 'node:fs/promises';
import { LineCounter, parseDocument } from 'yaml';
import { UserError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';
import { isPlainObject } from './merge.js';
import type { ImageConfig, ImagesFile } from './types.js';
import { emitYaml, readYamlFast, Unsupported } from './yaml-fast.js';

export function imagesYamlText(images: ImagesFile): string {
  return emitYaml(images);
}

export async function writeImagesYamlFile(path: string, images: ImagesFile): Promise<void> {
  await writeFileAtomic(path, imagesYamlText(images));
}

/** The data of a YAML text: the fast reader for what we write, the YAML library for anything else. */
function readYaml(text: string, path: string): unknown {
  try {
    return readYamlFast(text);
  } catch (err) {
    if (!(err instanceof Unsupported)) throw err;
  }
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const err = doc.errors[0];
  if (err) {
    const pos = lc.linePos(err.pos[0]);
    const message = err.message.split('\n')[0]?.replace(/ at line \d+, column \d+:?$/, '') ?? err.message;
    throw new UserError(`${path}:${pos.line}:${pos.col}: YAML syntax error: ${message}`);
  }
  return doc.toJS({ maxAliasCount: -1 });
}

export function parseImagesYaml(text: string, path: string): ImagesFile {
  const data = readYaml(text, path);
  if (data === null || data === undefined) return {};
  if (!isPlainObject(data)) throw new UserError(`${path}: expected a map of config_key to image config`);
  const out: ImagesFile = {};
  for (const [key, value] of Object.entries(data)) {
    if (!isPlainObject(value)) {
      throw new UserError(`${path}: ${key}: expected an image config (a map), got ${JSON.stringify(value)}`);
    }
    // an explicit !!timestamp tag gives a Date; keep the text form
    for (const [k, v] of Object.entries(value)) if (v instanceof Date) value[k] = v.toISOString();
    const config = value as ImageConfig;
    if (typeof config.config_key !== 'string') config.config_key = key;
    out[key] = config;
  }
  return out;
}

export async function readImagesYamlFile(path: string): Promise<ImagesFile | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new UserError(`${path}: cannot be read (${(err as Error).message})`);
  }
  return parseImagesYaml(text, path);
}
