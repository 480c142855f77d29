// Build provenance: an in-toto Statement v1 whose predicate is SLSA Provenance v1, one JSON line per image
// (<name>.intoto.jsonl). Subjects are the stored files of the image with their sha256; the build definition names
// the variant and the digests of the configuration it was resolved from; resolved dependencies are what went into
// the disk (builder root or ISO, every installed package, repository indexes).

import type { ResourceDescriptor } from '../util/resource-descriptor.js';
import type { ApkPackage } from './apkdb.js';
import { apkPurl, checksumHex } from './apkdb.js';

export const STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
export const SLSA_PROVENANCE_V1 = 'https://slsa.dev/provenance/v1';
export const BUILD_TYPE = 'https://github.com/alpinelinux/alpine-cloud-images/build/v1#cloud-image-builder';

export type { ResourceDescriptor };

export interface ProvenanceInput {
  /** stored files of this image: name and sha256 */
  subjects: readonly { name: string; sha256: string }[];
  variant: {
    config_key: string;
    image_key: string;
    name: string;
    revision: number;
    builder?: string;
  };
  /** configuration files (relative path -> sha256) and overlays (--custom dirs -> digest of their files) */
  configs: Readonly<Record<string, string>>;
  overlays: readonly { path: string; digest: string }[];
  /** inputs reported by the builder: minirootfs or ISO, repository indexes */
  inputs: readonly ResourceDescriptor[];
  packages: readonly ApkPackage[];
  release: string;
  contentDigest: string;
  tool: { name: string; version: string; commit?: string };
  started: Date;
  finished: Date;
  /** an id of this run (e.g. the host and process) */
  invocationId?: string;
}

export interface Statement {
  _type: typeof STATEMENT_TYPE;
  subject: { name: string; digest: { sha256: string } }[];
  predicateType: typeof SLSA_PROVENANCE_V1;
  predicate: {
    buildDefinition: {
      buildType: string;
      externalParameters: Record<string, unknown>;
      internalParameters?: Record<string, unknown>;
      resolvedDependencies: ResourceDescriptor[];
    };
    runDetails: {
      builder: { id: string; version: Record<string, string> };
      metadata: { invocationId?: string; startedOn: string; finishedOn: string };
      byproducts?: ResourceDescriptor[];
    };
  };
}

export function buildProvenance(input: ProvenanceInput): Statement {
  const packages: ResourceDescriptor[] = [...input.packages]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((p): ResourceDescriptor => {
      const sum = checksumHex(p.checksum);
      return {
        uri: apkPurl(p, input.release),
        name: `${p.name}-${p.version}.apk`,
        digest: sum ? { sha1: sum.hex } : ({} as Record<string, string>),
        annotations: { apk_checksum: p.checksum },
      };
    });
  return {
    _type: STATEMENT_TYPE,
    subject: [...input.subjects]
      .sort((a, b) => (a.name < b.name ? -1 : 1))
      .map((s) => ({ name: s.name, digest: { sha256: s.sha256 } })),
    predicateType: SLSA_PROVENANCE_V1,
    predicate: {
      buildDefinition: {
        buildType: BUILD_TYPE,
        externalParameters: {
          variant: input.variant.config_key,
          image_key: input.variant.image_key,
          image_name: input.variant.name,
          revision: input.variant.revision,
          ...(input.variant.builder ? { builder: input.variant.builder } : {}),
          configs: Object.fromEntries(Object.entries(input.configs).sort(([a], [b]) => (a < b ? -1 : 1))),
          overlays: input.overlays.map((o) => ({ path: o.path, digest: { sha256: o.digest } })),
        },
        resolvedDependencies: [...input.inputs, ...packages],
      },
      runDetails: {
        builder: {
          id: `${BUILD_TYPE}@${input.tool.version}`,
          version: {
            [input.tool.name]: input.tool.version,
            ...(input.tool.commit ? { commit: input.tool.commit } : {}),
          },
        },
        metadata: {
          ...(input.invocationId ? { invocationId: input.invocationId } : {}),
          startedOn: input.started.toISOString(),
          finishedOn: input.finished.toISOString(),
        },
        byproducts: [
          { name: 'rootfs-manifest', digest: { sha256: input.contentDigest.replace(/^sha256:/, '') } },
        ],
      },
    },
  };
}

/** One statement per line. */
export function serializeProvenance(s: Statement): string {
  return `${JSON.stringify(s)}\n`;
}
