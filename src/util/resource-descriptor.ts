/**
 * An in-toto ResourceDescriptor: one input of a build (ISO, minirootfs, package, repository index) or one
 * output, named by URI or name and pinned by its digests. The local builders record their inputs with it and
 * the supply chain writes them into the provenance (src/supply/provenance.ts), so it is shared vocabulary.
 */
export interface ResourceDescriptor {
  uri?: string;
  name?: string;
  digest: Record<string, string>;
  annotations?: Record<string, unknown>;
}
