// Alpine release metadata: releases.json (https://alpinelinux.org/releases.json or a file:// copy) and, for a
// version not listed there yet, a release candidate found in the mirror's package index (--cdn-url).
import { UserError } from '../util/errors.js';
import { listUrl, readUrl } from './fetch.js';

export const POSTS_URL = 'https://alpinelinux.org/posts/';

export interface VersionInfo {
  /** x.y or edge */
  readonly version: string;
  /** x.y.z (or x.y.z_rcN), or YYYYMMDD for edge */
  readonly release: string;
  /** YYYY-MM-DD */
  readonly end_of_life: string;
  readonly arches: readonly string[] | null;
  /** release notes web page, when there is one */
  readonly notes: string | null;
}

export interface ReleasesOptions {
  readonly releasesUrl: string;
  readonly cdnUrl: string;
  readonly now: Date;
}

function utcDate(d: Date): string {
  return d.toISOString().slice(0, 10);
}

/** today's UTC date as YYYYMMDD: the "release" of edge */
export function edgeRelease(now: Date): string {
  return utcDate(now).replaceAll('-', '');
}

/** tomorrow's UTC date as YYYY-MM-DD: end_of_life when releases.json has none */
export function tomorrow(now: Date): string {
  return utcDate(new Date(now.getTime() + 86_400_000));
}

interface RawRelease {
  version: string;
  date: string;
  notes?: string;
}

function bad(url: string, where: string, expected: string, got: unknown): UserError {
  return new UserError(`releases.json ${url}: ${where}: expected ${expected}, got ${JSON.stringify(got)}`);
}

export class AlpineReleases {
  readonly url: string;
  readonly cdnUrl: string;
  readonly now: Date;
  /** newest release branch (by branch_date), e.g. "3.22" */
  readonly latest: string;
  private readonly versions = new Map<string, VersionInfo>();
  private readonly pending = new Map<string, Promise<VersionInfo>>();

  private constructor(opts: ReleasesOptions, latest: string, versions: Map<string, VersionInfo>) {
    this.url = opts.releasesUrl;
    this.cdnUrl = opts.cdnUrl.replace(/\/+$/, '');
    this.now = opts.now;
    this.latest = latest;
    this.versions = versions;
  }

  static async load(opts: ReleasesOptions): Promise<AlpineReleases> {
    const hint = opts.releasesUrl.startsWith('file:')
      ? ''
      : ' (offline? pass --releases-url file://... or set ALPINE_RELEASES_URL)';
    const text = await readUrl(opts.releasesUrl, 'releases.json', hint);
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (err) {
      throw new UserError(`releases.json ${opts.releasesUrl}: not valid JSON (${(err as Error).message})`);
    }
    return AlpineReleases.parse(data, opts);
  }

  /** Build from parsed releases.json content (its shape is checked). */
  static parse(data: unknown, opts: ReleasesOptions): AlpineReleases {
    const url = opts.releasesUrl;
    if (typeof data !== 'object' || data === null || Array.isArray(data)) {
      throw bad(url, 'top level', 'an object', data);
    }
    const branches = (data as { release_branches?: unknown }).release_branches;
    if (!Array.isArray(branches)) throw bad(url, 'release_branches', 'a list', branches);
    const checked = branches.map((b, i) => {
      const where = `release_branches[${i}]`;
      if (typeof b !== 'object' || b === null || Array.isArray(b)) throw bad(url, where, 'an object', b);
      const o = b as Record<string, unknown>;
      if (typeof o.rel_branch !== 'string' || !o.rel_branch) {
        throw bad(url, `${where}.rel_branch`, 'a string such as "v3.20"', o.rel_branch);
      }
      for (const k of ['branch_date', 'eol_date'] as const) {
        if (o[k] !== undefined && (typeof o[k] !== 'string' || !/^\d{4}-\d{2}-\d{2}/.test(o[k] as string))) {
          throw bad(url, `${where}.${k}`, 'a YYYY-MM-DD date', o[k]);
        }
      }
      if (o.arches !== undefined && !Array.isArray(o.arches))
        throw bad(url, `${where}.arches`, 'a list', o.arches);
      const releases = o.releases;
      if (releases !== undefined && !Array.isArray(releases)) {
        throw bad(url, `${where}.releases`, 'a list', releases);
      }
      const rels: RawRelease[] = (releases ?? []).map((r: unknown, j: number) => {
        const w = `${where}.releases[${j}]`;
        if (typeof r !== 'object' || r === null) throw bad(url, w, 'an object', r);
        const rr = r as Record<string, unknown>;
        if (typeof rr.version !== 'string' || !rr.version)
          throw bad(url, `${w}.version`, 'a string', rr.version);
        if (typeof rr.date !== 'string') throw bad(url, `${w}.date`, 'a YYYY-MM-DD date', rr.date);
        if (rr.notes !== undefined && rr.notes !== null && typeof rr.notes !== 'string') {
          throw bad(url, `${w}.notes`, 'a string', rr.notes);
        }
        return {
          version: rr.version,
          date: rr.date,
          ...(typeof rr.notes === 'string' ? { notes: rr.notes } : {}),
        };
      });
      return {
        version: o.rel_branch.replace(/^v/, ''),
        branchDate: (o.branch_date as string | undefined) ?? '0000-00-00',
        eol: o.eol_date as string | undefined,
        arches: (o.arches as string[] | undefined) ?? null,
        releases: rels,
      };
    });
    // newest branch first; a stable sort keeps the file's order for equal dates
    const sorted = [...checked].sort((a, b) =>
      a.branchDate < b.branchDate ? 1 : a.branchDate > b.branchDate ? -1 : 0,
    );
    const versions = new Map<string, VersionInfo>();
    let latest: string | undefined;
    for (const b of sorted) {
      let release: string | null = null;
      let notes: string | null = null;
      if (b.releases.length > 0) {
        const newest = [...b.releases].sort((x, y) => (x.date < y.date ? 1 : x.date > y.date ? -1 : 0))[0]!;
        release = newest.version;
        if (newest.notes) notes = POSTS_URL + newest.notes.replace(/^posts\//, '').replace('.md', '.html');
      } else if (b.version === 'edge') {
        release = edgeRelease(opts.now);
      }
      // a branch without any release yet is looked up as a release candidate, like an unlisted version
      if (release === null) continue;
      if (latest === undefined && b.version !== 'edge') latest = b.version;
      versions.set(b.version, {
        version: b.version,
        release,
        end_of_life: b.eol ?? tomorrow(opts.now),
        arches: b.arches,
        notes,
      });
    }
    if (latest === undefined) {
      throw new UserError(
        `releases.json ${url}: no release branch with a release (need at least one x.y branch)`,
      );
    }
    return new AlpineReleases(opts, latest, versions);
  }

  /** Versions listed in releases.json (plus release candidates looked up so far). */
  known(): string[] {
    return [...this.versions.keys()];
  }

  private normalise(ver: string | undefined): string {
    if (!ver || ver === 'latest' || ver === 'latest-stable') return this.latest;
    return ver.replace(/^v(?=\d)/, '');
  }

  /** Release info for version x.y (or edge); a version not in releases.json is looked up as a release candidate. */
  async versionInfo(version?: string): Promise<VersionInfo> {
    const ver = this.normalise(version);
    const known = this.versions.get(ver);
    if (known) return known;
    let p = this.pending.get(ver);
    if (!p) {
      p = this.releaseCandidate(ver);
      this.pending.set(ver, p);
    }
    return p;
  }

  /** Mirror URL of a repository: <cdn>/v<x.y>/<repo>/<arch> (or <cdn>/edge/...). */
  repoUrl(repo: string, arch: string, version?: string): string {
    const ver = this.normalise(version);
    return `${this.cdnUrl}/${ver === 'edge' ? 'edge' : `v${ver}`}/${repo}/${arch}`;
  }

  /** The latest stable release's virt ISO, used to boot the build VM for every version. */
  virtIsoUrl(arch: string): string {
    const info = this.versions.get(this.latest)!;
    return `${this.cdnUrl}/v${this.latest}/releases/${arch}/alpine-virt-${info.release}-${arch}.iso`;
  }

  private async releaseCandidate(ver: string): Promise<VersionInfo> {
    if (!/^\d+\.\d+$/.test(ver)) {
      throw new UserError(
        `version "${ver}" is not in releases.json ${this.url} and is not an x.y version that could be a release candidate`,
      );
    }
    const repo = this.repoUrl('main', 'x86_64', ver);
    let names: string[];
    try {
      names = await listUrl(repo, `release candidate lookup for version ${ver}:`);
    } catch (err) {
      throw new UserError(
        `version "${ver}" is not in releases.json ${this.url}, and no release candidate could be found: ${(err as Error).message}`,
      );
    }
    const apk = names.map((n) => /^alpine-base-(\d.*)\.apk$/.exec(n)?.[1]).find((v) => v !== undefined);
    if (!apk) {
      throw new UserError(
        `version "${ver}" is not in releases.json ${this.url}, and ${repo} has no alpine-base package to take a release candidate from`,
      );
    }
    const release = apk.split('-')[0]!;
    const found = release.split('.').slice(0, 2).join('.');
    if (found !== ver) {
      throw new UserError(
        `version "${ver}": ${repo} holds alpine-base ${apk}, which belongs to version ${found}, not ${ver}`,
      );
    }
    const info: VersionInfo = {
      version: ver,
      release,
      end_of_life: tomorrow(this.now),
      arches: this.versions.get('edge')?.arches ?? null,
      notes: null,
    };
    this.versions.set(ver, info);
    return info;
  }
}
