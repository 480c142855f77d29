// Finding every stored revision of the configured variants (for the catalog and for prune).
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pLimit from 'p-limit';
import type { Logger } from 'pino';
import type { Image, ImageMetadata } from '../state/image.js';
import { parseMetadata } from '../state/metadata.js';
import type { Storage, StoragePool } from '../storage/types.js';
import { errorMessage, UserError } from '../util/errors.js';

/** One revision of one variant as found in storage. */
export interface StoredRevision {
  /** the configured variant it belongs to */
  readonly image: Image;
  readonly storageUrl: string;
  /** base name of this revision's files, e.g. "aws_alpine-3.20.3-x86_64-bios-tiny-r1" */
  readonly name: string;
  readonly revision: number;
  readonly release: string;
  readonly imageKey: string;
  /** the metadata (<name>.yaml); undefined for files left without metadata */
  readonly meta?: ImageMetadata;
  /** every stored file of this revision: image, checksums, signature, metadata */
  readonly files: string[];
  /** the image file (as stored, or as it would be named when missing) */
  readonly uploadFile: string;
}

export interface ScanResult {
  revisions: StoredRevision[];
  /** every file listed per storage URL */
  listings: Map<string, string[]>;
  /** metadata that could not be read (logged as warnings too); such revisions are left out of `revisions` */
  problems: string[];
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

interface Matcher {
  image: Image;
  /** metadata of any release of this variant: groups rel (when the name holds the release) and rev */
  wide: RegExp;
  /** any file of the configured release: group 1 = revision, group 2 = the rest after the dot */
  exact: RegExp;
  /** what follows the base name in the image file, e.g. ".vhd" or ".qcow2.bz2" */
  uploadSuffix: string;
}

function matcherFor(image: Image): Matcher {
  const MARK = '\u0000';
  const [prefix, suffix] = image.nameFor(MARK).split(MARK) as [string, string];
  const release = image.config.release;
  const wideHasRelease = Boolean(release) && (prefix.includes(release) || suffix.includes(release));
  // the release's first occurrence is captured, later ones must repeat it
  let seen = false;
  const wideParts = (s: string) =>
    s
      .split(release)
      .map(escapeRe)
      .reduce((acc, part, i) => {
        if (i === 0) return part;
        const rel = seen ? '\\k<rel>' : '(?<rel>[^-/]+)';
        seen = true;
        return `${acc}${rel}${part}`;
      }, '');
  const wide = wideHasRelease
    ? new RegExp(`^${wideParts(prefix)}(?<rev>\\d+)${wideParts(suffix)}\\.yaml$`)
    : new RegExp(`^${escapeRe(prefix)}(?<rev>\\d+)${escapeRe(suffix)}\\.yaml$`);
  const exact = new RegExp(`^${escapeRe(prefix)}(\\d+)${escapeRe(suffix)}\\.(.+)$`);
  return { image, wide, exact, uploadSuffix: image.uploadFile.slice(image.imageName.length) };
}

/** Does a metadata file (of any release) describe this variant? */
function sameVariant(meta: ImageMetadata, image: Image): boolean {
  const c = image.config;
  if (meta.image_key && meta.image_key === c.image_key) return true;
  const m = meta as unknown as Record<string, unknown>;
  for (const k of ['version', 'arch', 'firmware', 'bootstrap', 'cloud'] as const) {
    if (m[k] !== undefined && String(m[k]) !== String(c[k])) return false;
  }
  if (m.machine !== undefined && c.machine !== undefined && String(m.machine) !== String(c.machine))
    return false;
  if (m.project !== undefined && c.project !== undefined && String(m.project) !== String(c.project))
    return false;
  return true;
}

function filesOf(all: readonly string[], base: string): string[] {
  return all.filter((f) => f.startsWith(`${base}.`)).sort();
}

const SIDE_FILE = /\.(sha512|sha256|asc|sig)$/;

/** The image file among a revision's files: the configured name when present, else the one non-side file. */
function pickUploadFile(files: readonly string[], base: string, expectedSuffix: string): string {
  const expected = `${base}${expectedSuffix}`;
  if (files.includes(expected)) return expected;
  const candidates = files.filter((f) => !SIDE_FILE.test(f) && f !== `${base}.yaml`);
  return candidates.length === 1 ? candidates[0]! : expected;
}

/** Copy files from storage into dir; a batch that fails is retried file by file so one bad file costs only itself. */
export async function retrieveSome(
  storage: Storage,
  dir: string,
  files: readonly string[],
  listed: ReadonlySet<string>,
  log: Logger,
  problems: string[],
): Promise<Set<string>> {
  const got = new Set<string>();
  const withSum = files.filter((f) => listed.has(`${f}.sha512`));
  const without = files.filter((f) => !listed.has(`${f}.sha512`));
  for (const [group, checksum] of [
    [withSum, true],
    [without, false],
  ] as const) {
    if (group.length === 0) continue;
    try {
      await storage.retrieve(dir, group, { checksum });
      for (const f of group) got.add(f);
    } catch {
      for (const f of group) {
        try {
          await storage.retrieve(dir, [f], { checksum });
          got.add(f);
        } catch (err) {
          const msg = `${storage.url}/${f}: cannot retrieve: ${errorMessage(err)}`;
          log.warn(msg);
          problems.push(msg);
        }
      }
    }
  }
  return got;
}

/**
 * List every storage location of the given variants once, read every revision's metadata (of any release of the
 * variant's version, so older point releases are found too) and group each revision's files. Files of the
 * configured release left without metadata are returned too (meta undefined).
 */
export async function scanStorage(
  images: readonly Image[],
  pool: StoragePool,
  log: Logger,
): Promise<ScanResult> {
  const byUrl = new Map<string, Image[]>();
  for (const image of images) {
    const url = image.storageUrl;
    if (!url) {
      log.warn({ image: image.config.config_key }, `${image.config.config_key}: no storage_url; skipped`);
      continue;
    }
    byUrl.set(url, [...(byUrl.get(url) ?? []), image]);
  }
  const revisions: StoredRevision[] = [];
  const listings = new Map<string, string[]>();
  const problems: string[] = [];
  const tmp = await mkdtemp(join(tmpdir(), 'cib-scan-'));
  try {
    const limit = pLimit(4);
    const scanOne = async (url: string, group: Image[], n: number): Promise<void> => {
      const storage = pool.get(url);
      let files: string[];
      try {
        files = (await storage.list()).sort();
      } catch (err) {
        throw new UserError(`${url}: cannot list storage: ${errorMessage(err)}`);
      }
      listings.set(url, files);
      const listed = new Set(files);
      const matchers = group.map(matcherFor);
      // metadata file -> the variants whose name pattern it matches
      const candidates = new Map<string, { m: Matcher; release: string; revision: number }[]>();
      for (const f of files) {
        for (const m of matchers) {
          const hit = m.wide.exec(f);
          if (!hit) continue;
          const release = hit.groups?.rel ?? m.image.config.release;
          candidates.set(f, [
            ...(candidates.get(f) ?? []),
            { m, release, revision: Number(hit.groups?.rev) },
          ]);
        }
      }
      const dir = join(tmp, String(n));
      const got = await retrieveSome(storage, dir, [...candidates.keys()], listed, log, problems);
      // a revision whose metadata cannot be read is never taken for one without metadata
      const claimed = new Set<string>();
      for (const [file, cands] of candidates) {
        if (!got.has(file)) {
          claimed.add(file.slice(0, -'.yaml'.length));
          continue;
        }
        let meta: ImageMetadata;
        try {
          meta = parseMetadata(await readFile(join(dir, file), 'utf8'), `${url}/${file}`).meta;
        } catch (err) {
          const msg = errorMessage(err);
          log.warn(msg);
          problems.push(msg);
          claimed.add(file.slice(0, -'.yaml'.length));
          continue;
        }
        const exactKey = cands.find((c) => meta.image_key && meta.image_key === c.m.image.config.image_key);
        const match = exactKey ?? cands.find((c) => sameVariant(meta, c.m.image));
        if (!match) continue;
        const base = file.slice(0, -'.yaml'.length);
        const own = filesOf(files, base);
        claimed.add(base);
        const revision =
          meta.revision !== undefined && meta.revision !== null ? Number(meta.revision) : match.revision;
        revisions.push({
          image: match.m.image,
          storageUrl: url,
          name: base,
          revision: Number.isFinite(revision) ? revision : match.revision,
          release: meta.release ? String(meta.release) : match.release,
          imageKey: meta.image_key ? String(meta.image_key) : match.m.image.config.image_key,
          meta,
          files: own,
          uploadFile: pickUploadFile(own, base, match.m.uploadSuffix),
        });
      }
      // files of the configured release without metadata (a crash between upload and metadata, or a half prune)
      for (const m of matchers) {
        const orphans = new Map<string, number>();
        for (const f of files) {
          const hit = m.exact.exec(f);
          if (!hit) continue;
          const base = f.slice(0, f.length - hit[2]!.length - 1);
          if (!claimed.has(base)) orphans.set(base, Number(hit[1]));
        }
        for (const [base, revision] of orphans) {
          claimed.add(base);
          const own = filesOf(files, base);
          revisions.push({
            image: m.image,
            storageUrl: url,
            name: base,
            revision,
            release: m.image.config.release,
            imageKey: m.image.config.image_key,
            files: own,
            uploadFile: pickUploadFile(own, base, m.uploadSuffix),
          });
        }
      }
    };
    await Promise.all([...byUrl].map(([url, group], n) => limit(() => scanOne(url, group, n))));
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  revisions.sort((a, b) => a.storageUrl.localeCompare(b.storageUrl) || a.name.localeCompare(b.name));
  return { revisions, listings, problems };
}

/** Compare Alpine releases: "3.20.10" > "3.20.9" > "3.20.9_rc1"; dates (edge) compare as numbers. */
export function compareRelease(a: string, b: string): number {
  const parse = (s: string) => {
    const m = /^(\d+(?:\.\d+)*)(?:_rc(\d+))?$/.exec(s);
    if (!m) return undefined;
    return {
      nums: m[1]!.split('.').map(Number),
      rc: m[2] === undefined ? Number.POSITIVE_INFINITY : Number(m[2]),
    };
  };
  const pa = parse(a);
  const pb = parse(b);
  if (!pa || !pb) return a.localeCompare(b);
  for (let i = 0; i < Math.max(pa.nums.length, pb.nums.length); i++) {
    const d = (pa.nums[i] ?? -1) - (pb.nums[i] ?? -1);
    if (d !== 0) return d;
  }
  return pa.rc === pb.rc ? 0 : pa.rc < pb.rc ? -1 : 1;
}

/** Compare versions ("3.9" < "3.10"); "edge" sorts after every numbered version. */
export function compareVersion(a: string, b: string): number {
  if (a === b) return 0;
  if (a === 'edge') return 1;
  if (b === 'edge') return -1;
  return compareRelease(a, b);
}
