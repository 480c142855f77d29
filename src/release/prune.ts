// Prune: old revisions, end-of-life versions and unreleased leftovers, in storage and in the clouds.
import pLimit from 'p-limit';
import type { Logger } from 'pino';
import type { CloudContext, CloudImage, CloudPlugin } from '../clouds/types.js';
import type { Image } from '../state/image.js';
import type { StoragePool } from '../storage/types.js';
import { errorMessage, UserError } from '../util/errors.js';
import { type StoredRevision, scanStorage } from './revisions.js';

export interface PruneContext {
  readonly images: readonly Image[];
  readonly pool: StoragePool;
  readonly clouds: (name: string) => CloudPlugin;
  readonly cloudContext: CloudContext;
  readonly really: boolean;
  readonly now: Date;
  readonly log: Logger;
  /** storage only: no cloud is listed (no cloud credentials needed); cloud images stay as they are */
  readonly storageOnly?: boolean;
}

export type PruneReason = 'old-revision' | 'end-of-life' | 'unreleased' | 'leftover';

export interface PruneItem {
  where: 'storage' | 'cloud';
  what: string;
  reason: PruneReason;
  removed: boolean;
  imageKey?: string;
  revision?: number;
  /** image name (storage: base name of the revision's files; cloud: the image's name there) */
  name?: string;
  /** storage */
  storageUrl?: string;
  files?: string[];
  /** cloud */
  cloud?: string;
  region?: string;
  id?: string;
  public?: boolean;
  created?: string;
  lastLaunched?: string;
  snapshotIds?: string[];
  /** why it could not be removed (with really) */
  error?: string;
}

interface KeyInfo {
  /** revision -> released */
  revs: Map<number, boolean>;
  newest: number;
  /** latest end of life seen for this image_key (ms), and the version it belongs to */
  eol?: number;
  version?: string;
  /** storage holds metadata for this image_key (so its release state is known) */
  inStorage: boolean;
}

function dateMs(v: unknown): number | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  const t = Date.parse(String(v));
  return Number.isFinite(t) ? t : undefined;
}

function info(table: Map<string, KeyInfo>, key: string): KeyInfo {
  let k = table.get(key);
  if (!k) {
    k = { revs: new Map(), newest: -1, inStorage: false };
    table.set(key, k);
  }
  return k;
}

function noteEol(k: KeyInfo, eol: unknown, version: unknown): void {
  const t = dateMs(eol);
  if (t !== undefined && (k.eol === undefined || t > k.eol)) k.eol = t;
  if (version !== undefined && version !== null && version !== '') k.version = String(version);
}

function noteRev(k: KeyInfo, rev: number, released: boolean): void {
  k.revs.set(rev, Boolean(k.revs.get(rev)) || released);
  if (rev > k.newest) k.newest = rev;
}

/** A cloud image's variant and revision: from its tags, else by its name matching a stored revision. */
function classify(
  img: CloudImage,
  cloud: string,
  byName: Map<string, StoredRevision>,
): { imageKey: string; revision: number } | undefined {
  const key = img.tags.image_key;
  const rev = img.tags.revision;
  if (key && rev !== undefined && /^\d+$/.test(rev)) return { imageKey: key, revision: Number(rev) };
  const stored = byName.get(img.name) ?? byName.get(`${cloud}_${img.name}`);
  if (stored) return { imageKey: stored.imageKey, revision: stored.revision };
  return undefined;
}

function decide(k: KeyInfo, rev: number, now: number): PruneReason | undefined {
  if (k.eol !== undefined && k.eol < now) return 'end-of-life';
  let newestReleased = -1;
  for (const [r, released] of k.revs) if (released && r > newestReleased) newestReleased = r;
  if (rev < newestReleased) return 'old-revision';
  if (rev < k.newest && !k.revs.get(rev)) return 'unreleased';
  return undefined;
}

interface ListedCloudImage {
  cloud: string;
  plugin: CloudPlugin;
  img: CloudImage;
}

async function listClouds(ctx: PruneContext): Promise<ListedCloudImage[]> {
  const projectsByCloud = new Map<string, Set<string>>();
  for (const i of ctx.images) {
    const set = projectsByCloud.get(i.config.cloud) ?? new Set<string>();
    set.add(i.config.project);
    projectsByCloud.set(i.config.cloud, set);
  }
  const out: ListedCloudImage[] = [];
  for (const [cloud, projects] of projectsByCloud) {
    let plugin: CloudPlugin;
    try {
      plugin = ctx.clouds(cloud);
    } catch (err) {
      ctx.log.warn(
        `prune: no plugin for cloud ${cloud} (${errorMessage(err)}); its cloud images are not checked`,
      );
      continue;
    }
    if (!plugin.actions.has('list') || !plugin.listImages) {
      ctx.log.debug(`prune: cloud ${cloud} cannot list images; only storage is pruned`);
      continue;
    }
    for (const project of projects) {
      let imgs: CloudImage[];
      // said before the plugin looks up credentials, which can take a while (e.g. the AWS chain's IMDS probe)
      ctx.log.info(
        `prune: listing ${cloud} images of project ${project} (needs ${cloud} credentials; --storage-only skips the clouds)`,
      );
      try {
        imgs = await plugin.listImages({ project }, ctx.cloudContext);
      } catch (err) {
        throw new UserError(`prune: cannot list ${cloud} images of project ${project}: ${errorMessage(err)}`);
      }
      ctx.log.info(`prune: ${imgs.length} ${cloud} image(s) of project ${project}`);
      for (const img of imgs) out.push({ cloud, plugin, img });
    }
  }
  return out;
}

function describeCloud(cloud: string, img: CloudImage): string {
  if (img.kind === 'import-bucket')
    return `${cloud} temporary import bucket ${img.id} (left by a killed import)`;
  if (img.kind === 'snapshot')
    return `${cloud} ${img.region} snapshot ${img.id} of ${img.name} (left without an image)`;
  const vis = img.public ? 'public' : 'private';
  const launched = img.lastLaunched ? `last launched ${img.lastLaunched}` : 'never launched';
  const snaps = img.snapshotIds.length > 0 ? `snapshots ${img.snapshotIds.join(',')}` : 'no snapshots';
  return `${cloud} ${img.region} ${img.id} ${img.name} (${vis}, ${launched}, ${snaps})`;
}

/** Work out what the policy selects; nothing is changed. */
export async function planPrune(ctx: PruneContext): Promise<{
  items: PruneItem[];
  storage: Map<PruneItem, StoredRevision>;
  cloud: Map<PruneItem, ListedCloudImage>;
}> {
  const now = ctx.now.getTime();
  const urls = new Set(ctx.images.map((i) => i.storageUrl).filter(Boolean));
  ctx.log.info(
    `prune: checking storage of ${ctx.images.length} variant(s) (${urls.size} storage location(s))${ctx.storageOnly ? ', not the clouds (--storage-only)' : ''}`,
  );
  const scan = await scanStorage(ctx.images, ctx.pool, ctx.log);
  if (scan.problems.length > 0) {
    // deciding without a revision's metadata could select the wrong revisions: fix storage first
    throw new UserError(
      `prune: ${scan.problems.length} metadata file(s) in storage cannot be read; repair or remove them, then ` +
        `prune again:\n  ${scan.problems.join('\n  ')}`,
    );
  }
  const cloudImages = ctx.storageOnly ? [] : await listClouds(ctx);
  const table = new Map<string, KeyInfo>();
  const byName = new Map<string, StoredRevision>();

  for (const r of scan.revisions) {
    byName.set(r.name, r);
    const k = info(table, r.imageKey);
    if (r.meta) {
      k.inStorage = true;
      noteEol(k, r.meta.end_of_life, r.meta.version);
    }
    noteRev(k, r.revision, Boolean(r.meta?.released));
  }
  // the configured revision counts as the newest of its image_key even before it reaches storage
  for (const i of ctx.images) {
    const k = info(table, i.config.image_key);
    noteEol(k, i.config.end_of_life, i.config.version);
    if (i.revision > k.newest) k.newest = i.revision;
    if (i.state.released) noteRev(k, i.revision, true);
  }
  const classified: { listed: ListedCloudImage; imageKey: string; revision: number }[] = [];
  const leftovers: ListedCloudImage[] = [];
  for (const listed of cloudImages) {
    // what killed runs left (import buckets, untagged import snapshots): removed whatever the revision
    if (listed.img.leftover) {
      leftovers.push(listed);
      continue;
    }
    const c = classify(listed.img, listed.cloud, byName);
    if (!c) {
      ctx.log.warn(
        `prune: ${describeCloud(listed.cloud, listed.img)}: no image_key/revision tags and no stored metadata; left alone`,
      );
      continue;
    }
    classified.push({ listed, ...c });
  }
  for (const { listed, imageKey, revision } of classified) {
    const k = info(table, imageKey);
    const t = listed.img.tags;
    noteEol(k, t.end_of_life, t.version);
    // when storage has no metadata for it, a public or published image counts as released (never prune blind)
    const released = Boolean(t.released) || (!k.inStorage && (listed.img.public || Boolean(t.published)));
    noteRev(k, revision, released);
  }
  // a version's end of life may have been extended since older revisions were made: the configured one counts
  const configuredEol = new Map<string, number>();
  for (const i of ctx.images) {
    const t = dateMs(i.config.end_of_life);
    if (t !== undefined && i.config.version !== 'edge') {
      configuredEol.set(i.config.version, Math.max(t, configuredEol.get(i.config.version) ?? t));
    }
  }
  for (const k of table.values()) {
    const t = k.version !== undefined ? configuredEol.get(k.version) : undefined;
    if (t !== undefined && (k.eol === undefined || t > k.eol)) k.eol = t;
  }

  const items: PruneItem[] = [];
  const storage = new Map<PruneItem, StoredRevision>();
  const cloud = new Map<PruneItem, ListedCloudImage>();
  for (const listed of leftovers) {
    const item: PruneItem = {
      where: 'cloud',
      what: describeCloud(listed.cloud, listed.img),
      reason: 'leftover',
      removed: false,
      name: listed.img.name,
      cloud: listed.cloud,
      region: listed.img.region,
      id: listed.img.id,
      public: false,
      ...(listed.img.created ? { created: listed.img.created } : {}),
      snapshotIds: [...listed.img.snapshotIds],
    };
    items.push(item);
    cloud.set(item, listed);
  }
  for (const { listed, imageKey, revision } of classified) {
    const reason = decide(table.get(imageKey)!, revision, now);
    if (!reason) continue;
    const img = listed.img;
    const item: PruneItem = {
      where: 'cloud',
      what: describeCloud(listed.cloud, img),
      reason,
      removed: false,
      imageKey,
      revision,
      name: img.name,
      cloud: listed.cloud,
      region: img.region,
      id: img.id,
      public: img.public,
      ...(img.created ? { created: img.created } : {}),
      ...(img.lastLaunched ? { lastLaunched: img.lastLaunched } : {}),
      snapshotIds: [...img.snapshotIds],
    };
    items.push(item);
    cloud.set(item, listed);
  }
  for (const r of scan.revisions) {
    const reason = decide(table.get(r.imageKey)!, r.revision, now);
    if (!reason) continue;
    const item: PruneItem = {
      where: 'storage',
      what: `${r.storageUrl}/${r.name}.* (${r.files.length} file${r.files.length === 1 ? '' : 's'})`,
      reason,
      removed: false,
      imageKey: r.imageKey,
      revision: r.revision,
      name: r.name,
      storageUrl: r.storageUrl,
      files: [...r.files],
    };
    items.push(item);
    storage.set(item, r);
  }
  items.sort((a, b) => (a.where === b.where ? a.what.localeCompare(b.what) : a.where === 'cloud' ? -1 : 1));
  return { items, storage, cloud };
}

/**
 * List (and with `really`, remove) what the policy selects. Cloud images go first; a revision whose cloud images
 * could not all be removed keeps its files in storage (its metadata still records them). In storage the metadata
 * goes before the image, so an interrupted prune leaves files the next run finds as unreleased leftovers.
 */
export async function prune(ctx: PruneContext): Promise<PruneItem[]> {
  const { items, storage, cloud } = await planPrune(ctx);
  for (const item of items) {
    ctx.log.info(
      { reason: item.reason },
      `prune: ${ctx.really ? 'removing' : 'would remove'} ${item.what} [${item.reason}]`,
    );
  }
  if (!ctx.really) {
    ctx.log.info(`prune: ${items.length} item(s) selected; nothing removed (use --really to remove them)`);
    return items;
  }
  const failedRevisions = new Set<string>();
  const limit = pLimit(4);
  await Promise.all(
    [...cloud].map(([item, listed]) =>
      limit(async () => {
        try {
          if (!listed.plugin.deleteCloudImage) throw new Error(`cloud ${listed.cloud} cannot delete images`);
          await listed.plugin.deleteCloudImage(listed.img, ctx.cloudContext);
          item.removed = true;
        } catch (err) {
          item.error = errorMessage(err);
          failedRevisions.add(`${item.imageKey}\u0000${item.revision}`);
          ctx.log.error(`prune: could not remove ${item.what}: ${item.error}`);
        }
      }),
    ),
  );
  for (const [item, r] of storage) {
    if (failedRevisions.has(`${r.imageKey}\u0000${r.revision}`)) {
      item.error = 'kept: some of its cloud images could not be removed';
      ctx.log.warn(`prune: ${item.what} ${item.error}`);
      continue;
    }
    try {
      const s = ctx.pool.get(r.storageUrl);
      const meta = r.files.filter((f) => f.startsWith(`${r.name}.yaml`));
      const rest = r.files.filter((f) => !f.startsWith(`${r.name}.yaml`));
      if (meta.length > 0) await s.remove(meta);
      if (rest.length > 0) await s.remove(rest);
      item.removed = true;
    } catch (err) {
      item.error = errorMessage(err);
      ctx.log.error(`prune: could not remove ${item.what}: ${item.error}`);
    }
  }
  const removed = items.filter((i) => i.removed).length;
  ctx.log.info(`prune: removed ${removed} of ${items.length} item(s)`);
  return items;
}

/** `prune --json`: schema documented in docs/prune.md. */
export function pruneJson(items: readonly PruneItem[], really: boolean): object {
  return {
    schema: 'cloud-image-builder/prune/v1',
    really,
    items: items.map((i) => ({
      where: i.where,
      reason: i.reason,
      what: i.what,
      removed: i.removed,
      error: i.error ?? null,
      image_key: i.imageKey ?? null,
      revision: i.revision ?? null,
      name: i.name ?? null,
      ...(i.where === 'storage'
        ? { storage_url: i.storageUrl ?? null, files: i.files ?? [] }
        : { cloud: i.cloud ?? null, region: i.region ?? null, id: i.id ?? null, public: i.public ?? null }),
    })),
  };
}

/** A plain-text report for stdout: one line per item, then totals per reason. */
export function formatPruneReport(items: readonly PruneItem[], really: boolean): string {
  const lines: string[] = [];
  for (const i of items) {
    const state = !really
      ? 'would remove'
      : i.removed
        ? 'removed'
        : `NOT removed (${i.error ?? 'unknown error'})`;
    lines.push(`${i.where}\t${i.reason}\t${state}\t${i.what}`);
  }
  const totals = new Map<string, number>();
  for (const i of items)
    totals.set(`${i.where} ${i.reason}`, (totals.get(`${i.where} ${i.reason}`) ?? 0) + 1);
  lines.push(
    items.length === 0
      ? 'nothing to prune'
      : `total: ${[...totals].map(([k, n]) => `${n} ${k}`).join(', ')}${really ? '' : ' (dry run: use --really to remove)'}`,
  );
  return `${lines.join('\n')}\n`;
}
