// work/images.yaml: config_key -> resolved variant, in matrix order, with the field names and value formats of
// alpine-cloud-images. Written atomically; strings that a YAML 1.1 reader (PyYAML, ruamel, Packer's yamldecode)
// would take for dates, booleans or numbers are quoted, so every reader sees the same values.
import { readFile } from 'node:fs/promises';
import { LineCounter, parseDocument } from 'yaml';
import { UserError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';
import { redactText } from '../util/redact.js';
import { flat, parseRepos, words } from './flat.js';
import { isPlainObject } from './merge.js';
import { checkReadBack } from './normalize.js';
import type { ImageConfig, ImagesFile } from './types.js';
import { emitYaml, readYamlFast, Unsupported } from './yaml-fast.js';

/**
 * What images.yaml shows of a run beside each variant's configuration: its state and plan (set by the state step
 * and later steps). alpine-cloud-images keeps these in the variant itself; here they are separate and only meet
 * in the file.
 */
export type RunFields = Readonly<Record<string, unknown>>;

/** The run fields of the original images.yaml, right after config_key (null until set). */
export const LEADING_RUN_FIELDS = [
  'built',
  'uploaded',
  'imported',
  'signed',
  'published',
  'released',
  'artifacts',
] as const;

/**
 * Every run field images.yaml may carry (the leading ones, the rest of the image state, the plan): reading
 * images.yaml back leaves them out of the configuration. The state layer's own field list is tested to be
 * inside this one.
 */
export const RUN_FIELDS: ReadonlySet<string> = new Set([
  ...LEADING_RUN_FIELDS,
  'revision',
  'import_id',
  'import_region',
  'signing_key_fingerprint',
  'supply',
  'boot_test',
  'metadata_updated',
  'actions',
  'undo',
  'state_updated',
]);

/** The typed value of a flat field read from images.yaml (throws a message when the flat form is not text). */
const unflat: ReadonlyMap<string, (v: unknown) => unknown> = new Map(
  Object.entries({
    repos: (v) => parseRepos(text(v)),
    repo_keys: (v) => words(text(v)),
    packages: (v) => {
      const p = map(v);
      return { add: words(text(p.add)), del: words(text(p.del)), noscripts: words(text(p.noscripts)) };
    },
    services: (v) => {
      const s = map(v);
      const levels = (t: unknown) => {
        const out: Record<string, string[]> = {};
        for (const part of words(text(t))) {
          const eq = part.indexOf('=');
          if (eq <= 0) throw new Error(`"${part}" is not runlevel=service,...`);
          out[part.slice(0, eq)] = part
            .slice(eq + 1)
            .split(',')
            .filter(Boolean);
        }
        return out;
      };
      return { enable: levels(s.enable), disable: levels(s.disable) };
    },
    kernel_modules: (v) => text(v).split(',').filter(Boolean),
    kernel_options: (v) => words(text(v)),
    initfs_features: (v) => words(text(v)),
    disk_size: (v) => {
      const m = /^(\d+)([MG])$/.exec(text(v).trim());
      if (!m) throw new Error(`${JSON.stringify(v)} is not a size such as "416M"`);
      return Number(m[1]) * (m[2] === 'G' ? 1024 : 1);
    },
  } satisfies Record<string, (v: unknown) => unknown>),
);

function text(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw new Error(`expected text, got ${JSON.stringify(v)}`);
  return v;
}

function map(v: unknown): Record<string, unknown> {
  if (v === undefined || v === null) return {};
  if (!isPlainObject(v)) throw new Error(`expected a map, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * One setting as images.yaml shows it: the typed lists and maps in their flat form, anything else as it is
 * (settings the tool does not read included). The read-only view `{placeholder}` fills use.
 */
export function settingValue(config: ImageConfig, key: string): unknown {
  // the one view of the configuration as a record (see ImageConfig: undeclared settings live on the object)
  const v = (config as unknown as Readonly<Record<string, unknown>>)[key];
  // (text, flags and null are shown as they are: only the typed lists and maps and disk_size have a flat form)
  if (v === undefined || v === null || typeof v === 'string' || typeof v === 'boolean') return v;
  switch (key) {
    case 'repos':
      return flat.repos(config.repos);
    case 'repo_keys':
    case 'kernel_options':
    case 'initfs_features':
      return flat.words(v as readonly string[]);
    case 'kernel_modules':
      return flat.commas(config.kernel_modules);
    case 'disk_size':
      return flat.diskSize(config.disk_size);
    case 'packages': {
      const p = config.packages;
      return { add: flat.words(p.add), del: flat.words(p.del), noscripts: flat.words(p.noscripts) };
    }
    case 'services':
      return {
        enable: flat.services(config.services.enable),
        disable: flat.services(config.services.disable),
      };
    default:
      return v;
  }
}

/** Every setting as images.yaml shows it, in its order (for `{placeholder}` fills of any setting). */
export function settingValues(config: ImageConfig): Readonly<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const k in config) out[k] = settingValue(config, k);
  return out;
}

/** One variant as images.yaml shows it: config_key, the leading run fields, the configuration, other run fields. */
function imagesYamlRecord(config: ImageConfig, run: RunFields | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = { config_key: config.config_key };
  for (const f of LEADING_RUN_FIELDS) out[f] = run?.[f] ?? null;
  for (const k in config) if (k !== 'config_key') out[k] = settingValue(config, k);
  if (run) for (const k in run) if (!Object.hasOwn(out, k)) out[k] = run[k];
  return out;
}

/** The images.yaml text: every variant in matrix order, with the run fields `run` gives for it. */
export function imagesYamlText(
  images: ImagesFile,
  run?: (configKey: string) => RunFields | undefined,
): string {
  const out: Record<string, Record<string, unknown>> = {};
  for (const key in images) out[key] = imagesYamlRecord(images[key]!, run?.(key));
  // credentials in URLs (a CDN URL with a password) are never written: the build puts them back from the flags
  // (every key and value is redacted before it is written, each distinct string once)
  return emitYaml(out, redactText);
}

export async function writeImagesYamlFile(
  path: string,
  images: ImagesFile,
  run?: (configKey: string) => RunFields | undefined,
): Promise<void> {
  await writeFileAtomic(path, imagesYamlText(images, run));
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
    const fields: Record<string, unknown> = {};
    for (const k in value) {
      if (RUN_FIELDS.has(k)) continue;
      const v = value[k];
      const typed = unflat.get(k);
      if (typed && v !== undefined) {
        try {
          fields[k] = typed(v);
        } catch (err) {
          throw new UserError(`${path}: ${key}: ${k}: ${(err as Error).message}`);
        }
      } else {
        fields[k] = v instanceof Date ? v.toISOString() : v;
      }
    }
    if (typeof fields.config_key !== 'string') fields.config_key = key;
    // every setting it holds has the type `configs` gives it (a partial record of a hand-made file is taken as it is)
    const problems = checkReadBack(fields);
    if (problems.length > 0) throw new UserError(`${path}: ${key}: ${problems.join('; ')}`);
    const config = fields as unknown as ImageConfig;
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
