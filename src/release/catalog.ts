// The release catalog: the data alpinelinux.org/cloud renders (releases.yaml) and a machine-readable catalog.json
// with the newest released revision of every variant and "latest" aliases. Both come from the metadata in storage:
// this module reads storage and writes the files; what goes in them is ./catalog-model.ts.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { stringify } from 'yaml';
import { getCloud } from '../clouds/index.js';
import type { CloudPlugin } from '../clouds/types.js';
import type { Image } from '../state/image.js';
import type { StoragePool } from '../storage/types.js';
import { errorMessage } from '../util/errors.js';
import { parseChecksum, writeFileAtomic } from '../util/fs.js';
import { redactText } from '../util/redact.js';
import {
  buildCatalog,
  buildSiteData,
  type Catalog,
  downloadBase,
  entryFor,
  newestReleased,
} from './catalog-model.js';
import { retrieveSome, type StoredRevision, scanStorage } from './revisions.js';

export type { Catalog, CatalogEntry } from './catalog-model.js';

export const SITE_FILE = 'releases.yaml';
export const CATALOG_FILE = 'catalog.json';

export interface CatalogContext {
  /** every resolved variant (not only the selected ones) */
  readonly images: readonly Image[];
  readonly pool: StoragePool;
  readonly outDir: string;
  readonly log: Logger;
  /** cloud plugins, for region and launch URLs (default: the registry, clouds/index.ts getCloud) */
  readonly clouds?: (name: string) => CloudPlugin | undefined;
  /** clock, for tests */
  readonly now?: () => Date;
}

async function fetchChecksums(
  chosen: readonly StoredRevision[],
  ctx: CatalogContext,
  listings: Map<string, string[]>,
  problems: string[],
): Promise<Map<StoredRevision, string>> {
  const out = new Map<StoredRevision, string>();
  const byUrl = new Map<string, StoredRevision[]>();
  for (const r of chosen) byUrl.set(r.storageUrl, [...(byUrl.get(r.storageUrl) ?? []), r]);
  const tmp = await mkdtemp(join(tmpdir(), 'cib-catalog-'));
  try {
    let n = 0;
    for (const [url, revs] of byUrl) {
      const listed = new Set(listings.get(url) ?? []);
      const want = revs.map((r) => `${r.uploadFile}.sha512`).filter((f) => listed.has(f));
      const dir = join(tmp, String(n++));
      const got = await retrieveSome(ctx.pool.get(url), dir, want, listed, ctx.log, problems);
      for (const r of revs) {
        const f = `${r.uploadFile}.sha512`;
        if (!got.has(f)) {
          if (!listed.has(f)) {
            const msg = `${url}/${f}: missing; catalog entry ${r.name} has no checksum`;
            ctx.log.warn(msg);
            problems.push(msg);
          }
          continue;
        }
        try {
          out.set(r, parseChecksum(await readFile(join(dir, f), 'utf8')));
        } catch (err) {
          const msg = `${url}/${f}: ${errorMessage(err)}`;
          ctx.log.warn(msg);
          problems.push(msg);
        }
      }
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return out;
}

function pluginFor(ctx: CatalogContext, cloud: string): CloudPlugin | undefined {
  try {
    return (ctx.clouds ?? getCloud)(cloud);
  } catch {
    return undefined;
  }
}

export interface CatalogResult {
  files: string[];
  catalog: Catalog;
  problems: string[];
}

/** Read storage, choose the newest released revision per variant, and write both files atomically. */
export async function generateCatalog(ctx: CatalogContext): Promise<CatalogResult> {
  const now = ctx.now?.() ?? new Date();
  const scan = await scanStorage(ctx.images, ctx.pool, ctx.log);
  const problems = [...scan.problems];
  const newest = newestReleased(scan.revisions);
  // in images.yaml order
  const chosen = ctx.images.map((i) => newest.get(i)).filter((r): r is StoredRevision => r !== undefined);
  for (const image of ctx.images) {
    if (image.storageUrl && !newest.has(image)) {
      ctx.log.debug({ image: image.config.config_key }, 'no released revision in storage');
    }
  }
  if (ctx.images.some((i) => i.storageUrl && !downloadBase(i))) {
    ctx.log.warn('download_url is not set for some images: their catalog entries have no URLs');
  }
  const checksums = await fetchChecksums(chosen, ctx, scan.listings, problems);
  const pairs = chosen.map((r) => ({
    r,
    e: entryFor(
      r,
      checksums.get(r),
      new Set(scan.listings.get(r.storageUrl) ?? []),
      pluginFor(ctx, r.image.config.cloud),
      (msg) => ctx.log.warn(msg),
    ),
  }));
  const catalog = buildCatalog(
    pairs.map((p) => p.e),
    now,
  );
  const site = buildSiteData(pairs, now);
  const sitePath = join(ctx.outDir, SITE_FILE);
  const catalogPath = join(ctx.outDir, CATALOG_FILE);
  await writeFileAtomic(sitePath, redactText(stringify(site, { lineWidth: 0 })));
  await writeFileAtomic(catalogPath, redactText(`${JSON.stringify(catalog, null, 2)}\n`));
  ctx.log.info(
    { images: catalog.images.length, versions: catalog.versions.length, outDir: ctx.outDir },
    `catalog: ${catalog.images.length} released image(s) in ${catalog.versions.length} version(s) written to ${ctx.outDir}`,
  );
  return { files: [sitePath, catalogPath], catalog, problems };
}
