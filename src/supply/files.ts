// Names of the supply-chain files stored beside an image, and what a --revise does to the supply record.
import type { SupplyState } from '../state/image-state.js';

export const SUPPLY_KINDS = ['spdx', 'cyclonedx', 'manifest', 'provenance'] as const;
export type SupplyKind = (typeof SUPPLY_KINDS)[number];

/** <name>.spdx.json, <name>.cdx.json, <name>.manifest, <name>.intoto.jsonl */
export function supplyFileNames(imageName: string): Record<SupplyKind, string> {
  return {
    spdx: `${imageName}.spdx.json`,
    cyclonedx: `${imageName}.cdx.json`,
    manifest: `${imageName}.manifest`,
    provenance: `${imageName}.intoto.jsonl`,
  };
}

/** The supply files a record names (what the local step wrote), in a stable order. */
export function recordedSupplyFiles(supply: SupplyState | null | undefined): string[] {
  if (!supply?.files) return [];
  return SUPPLY_KINDS.map((k) => supply.files[k]).filter(
    (f): f is string => typeof f === 'string' && f !== '',
  );
}

/**
 * The supply record a --revise starts the new build with: the revision being left (published or released) is
 * the baseline its content is compared with. A rebuild of an unchanged build keeps the baseline it had.
 */
export function supplyForRevise(
  old: SupplyState | null | undefined,
  oldRevision: number,
  bumped: boolean,
): SupplyState | null {
  const baseline = bumped
    ? { revision: oldRevision, content_digest: old?.content_digest ?? null }
    : (old?.baseline ?? null);
  if (!baseline) return null;
  return { content_digest: '', packages: 0, files: {}, baseline, unchanged_as: null };
}

/** The revision a build's content equals, when it equals its baseline's. */
export function unchangedAs(supply: SupplyState): number | null {
  const b = supply.baseline;
  return b?.content_digest && b.content_digest === supply.content_digest ? b.revision : null;
}
