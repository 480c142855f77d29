// The state of one image: what the steps have done to its current revision. It is kept apart from the image's
// configuration (which is resolved once at `configs` and never changes during a run), read from and written to
// the per-image metadata files, and changed only through the one function per step result below.
//
// Adding a state field: add it to ImageState, give it a line in FIELDS (how it is read back, whether it is a
// cloud tag), and set it from the update function of the step result that produces it. Metadata, the state
// reload, `--revise` and rollback all follow FIELDS.

import { hasUnsafeText } from '../util/safe-name.js';
import { type BootTestRecord, readBootTest } from './boot-test.js';

/** One image revision's state. Immutable: every change makes a new record (see the update functions). */
export interface ImageState {
  /** the revision the state describes (`{revision}` in the image name) */
  readonly revision: number;
  /** ISO timestamps of the finished steps (null: not done) */
  readonly built: string | null;
  readonly uploaded: string | null;
  readonly imported: string | null;
  /** the cloud's id of the imported image, and the region it was imported to */
  readonly import_id: string | null;
  readonly import_region: string | null;
  readonly signed: string | null;
  readonly published: string | null;
  readonly released: string | null;
  /** region -> image id, for every region the image is published in */
  readonly artifacts: Readonly<Record<string, string>> | null;
  /** fingerprint of the key that signed the image */
  readonly signing_key_fingerprint: string | null;
  /** the build's supply chain: SBOMs, manifest, provenance and content digest (docs/supply-chain.md) */
  readonly supply: SupplyState | null;
  /** the latest boot test of this revision's build (the test step; src/state/boot-test.ts) */
  readonly boot_test: BootTestRecord | null;
  /** when the metadata was last written (used to tell the newer of a local and a stored copy) */
  readonly metadata_updated: string | null;
}

/** What the local step recorded about an image's supply chain. */
export interface SupplyState {
  /** "sha256:<hex>" of the root filesystem manifest */
  readonly content_digest: string;
  /** installed packages listed in the SBOMs */
  readonly packages: number;
  /** kind (spdx, cyclonedx, manifest, provenance) -> file name beside the image */
  readonly files: Readonly<Record<string, string>>;
  /** the published/released revision a --revise build is compared with */
  readonly baseline?: { readonly revision: number; readonly content_digest: string | null } | null;
  /** the build has the same content as this (published/released) revision */
  readonly unchanged_as?: number | null;
}

export type StateField = keyof ImageState;

/** How a field is read back from metadata (or a cloud tag): the value, or BAD when it has the wrong type. */
export const BAD: unique symbol = Symbol('bad');
type Reader<T> = (v: unknown) => T | typeof BAD;

interface FieldSpec<T> {
  readonly read: Reader<T>;
  /** what a good value looks like, for error messages */
  readonly expected: string;
  /** the value of a fresh revision */
  readonly empty: T;
  /** carried as a cloud image tag (and in the metadata's tag part) when set */
  readonly tag: boolean;
}

const readTimestamp: Reader<string | null> = (v) => {
  if (v === undefined || v === null || v === '') return null;
  if (v instanceof Date) return v.toISOString();
  return typeof v === 'string' && !hasUnsafeText(v) && !Number.isNaN(Date.parse(v)) ? v : BAD;
};
const readText: Reader<string | null> = (v) => {
  if (v === undefined || v === null || v === '') return null;
  return typeof v === 'string' && v.length <= 1024 && !hasUnsafeText(v) ? v : BAD;
};
const readRevision: Reader<number> = (v) => {
  if (v === undefined || v === null) return 0;
  const n = typeof v === 'string' && /^\d{1,9}$/.test(v) ? Number(v) : v;
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : BAD;
};
const readArtifacts: Reader<Record<string, string> | null> = (v) => {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'object' || Array.isArray(v)) return BAD;
  const out: Record<string, string> = {};
  for (const [k, id] of Object.entries(v)) {
    if (readText(k) === BAD || typeof id !== 'string' || readText(id) === BAD) return BAD;
    out[k] = id;
  }
  return out;
};

const DIGEST = /^sha256:[0-9a-f]{64}$/;
const readSupply: Reader<SupplyState | null> = (v) => {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'object' || Array.isArray(v)) return BAD;
  const o = v as Record<string, unknown>;
  const digest = o.content_digest;
  if (typeof digest !== 'string' || (digest !== '' && !DIGEST.test(digest))) return BAD;
  const packages = readRevision(o.packages ?? 0);
  if (packages === BAD) return BAD;
  const files: Record<string, string> = {};
  if (o.files !== undefined && o.files !== null) {
    if (typeof o.files !== 'object' || Array.isArray(o.files)) return BAD;
    for (const [k, f] of Object.entries(o.files)) {
      if (typeof f !== 'string' || readText(f) === BAD || f.includes('/')) return BAD;
      files[k] = f;
    }
  }
  let baseline: SupplyState['baseline'] = null;
  if (o.baseline !== undefined && o.baseline !== null) {
    const b = o.baseline as Record<string, unknown>;
    const rev = readRevision(b.revision);
    const bd = b.content_digest ?? null;
    if (
      typeof b !== 'object' ||
      rev === BAD ||
      (bd !== null && (typeof bd !== 'string' || !DIGEST.test(bd)))
    ) {
      return BAD;
    }
    baseline = { revision: rev, content_digest: bd as string | null };
  }
  let unchanged: number | null = null;
  if (o.unchanged_as !== undefined && o.unchanged_as !== null) {
    const u = readRevision(o.unchanged_as);
    if (u === BAD) return BAD;
    unchanged = u;
  }
  return { content_digest: digest, packages, files, baseline, unchanged_as: unchanged };
};

const readBootTestField: Reader<BootTestRecord | null> = (v) => {
  if (v === undefined || v === null) return null;
  return readBootTest(v) ?? BAD;
};

const TIMESTAMP = { read: readTimestamp, expected: 'an ISO date-time or null', empty: null, tag: true };

/** Every state field, in metadata order. */
const FIELDS: { readonly [K in StateField]: FieldSpec<ImageState[K]> } = {
  revision: { read: readRevision, expected: 'a whole number >= 0', empty: 0, tag: true },
  built: TIMESTAMP,
  uploaded: TIMESTAMP,
  imported: TIMESTAMP,
  import_id: { read: readText, expected: 'an image id or null', empty: null, tag: true },
  import_region: { read: readText, expected: 'a region name or null', empty: null, tag: true },
  signed: TIMESTAMP,
  published: TIMESTAMP,
  released: TIMESTAMP,
  artifacts: {
    read: readArtifacts,
    expected: 'a map of region to image id, or null',
    empty: null,
    tag: false,
  },
  signing_key_fingerprint: { read: readText, expected: 'a key fingerprint or null', empty: null, tag: false },
  supply: {
    read: readSupply,
    expected: 'a supply record (content_digest, packages, files, baseline, unchanged_as) or null',
    empty: null,
    tag: false,
  },
  boot_test: {
    read: readBootTestField,
    expected: 'a boot test record (status passed, failed or skipped, and its time) or null',
    empty: null,
    tag: false,
  },
  metadata_updated: { read: readTimestamp, expected: 'an ISO date-time', empty: null, tag: false },
};

/** The one list of state fields: metadata, the state reload, --revise and rollback all use it. */
export const STATE_FIELDS = Object.keys(FIELDS) as readonly StateField[];

/** State fields carried as cloud tags (besides the configuration's tags), in tag order. */
export const STATE_TAGS = STATE_FIELDS.filter((f) => FIELDS[f].tag && f !== 'revision') as readonly Exclude<
  StateField,
  'revision'
>[];

/** A fresh revision: nothing done yet. */
export function emptyState(revision = 0): ImageState {
  const s: Record<string, unknown> = {};
  for (const f of STATE_FIELDS) s[f] = FIELDS[f].empty;
  s.revision = revision;
  return Object.freeze(s) as unknown as ImageState;
}

export interface StateProblem {
  readonly field: StateField;
  readonly expected: string;
  readonly found: unknown;
}

/**
 * The state held in a metadata mapping (other keys are ignored), each field type-checked. Absent fields are
 * empty, so metadata written before a field existed stays readable. Returns the problems instead of a state when
 * any field has the wrong type.
 */
export function readState(
  data: Readonly<Record<string, unknown>>,
): { state: ImageState } | { problems: StateProblem[] } {
  const s: Record<string, unknown> = {};
  const problems: StateProblem[] = [];
  for (const f of STATE_FIELDS) {
    const spec = FIELDS[f] as FieldSpec<unknown>;
    const v = spec.read(data[f]);
    if (v === BAD) problems.push({ field: f, expected: spec.expected, found: data[f] });
    else s[f] = v;
  }
  if (problems.length > 0) return { problems };
  return { state: Object.freeze(s) as unknown as ImageState };
}

/** The state's tag values that are set (for cloud tags and the metadata's tag part). */
export function stateTags(s: ImageState): Partial<Record<(typeof STATE_TAGS)[number], string>> {
  const out: Partial<Record<(typeof STATE_TAGS)[number], string>> = {};
  for (const f of STATE_TAGS) {
    const v = s[f];
    if (typeof v === 'string' && v) out[f] = v;
  }
  return out;
}

function next(s: ImageState, change: Partial<ImageState>): ImageState {
  return Object.freeze({ ...s, ...change });
}

// ---- the one update function per step result ----

export interface ImportedResult {
  readonly imported: string;
  readonly import_id: string;
  readonly import_region: string;
}

/** What each step's result changes in the state. Nothing else changes an ImageState. */
export const stateAfter = {
  /** the state step found a newer stored revision, or --revise starts a new one: everything starts over */
  revision: (_s: ImageState, revision: number): ImageState => emptyState(revision),
  /** the local step wrote the SBOMs, manifest and provenance (or --revise set the baseline to compare with) */
  supplied: (s: ImageState, supply: SupplyState | null): ImageState => next(s, { supply }),
  /** the local step built the image */
  built: (s: ImageState, at: string): ImageState => next(s, { built: at }),
  /** the upload step stored the image (and its metadata follows) */
  uploaded: (s: ImageState, at: string): ImageState => next(s, { uploaded: at }),
  /** the upload was recorded locally but its metadata never reached storage: not finished */
  uploadUnconfirmed: (s: ImageState): ImageState => next(s, { uploaded: null }),
  /** the import step (or a publish that had to import again) imported the image */
  imported: (s: ImageState, r: ImportedResult): ImageState =>
    next(s, { imported: r.imported, import_id: r.import_id, import_region: r.import_region }),
  /** the sign step signed the image */
  signed: (s: ImageState, r: { signed: string; fingerprint?: string | undefined }): ImageState =>
    next(s, { signed: r.signed, ...(r.fingerprint ? { signing_key_fingerprint: r.fingerprint } : {}) }),
  /** the publish step published the image in some regions; `published` is set only when no region failed */
  published: (
    s: ImageState,
    r: { artifacts: Readonly<Record<string, string>>; published?: string | undefined },
  ): ImageState =>
    next(s, {
      artifacts: { ...(s.artifacts ?? {}), ...r.artifacts },
      ...(r.published ? { published: r.published } : {}),
    }),
  /** the test step booted and checked the image, or --disable test let it past untested */
  tested: (s: ImageState, r: BootTestRecord): ImageState => next(s, { boot_test: r }),
  /** the release step released the image */
  released: (s: ImageState, at: string): ImageState => next(s, { released: at }),
  /** rollback deleted the imported cloud image */
  importRemoved: (s: ImageState): ImageState =>
    next(s, { imported: null, import_id: null, import_region: null }),
  /** rollback removed the stored files */
  uploadRemoved: (s: ImageState): ImageState => next(s, { uploaded: null }),
  /** rollback (or --revise) removed the local build */
  localRemoved: (s: ImageState): ImageState => next(s, { built: null }),
  /** the metadata was written */
  metadataWritten: (s: ImageState, at: string): ImageState => next(s, { metadata_updated: at }),
} as const;
