// Resolution of the image matrix, as alpine-cloud-images does it:
// for every combination of dimension keys (in dimension order, the last dimension varying fastest), start from
// Default, merge each dimension key's config in dimension order and, after each one, apply the WHEN blocks that
// match (repeatedly, so nested WHEN blocks apply too), then drop the variant when an EXCLUDE entry is one of its
// dimension keys or its end_of_life has passed; finally merge Mandatory and normalise.
import type { Logger } from 'pino';
import { redactText } from '../util/redact.js';
import { hasUnsafeText, isSafeName, SAFE_NAME_RULE } from '../util/safe-name.js';
import { ConfigError, throwErrors } from './errors.js';
import { settingValue } from './images-yaml.js';
import { deepClone, getPath, isPlainObject, mergeAdditive, type PlainObject } from './merge.js';
import { normaliseVariant } from './normalize.js';
import type { AlpineReleases, VersionInfo } from './releases.js';
import { formatLocation, type Location, type SourceIndex } from './source.js';
import type { ImageConfig, ImagesFile } from './types.js';
import type { LoadedTree } from './yaml-loader.js';

export interface ResolveOptions {
  readonly now: Date;
  readonly log: Logger;
  readonly workDir: string;
  readonly releases: AlpineReleases;
  /** the top-level config file, as shown to the user */
  readonly topFile: string;
  /**
   * Checks of settings owned by other modules (a cloud plugin's settings), run on every resolved variant; each
   * problem becomes an error naming the variant and the file and line where the key was set.
   */
  readonly check?: ConfigCheck;
}

/** A problem a check found in one setting of a resolved variant. */
export interface ConfigIssue {
  /** the setting, as a dotted path (e.g. "image_format", "regions.us-west-2") */
  readonly key: string;
  readonly expected: string;
  readonly found: unknown;
  /** tells a bad value from a good one, to find the file that set the bad one */
  readonly isBad?: (v: unknown) => boolean;
}

export type ConfigCheck = (config: ImageConfig) => readonly ConfigIssue[];

export interface ResolveStats {
  combinations: number;
  variants: number;
  excluded: number;
  endOfLife: number;
}

interface Dimension {
  readonly name: string;
  readonly keys: readonly string[];
}

interface Layer {
  readonly data: PlainObject;
  /** config tree paths this layer's settings come from (several when WHEN blocks of several layers merged) */
  readonly origins: readonly (readonly string[])[];
}

/** Parse end_of_life: YYYY-MM-DD (midnight UTC) or an ISO date-time (UTC unless it names a zone). */
export function parseEndOfLife(v: string): Date | undefined {
  const m =
    /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.exec(
      v.trim(),
    );
  if (!m) return undefined;
  const iso = m[4]
    ? `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6] ?? '00'}${m[7] ?? 'Z'}`
    : `${m[1]}-${m[2]}-${m[3]}T00:00:00Z`;
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

function layerError(
  index: SourceIndex,
  path: readonly string[],
  key: string,
  expected: string,
  got: unknown,
  topFile: string,
): ConfigError {
  return new ConfigError('', { key, expected, got, location: index.find(path) ?? { file: topFile } });
}

function readTopLevel(
  loaded: LoadedTree,
  topFile: string,
): { Default: PlainObject; Mandatory: PlainObject; dims: Dimension[]; Dimensions: PlainObject } {
  const { tree, index } = loaded;
  for (const block of ['Default', 'Dimensions', 'Mandatory']) {
    if (!Object.hasOwn(tree, block)) {
      throw new ConfigError(
        `the top-level config has no ${block} block (it needs Default, Dimensions and Mandatory)`,
        {
          location: { file: topFile },
        },
      );
    }
    if (!isPlainObject(tree[block])) {
      throw layerError(index, [block], block, 'a map of settings', tree[block], topFile);
    }
  }
  const Dimensions = tree.Dimensions as PlainObject;
  const dims: Dimension[] = [];
  // every bad dimension is reported at once
  const errors: ConfigError[] = [];
  const bad = (path: string[], key: string, expected: string, got: unknown) =>
    errors.push(layerError(index, path, key, expected, got, topFile));
  for (const [name, value] of Object.entries(Dimensions)) {
    if (!isSafeName(name)) {
      bad(['Dimensions', name], 'Dimensions', `dimension names of ${SAFE_NAME_RULE}`, name);
    }
    if (!isPlainObject(value) || Object.keys(value).length === 0) {
      bad(['Dimensions', name], `Dimensions.${name}`, 'a map of dimension keys to their configs', value);
      continue;
    }
    for (const [k, v] of Object.entries(value)) {
      // dimension keys become parts of config_key, image_key, work/ and storage paths and image names
      if (!isSafeName(k)) bad(['Dimensions', name, k], `Dimensions.${name}`, `keys of ${SAFE_NAME_RULE}`, k);
      if (v !== null && !isPlainObject(v)) {
        bad(['Dimensions', name, k], `Dimensions.${name}.${k}`, 'a map of settings', v);
      }
    }
    dims.push({ name, keys: Object.keys(value) });
  }
  throwErrors(errors);
  if (!dims.some((d) => d.name === 'version')) {
    throw new ConfigError(
      'Dimensions has no "version" dimension (its keys are Alpine versions such as "3.22" or edge)',
      {
        location: index.find(['Dimensions']) ?? { file: topFile },
      },
    );
  }
  return { Default: tree.Default as PlainObject, Mandatory: tree.Mandatory as PlainObject, dims, Dimensions };
}

/** The version key's config plus what releases.json says about it. */
function versionLayer(cfg: PlainObject | null, info: VersionInfo): PlainObject {
  const c: PlainObject = deepClone(cfg ?? {});
  c.release = info.release;
  c.release_notes = info.notes;
  if (!Object.hasOwn(c, 'end_of_life')) c.end_of_life = info.end_of_life;
  // the release is what the version contributes to the image name and description
  c.name = [info.release];
  c.description = [info.release];
  return c;
}

const DIRECTIVES = new Set(['WHEN', 'EXCLUDE']);

/**
 * One variant being resolved. WHEN and EXCLUDE are kept beside the settings rather than among them (they are
 * merged with the same rules and taken out after each dimension, so the result is the same), which keeps the
 * settings object from being reshaped by deletions.
 */
class Variant {
  readonly cfg: PlainObject;
  /** WHEN blocks merged since they were last applied */
  private when: unknown;
  /** EXCLUDE entries merged since they were last checked */
  private exclude: unknown;
  private readonly applied: Layer[] = [];
  /** objects and arrays made for this variant (the others are shared with the config tree) */
  private readonly owned = new Set<object>();
  private whenOrigins = new Map<string, string[][]>();
  private readonly index: SourceIndex;
  /** keep track of where WHEN blocks came from (only needed to name files in error messages) */
  private readonly track: boolean;
  readonly configKey: string;

  constructor(configKey: string, start: PlainObject, index: SourceIndex, track: boolean) {
    this.configKey = configKey;
    this.cfg = start;
    this.index = index;
    this.track = track;
  }

  /** Merge a layer (objects merge, arrays append, anything else replaces). */
  apply(layer: Layer): void {
    const data = layer.data;
    const when = data.WHEN;
    if (when !== undefined) {
      if (when === null) {
        this.whenOrigins = new Map();
      } else if (!isPlainObject(when)) {
        throw this.error(
          ['WHEN'],
          'a map of dimension keys (space-separated: any of them) to settings',
          when,
          layer,
        );
      } else {
        for (const [k, v] of Object.entries(when)) {
          if (!isPlainObject(v)) {
            throw this.error(['WHEN', k], 'a map of settings to apply', v, layer);
          }
          if (!this.track) continue;
          const list = this.whenOrigins.get(k) ?? [];
          for (const o of layer.origins) list.push([...o, 'WHEN', k]);
          this.whenOrigins.set(k, list);
        }
      }
      this.when = mergeOne(this.when, when);
    }
    if (data.EXCLUDE !== undefined) this.exclude = mergeOne(this.exclude, data.EXCLUDE);
    for (const k of Object.keys(data)) {
      if (DIRECTIVES.has(k)) continue;
      this.mergeKey(this.cfg, k, data[k]);
    }
    this.applied.push(layer);
  }

  /**
   * The variant merge (objects merge, arrays append, anything else replaces) of `s` into `parent[k]`, copying
   * on write: values from the config tree are shared until this variant changes them, and only objects and
   * arrays this variant made (`owned`) are ever changed. The config tree itself is never changed.
   */
  private mergeKey(parent: PlainObject, k: string, s: unknown): void {
    const t = parent[k];
    if (t === undefined && !Object.hasOwn(parent, k)) {
      parent[k] = s;
    } else if (isPlainObject(t) && isPlainObject(s)) {
      let target = t;
      if (!this.owned.has(t)) {
        target = { ...t };
        this.owned.add(target);
        parent[k] = target;
      }
      for (const kk of Object.keys(s)) this.mergeKey(target, kk, s[kk]);
    } else if (Array.isArray(t) && Array.isArray(s)) {
      if (s.length === 0) return;
      if (this.owned.has(t)) {
        for (const x of s) t.push(x);
      } else {
        const target = [...t, ...s];
        this.owned.add(target);
        parent[k] = target;
      }
    } else {
      parent[k] = s;
    }
  }

  /** Apply matching WHEN blocks until none is left (nested WHEN = AND, space-separated keys = OR). */
  applyWhen(dimKeys: ReadonlySet<string>): void {
    for (;;) {
      const when = this.when;
      this.when = undefined;
      if (!isPlainObject(when) || Object.keys(when).length === 0) break;
      const origins = this.whenOrigins;
      this.whenOrigins = new Map();
      for (const [keys, settings] of Object.entries(when)) {
        if (!keys.split(' ').some((k) => dimKeys.has(k))) continue;
        this.apply({ data: settings as PlainObject, origins: origins.get(keys) ?? [] });
      }
    }
  }

  /** Take EXCLUDE out; the entry that is one of this variant's dimension keys, if any. */
  excluded(dimKeys: ReadonlySet<string>): string | undefined {
    const ex = this.exclude;
    this.exclude = undefined;
    if (ex === undefined || ex === null) return undefined;
    const ok = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === 'string');
    if (!ok(ex)) {
      throw this.error(
        ['EXCLUDE'],
        'a list of dimension keys (quote versions: "3.20")',
        ex,
        undefined,
        (v) => !ok(v),
      );
    }
    return (ex as string[]).find((k) => dimKeys.has(k));
  }

  /** Directives left after Mandatory (which nothing applies). */
  leftover(): string[] {
    const out: string[] = [];
    if (this.when !== undefined && this.when !== null) out.push('WHEN');
    if (this.exclude !== undefined && this.exclude !== null) out.push('EXCLUDE');
    return out;
  }

  locate(path: readonly string[], isBad?: (v: unknown) => boolean): Location | undefined {
    for (let i = this.applied.length - 1; i >= 0; i--) {
      const layer = this.applied[i]!;
      const v = getPath(layer.data, path);
      if (v === undefined || (isBad && !isBad(v))) continue;
      for (let j = layer.origins.length - 1; j >= 0; j--) {
        const loc = this.index.find([...layer.origins[j]!, ...path]);
        if (loc) return loc;
      }
    }
    return undefined;
  }

  error(
    path: readonly string[],
    expected: string,
    got: unknown,
    layer?: Layer,
    isBad?: (v: unknown) => boolean,
  ): ConfigError {
    let location: Location | undefined;
    if (layer) {
      for (let j = layer.origins.length - 1; j >= 0 && !location; j--) {
        location = this.index.find([...layer.origins[j]!, ...path]);
      }
    }
    location ??= this.locate(path, isBad) ?? this.locate(path);
    // a dimension's own field (arch, firmware, ...) is set by the dimension key's entry in Dimensions
    if (!location && path.length === 1 && typeof this.cfg[path[0]!] === 'string') {
      location = this.index.find(['Dimensions', path[0]!, this.cfg[path[0]!] as string]);
    }
    return new ConfigError('', { variant: this.configKey, key: path.join('.'), expected, got, location });
  }
}

/**
 * mergeAdditive for a single value: what `{k: a}` merged with `{k: b}` holds at k. WHEN and EXCLUDE values are
 * only read, so the first one is kept by reference; merging a second one makes a merged copy.
 */
function mergeOne(a: unknown, b: unknown): unknown {
  if (a === undefined) return b;
  const t: PlainObject = { v: deepClone(a) };
  mergeAdditive(t, { v: b });
  return t.v;
}

/** Resolve the loaded config tree into variants (config_key -> normalised variant), in matrix order. */
export async function resolveMatrix(
  loaded: LoadedTree,
  opts: ResolveOptions,
): Promise<{ images: ImagesFile; stats: ResolveStats }> {
  const { index } = loaded;
  const { log, releases, now } = opts;
  const top = readTopLevel(loaded, opts.topFile);
  const dimConfigs = new Map<string, Map<string, PlainObject>>();
  for (const d of top.dims) {
    const m = new Map<string, PlainObject>();
    for (const k of d.keys)
      m.set(k, ((top.Dimensions[d.name] as PlainObject)[k] as PlainObject | null) ?? {});
    dimConfigs.set(d.name, m);
  }

  // release information for every version key (release candidates are looked up once, in parallel)
  const versionKeys = top.dims.find((d) => d.name === 'version')!.keys;
  const infos = await Promise.all(versionKeys.map((v) => releases.versionInfo(v)));
  const versionInfo = new Map(versionKeys.map((v, i) => [v, infos[i]!]));
  const versions = dimConfigs.get('version')!;
  for (const v of versionKeys) versions.set(v, versionLayer(versions.get(v)!, versionInfo.get(v)!));

  const images: ImagesFile = {};
  const stats: ResolveStats = { combinations: 0, variants: 0, excluded: 0, endOfLife: 0 };
  const eolDropped = new Map<string, number>();
  const eolCache = new Map<string, Date>();
  const counters = top.dims.map(() => 0);
  const sizes = top.dims.map((d) => d.keys.length);
  const total = sizes.reduce((a, b) => a * b, 1);

  type Outcome =
    | { kind: 'variant'; config: ImageConfig }
    | { kind: 'excluded'; by: string; entry: string }
    | { kind: 'eol'; key: string; eol: string };

  /** Resolve one combination of dimension keys. */
  const resolveOne = (keys: readonly string[], track: boolean): Outcome => {
    const dimMap = top.dims.map((d, i) => [d.name, keys[i]!] as const);
    const dimKeySet = new Set(keys);
    const configKey = keys.join('-');
    const version = dimMap.find(([name]) => name === 'version')![1];
    const release = versionInfo.get(version)!.release;
    const imageKey = dimMap.map(([name, k]) => (name === 'version' ? release : k)).join('-');

    // (images.yaml shows the run's state fields after config_key: the serializer puts them there)
    const start: PlainObject = { config_key: configKey };
    start.image_key = imageKey;
    start.release = release;
    for (const [name, k] of dimMap) start[name] = k;

    const variant = new Variant(configKey, start, index, track);
    variant.apply({ data: top.Default, origins: [['Default']] });
    for (const [name, key] of dimMap) {
      variant.apply({ data: dimConfigs.get(name)!.get(key)!, origins: [['Dimensions', name, key]] });
      variant.applyWhen(dimKeySet);
      const ex = variant.excluded(dimKeySet);
      if (ex !== undefined) return { kind: 'excluded', by: key, entry: ex };
      const eol = variant.cfg.end_of_life;
      if (eol) {
        let when = typeof eol === 'string' ? eolCache.get(eol) : undefined;
        if (when === undefined && typeof eol === 'string') {
          when = parseEndOfLife(eol);
          if (when) eolCache.set(eol, when);
        }
        if (!when) {
          throw variant.error(
            ['end_of_life'],
            'a date such as 2026-05-01',
            eol,
            undefined,
            (v) => typeof v !== 'string' || !parseEndOfLife(v),
          );
        }
        if (now.getTime() > when.getTime()) return { kind: 'eol', key, eol: String(eol) };
      }
    }
    variant.apply({ data: top.Mandatory, origins: [['Mandatory']] });
    const leftover = variant.leftover()[0];
    if (leftover) {
      throw new ConfigError(
        `${leftover} is not applied in Mandatory (it is merged last); move it to Default or a dimension config`,
        {
          key: `Mandatory.${leftover}`,
          location: index.find(['Mandatory', leftover]) ?? { file: opts.topFile },
        },
      );
    }
    const config = normaliseVariant(variant.cfg, {
      variant: configKey,
      locate: (path, isBad) => variant.locate(path, isBad),
      workDir: opts.workDir,
      isoUrl: (arch) => releases.virtIsoUrl(arch),
    });
    const issues = [...nameIssues(config), ...(opts.check?.(config) ?? [])];
    throwErrors(issues.map((i) => variant.error(i.key.split('.'), i.expected, i.found, undefined, i.isBad)));
    return { kind: 'variant', config };
  };

  warnUnknownDirectiveKeys(top, index, log);
  // every error of every variant is reported at once (the same error in several variants once, naming them)
  const errors: ConfigError[] = [];
  // no setting may embed credentials in a URL (they would reach images.yaml, metadata and logs): the config
  // tree is scanned once (what variants get from it is made of it); the value is shown redacted
  findCredentials(loaded.tree, [], (path, s) => {
    errors.push(
      new ConfigError('', {
        key: redactText(path.join('.')),
        expected:
          'URLs without credentials (give them to the tool by its environment, e.g. ~/.netrc or AWS_*)',
        got: redactText(s),
        location: index.find(path) ?? { file: opts.topFile },
      }),
    );
  });
  for (let n = 0; n < total; n++) {
    // odometer: the last dimension varies fastest (itertools.product order)
    if (n > 0) {
      for (let i = counters.length - 1; i >= 0; i--) {
        counters[i]! += 1;
        if (counters[i]! < sizes[i]!) break;
        counters[i] = 0;
      }
    }
    stats.combinations++;
    const keys = top.dims.map((d, i) => d.keys[counters[i]!]!);
    let outcome: Outcome;
    try {
      outcome = resolveOne(keys, false);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      // resolve it again, keeping track of every file involved, so that the error names the right one
      try {
        resolveOne(keys, true);
        errors.push(err);
      } catch (tracked) {
        errors.push(tracked instanceof ConfigError ? tracked : err);
      }
      continue;
    }
    const configKey = keys.join('-');
    if (outcome.kind === 'excluded') {
      log.debug(`${configKey} skipped: ${outcome.by} excludes ${outcome.entry}`);
      stats.excluded++;
    } else if (outcome.kind === 'eol') {
      log.debug(`${configKey} skipped: ${outcome.key} end_of_life ${outcome.eol} has passed`);
      const reason = `${outcome.key} (end_of_life ${outcome.eol})`;
      eolDropped.set(reason, (eolDropped.get(reason) ?? 0) + 1);
      stats.endOfLife++;
    } else {
      images[configKey] = outcome.config;
      stats.variants++;
    }
  }
  throwErrors(errors);
  for (const [reason, count] of eolDropped) {
    log.warn(`dropped ${count} variant${count === 1 ? '' : 's'}: ${reason} has passed`);
  }
  return { images, stats };
}

/** Placeholders such as {cloud} filled from the variant's settings ({revision} as 0), for checking the result. */
function fillForCheck(template: string, config: ImageConfig): string {
  return template.replace(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_whole, k: string) => {
    if (k === 'revision') return '0';
    const v = settingValue(config, k);
    return v === null || v === undefined || typeof v === 'object' ? 'x' : String(v);
  });
}

/**
 * Call `found` for every string of a config tree (map keys too) that holds a URL with credentials, with its path
 * (copied only on a hit).
 */
function findCredentials(v: unknown, path: string[], found: (path: string[], s: string) => void): void {
  if (typeof v === 'string') {
    if (v.includes('://') && (v.includes('@') || v.includes('?')) && redactText(v) !== v) found([...path], v);
  } else if (Array.isArray(v)) {
    for (const x of v) findCredentials(x, path, found);
  } else if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    for (const k in o) {
      path.push(k);
      if (k.includes('://')) findCredentials(k, path, found);
      findCredentials(o[k], path, found);
      path.pop();
    }
  }
}

/** The image name (with its placeholders filled) must be a safe name; the description must be plain text. */
function nameIssues(config: ImageConfig): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  const name = fillForCheck(config.name, config);
  if (!isSafeName(name)) {
    out.push({ key: 'name', expected: `an image name of ${SAFE_NAME_RULE}`, found: name });
  }
  if (hasUnsafeText(config.description)) {
    out.push({
      key: 'description',
      expected: 'text without control or bidirectional characters',
      found: config.description,
    });
  }
  return out;
}

/**
 * A WHEN key or EXCLUDE entry that is no dimension key anywhere never applies: alpine-cloud-images ignores it
 * silently, so a typo (bois for bios) costs a release. Warn, naming the file and line.
 */
function warnUnknownDirectiveKeys(
  top: { Default: PlainObject; Mandatory: PlainObject; dims: Dimension[]; Dimensions: PlainObject },
  index: SourceIndex,
  log: Logger,
): void {
  const known = new Set(top.dims.flatMap((d) => d.keys));
  const warned = new Set<string>();
  const warn = (path: readonly string[], what: string) => {
    const loc = index.find(path);
    const where = loc ? formatLocation(loc) : path.join('.');
    const text = `${what} is no dimension key (known: ${[...known].join(', ')}), so it never applies (${where})`;
    if (warned.has(text)) return;
    warned.add(text);
    log.warn(text);
  };
  const walk = (layer: unknown, path: readonly string[], depth: number) => {
    if (!isPlainObject(layer) || depth > 20) return;
    const when = layer.WHEN;
    if (isPlainObject(when)) {
      for (const [k, settings] of Object.entries(when)) {
        const unknown = k.split(' ').filter((x) => x !== '' && !known.has(x));
        if (unknown.length > 0) {
          warn([...path, 'WHEN', k], `WHEN key ${unknown.map((x) => JSON.stringify(x)).join(', ')}`);
        }
        walk(settings, [...path, 'WHEN', k], depth + 1);
      }
    }
    const ex = layer.EXCLUDE;
    if (Array.isArray(ex)) {
      const unknown = ex.filter((x) => typeof x === 'string' && !known.has(x));
      if (unknown.length > 0) {
        warn([...path, 'EXCLUDE'], `EXCLUDE entry ${unknown.map((x) => JSON.stringify(x)).join(', ')}`);
      }
    }
  };
  walk(top.Default, ['Default'], 0);
  for (const d of top.dims) {
    for (const k of d.keys) walk((top.Dimensions[d.name] as PlainObject)[k], ['Dimensions', d.name, k], 0);
  }
  walk(top.Mandatory, ['Mandatory'], 0);
}
