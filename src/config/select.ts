import { UsageError } from '../util/errors.js';
import type { ImageConfig, ImagesFile } from './types.js';

/** the dimension fields of the usual matrix (used besides config_key parts, so keys with "-" work too) */
const KNOWN_DIMENSIONS = ['version', 'arch', 'firmware', 'bootstrap', 'machine', 'cloud'] as const;

/**
 * A variant's dimension keys: the parts of its config_key (as alpine-cloud-images splits it) plus the values of
 * the usual dimension fields that occur in the config_key (so a key such as "my-cloud" still matches).
 */
export function dimensionKeys(c: ImageConfig): Set<string> {
  const keys = new Set(c.config_key.split('-'));
  const parts = `-${c.config_key}-`;
  for (const d of KNOWN_DIMENSIONS) {
    const v = c[d];
    if (typeof v === 'string' && v && parts.includes(`-${v}-`)) keys.add(v);
  }
  return keys;
}

/** Variants selected by --only (all keys must match) and --skip (any key excludes), in matrix order. */
export function selectVariants(
  images: ImagesFile,
  only: readonly string[],
  skip: readonly string[],
): ImageConfig[] {
  const all = Object.values(images);
  const keysOf = new Map(all.map((c) => [c, dimensionKeys(c)]));
  if (only.length > 0 || skip.length > 0) {
    const valid = new Set<string>();
    for (const ks of keysOf.values()) for (const k of ks) valid.add(k);
    for (const [flag, list] of [
      ['--only', only],
      ['--skip', skip],
    ] as const) {
      const unknown = list.filter((k) => !valid.has(k));
      if (unknown.length > 0) {
        throw new UsageError(
          `${flag} ${unknown.join(' ')}: no variant has ${unknown.length === 1 ? 'this dimension key' : 'these dimension keys'}; valid keys: ${[...valid].sort(compareKeys).join(', ')}`,
        );
      }
    }
  }
  const selected = all.filter((c) => {
    const ks = keysOf.get(c)!;
    if (only.some((k) => !ks.has(k))) return false;
    if (skip.some((k) => ks.has(k))) return false;
    return true;
  });
  if (selected.length === 0 && all.length > 0 && (only.length > 0 || skip.length > 0)) {
    const flags = [
      ...(only.length ? [`--only ${only.join(' ')}`] : []),
      ...(skip.length ? [`--skip ${skip.join(' ')}`] : []),
    ];
    throw new UsageError(`${flags.join(' ')}: together these select no variant (of ${all.length})`);
  }
  return selected;
}

function compareKeys(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}
