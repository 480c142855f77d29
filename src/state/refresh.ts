import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import pLimit from 'p-limit';
import type { Logger } from 'pino';
import type { OptionalStep, Step } from '../steps/steps.js';
import type { StoragePool } from '../storage/types.js';
import { errorMessage, UserError } from '../util/errors.js';
import { exists } from '../util/fs.js';
import { needsTest } from './boot-test.js';
import type { Image } from './image.js';
import { type ImageState, stateAfter } from './image-state.js';
import { readMetadata, revisionFromName } from './metadata.js';
import { type Plan, type PlanInput, planActions } from './plan.js';

export interface StateContext {
  readonly target: Step;
  readonly disable: readonly OptionalStep[];
  readonly revise: boolean;
  readonly pool: StoragePool;
  /** actions supported by a cloud's plugin */
  readonly cloudActions: (cloud: string) => ReadonlySet<string>;
  readonly parallel: number;
  readonly log: Logger;
  /** --publish-unchanged */
  readonly publishUnchanged?: boolean;
}

export type MetadataSource = 'storage' | 'local' | 'none';

/** One selected image after the state step: its state is loaded, its actions are planned. */
export interface PlannedImage {
  readonly image: Image;
  readonly plan: Plan;
  /** where the latest revision's metadata came from */
  readonly source: MetadataSource;
  /** the local metadata is newer than storage's (a run stopped between the two writes): store it again */
  readonly unsynced: boolean;
}

async function localRevisions(image: Image): Promise<number[]> {
  let files: string[];
  try {
    files = await readdir(image.localDir);
  } catch {
    return [];
  }
  return files.map((f) => revisionFromName(image, f)).filter((r): r is number => r !== undefined);
}

function newer(a: ImageState | undefined, b: ImageState | undefined): boolean {
  if (!a) return false;
  if (!b) return true;
  return (a.metadata_updated ?? '') > (b.metadata_updated ?? '');
}

/**
 * Find the latest revision of one variant in storage and locally, load its metadata (storage wins unless the
 * local copy is newer, e.g. after a crash between the local write and the upload), and record it as the image's
 * state. Metadata that fails its checks is refused before it is copied into work/.
 */
export async function loadLatestMetadata(
  image: Image,
  pool: StoragePool,
  listDir: (url: string) => Promise<string[]> = (url) => pool.get(url).list(),
): Promise<{ source: MetadataSource; unsynced: boolean }> {
  image.record(stateAfter.revision(image.state, 0));
  const storage = image.storageUrl ? pool.get(image.storageUrl) : undefined;
  const remoteFiles = image.storageUrl ? await listDir(image.storageUrl) : [];
  const remote = remoteFiles
    .map((f) => revisionFromName(image, f))
    .filter((r): r is number => r !== undefined);
  const local = await localRevisions(image);
  if (remote.length === 0 && local.length === 0) return { source: 'none', unsynced: false };
  const latest = Math.max(...remote, ...local);
  image.record(stateAfter.revision(image.state, latest));
  const file = image.metadataFile;
  const localMeta = local.includes(latest) ? (await readMetadata(image.metadataPath))?.state : undefined;
  let meta = localMeta;
  let source: MetadataSource = 'local';
  let unsynced = false;
  if (storage && remote.includes(latest)) {
    const tmpDir = join(image.localDir, '.remote');
    await mkdir(tmpDir, { recursive: true });
    try {
      await storage.retrieve(tmpDir, [file], { checksum: true });
      const remoteMeta = (await readMetadata(join(tmpDir, file), `${file} in storage`))?.state;
      if (!localMeta || !newer(localMeta, remoteMeta)) {
        await rename(join(tmpDir, file), image.metadataPath);
        if (await exists(join(tmpDir, `${file}.sha512`))) {
          await rename(join(tmpDir, `${file}.sha512`), `${image.metadataPath}.sha512`);
        }
        meta = remoteMeta;
        source = 'storage';
      } else {
        unsynced = true;
      }
    } finally {
      await rm(tmpDir, { recursive: true, force: true });
    }
  }
  if (!meta) return { source: 'none', unsynced: false };
  if (meta.revision !== latest) {
    throw new UserError(
      `${image.metadataFile}: metadata says revision ${String(meta.revision)}, its name says r${latest}`,
    );
  }
  image.record(meta);
  if (source === 'local' && meta.uploaded && !remote.includes(latest)) {
    // stopped after the local metadata write of the upload step, before the metadata reached storage:
    // the upload is not finished until storage has the metadata, so it runs again (and overwrites)
    image.record(stateAfter.uploadUnconfirmed(image.state));
  }
  return { source, unsynced };
}

/** The state step: load every selected variant's latest metadata and plan its actions (parallel, bounded). */
export async function refreshState(images: readonly Image[], ctx: StateContext): Promise<PlannedImage[]> {
  // metadata look-ups are small and network-bound: more of them in flight than builds
  const limit = pLimit(Math.max(ctx.parallel, 32));
  // variants share storage directories (version/cloud/arch): list each directory once
  const listings = new Map<string, Promise<string[]>>();
  const listDir = (url: string) => {
    let l = listings.get(url);
    if (!l) {
      l = ctx.pool.get(url).list();
      listings.set(url, l);
    }
    return l;
  };
  return Promise.all(
    images.map((image) =>
      limit(async () => {
        let loaded: { source: MetadataSource; unsynced: boolean };
        try {
          loaded = await loadLatestMetadata(image, ctx.pool, listDir);
        } catch (err) {
          throw err instanceof UserError
            ? err
            : new UserError(`${image.config.config_key}: cannot load state: ${errorMessage(err)}`);
        }
        const s = image.state;
        const input: PlanInput = {
          target: ctx.target,
          revision: s.revision,
          built: s.built,
          uploaded: s.uploaded,
          imported: s.imported,
          signed: s.signed,
          published: s.published,
          released: s.released,
          localBuild: await exists(image.uploadPath),
          disable: ctx.disable,
          revise: ctx.revise,
          cloudActions: ctx.cloudActions(image.config.cloud),
          canSign: image.signingConfigured,
          unchangedAs: s.supply?.unchanged_as ?? null,
          publishUnchanged: ctx.publishUnchanged ?? false,
          testNeeded: needsTest(s.boot_test, s.built),
        };
        const plan = planActions(input);
        if (ctx.target === 'state') {
          // `state` also shows what a rollback would undo, without doing it
          const preview = planActions({ ...input, target: 'rollback', revise: false });
          plan.undo = preview.undo;
          plan.rollbackBlocked = preview.rollbackBlocked;
        }
        return { image, plan, ...loaded };
      }),
    ),
  );
}
