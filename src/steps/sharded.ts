// `./build <step> --shard I/N`: one worker of many over one storage (docs/scale-out.md).
//
// The worker visits its own shard's images first, then everybody else's; it acts on an image only while it
// holds the image's lease in storage. Under the lease it loads the image's state from storage afresh (another
// worker may have done part of the work), runs the planned steps for that image alone, and releases the lease.
// Every write for the image goes through a pool that checks the lease first, and the metadata is written
// compare-and-swap, so a worker that lost its lease records nothing more. Images whose lease another live worker
// holds are visited again until they are done or their lease expires (the holder died): then one worker takes
// them over.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import pLimit from 'p-limit';
import type { ScaleOutOptions } from '../cli/options.js';
import { type ImagesFile, writeImagesYaml } from '../config/index.js';
import type { Image } from '../state/image.js';
import { refreshState } from '../state/refresh.js';
import { partition, shardOrder } from '../state/shard.js';
import type { ConditionalOps } from '../storage/conditional.js';
import { type Lease, LeaseLostError, LeaseManager, probeConditionalWrites } from '../storage/lease.js';
import type { Storage, StoragePool } from '../storage/types.js';
import { errorMessage, UserError } from '../util/errors.js';
import { hashFile, writeFileAtomic } from '../util/fs.js';
import type { RunContext, StepFailure } from './context.js';
import { runStep } from './image-steps.js';
import { saveMetadata } from './persist.js';
import { failureTable } from './report.js';
import { IMAGE_STEPS, type ImageStep } from './steps.js';

/** What happened to one image in this worker. */
export type ShardResult = 'done' | 'up-to-date' | 'failed' | 'failed-elsewhere' | 'lease-lost';

export interface ShardedOutcome {
  results: Map<string, { image: Image; result: ShardResult; steps: ImageStep[]; note?: string }>;
  failures: StepFailure[];
  leaseRequests: number;
}

export function leaseUrl(storageUrl: string): string {
  return `${storageUrl.replace(/\/+$/, '')}/.leases`;
}

function conditionalOf(storage: Storage): ConditionalOps {
  if (!storage.conditional) throw new UserError(`${storage.url}: this storage has no conditional writes`);
  return storage.conditional;
}

/**
 * Check every lease directory the images use before any sharded work: a store that does not really do
 * conditional writes would let two workers act on one image.
 */
export async function probeStores(images: readonly Image[], pool: StoragePool): Promise<void> {
  const noStorage = images.filter((i) => !i.storageUrl).map((i) => i.config.config_key);
  if (noStorage.length > 0) {
    throw new UserError(
      `--shard needs a storage_url shared by the workers; not set for: ${noStorage.slice(0, 5).join(', ')}` +
        (noStorage.length > 5 ? ` and ${noStorage.length - 5} more` : ''),
    );
  }
  const urls = [...new Set(images.map((i) => leaseUrl(i.storageUrl!)))];
  const problems: string[] = [];
  await Promise.all(
    urls.map(async (url) => {
      const storage = pool.get(url);
      const found = await probeConditionalWrites(conditionalOf(storage), (names) => storage.remove(names));
      if (found.length > 0) problems.push(`${storage.url}: ${found.join('; ')}`);
    }),
  );
  if (problems.length > 0) {
    throw new UserError(
      `refusing sharded mode: the storage does not do the conditional writes that keep workers apart:\n  ${problems.join('\n  ')}\n` +
        'Use a store that honours If-None-Match / If-Match (AWS S3, MinIO, moto), file:// or ssh://, or run without --shard.',
    );
  }
}

/**
 * A view of the pool for work on one image under its lease: every write checks the lease first; the image's
 * metadata is written compare-and-swap against the version this worker loaded.
 */
export function leasedPool(
  pool: StoragePool,
  image: Image,
  lease: Lease,
  metaTags: Map<string, string | null>,
): StoragePool {
  const wrap = (s: Storage): Storage => ({
    url: s.url,
    retrieve: (dir, files, o) => s.retrieve(dir, files, o),
    list: (pattern) => s.list(pattern),
    remove: async (files) => {
      lease.check();
      await s.remove(files);
    },
    store: async (dir, files, o) => {
      lease.check();
      const meta = image.storageUrl && pool.get(image.storageUrl) === s ? image.metadataFile : undefined;
      const plain = files.filter((f) => f !== meta);
      if (plain.length > 0) await s.store(dir, plain, o);
      if (meta && files.includes(meta)) {
        lease.check();
        await storeMetadataCas(s, dir, meta, metaTags, image, o?.checksum ?? false);
      }
    },
  });
  return {
    get: (url) => wrap(pool.get(url)),
    stats: () => pool.stats(),
    close: async () => {},
  };
}

async function storeMetadataCas(
  s: Storage,
  dir: string,
  file: string,
  tags: Map<string, string | null>,
  image: Image,
  checksum: boolean,
): Promise<void> {
  const cond = conditionalOf(s);
  const data = await readFile(join(dir, file));
  if (!tags.has(file)) tags.set(file, (await cond.read(file))?.etag ?? null);
  const known = tags.get(file) ?? null;
  const next =
    known === null ? await cond.create(file, data) : await cond.replace(file, data, known, { visible: true });
  if (!next) {
    throw new LeaseLostError(
      image.config.image_key,
      `${file} in ${s.url} changed since this worker loaded it: another worker recorded something for this image`,
    );
  }
  tags.set(file, next);
  if (checksum) {
    // the checksum goes after the file it describes, as in Storage.store
    await writeFileAtomic(join(dir, `${file}.sha512`), `${await hashFile(join(dir, file))}\n`);
    await s.store(dir, [`${file}.sha512`]);
  }
}

/** Run the image steps up to options.command over the selected images as one worker of a sharded run. */
export async function runSharded(
  images: ImagesFile,
  selected: readonly Image[],
  ctx: RunContext,
  scale: ScaleOutOptions,
  out: (t: string) => void,
): Promise<number> {
  const { options, log } = ctx;
  const shard = scale.shard!;
  const target = options.command as ImageStep;
  await probeStores(selected, ctx.pool);
  const mgr = new LeaseManager({ ttlMs: scale.leaseTtlMs, runId: scale.runId, log, now: ctx.now });
  const order = shardOrder(selected, shard);
  const own = new Set(
    partition(
      selected.map((i) => i.config),
      shard.count,
    )[shard.index - 1],
  );
  log.info(
    { shard: `${shard.index}/${shard.count}`, run: scale.runId, holder: mgr.holder },
    `shard ${shard.index}/${shard.count}: ${own.size} of ${selected.length} image(s) are this worker's; ` +
      `leases expire after ${scale.leaseTtlMs / 1000} s (run ${scale.runId})`,
  );
  const outcome: ShardedOutcome = { results: new Map(), failures: [], leaseRequests: 0 };
  const limit = pLimit(options.parallel);
  // images.yaml is rewritten by one image at a time
  const yamlLimit = pLimit(1);
  const saveYaml = () => yamlLimit(() => writeImagesYaml(join(options.workDir, 'images.yaml'), images));
  const pollMs = Math.min(Math.max(mgr.renewEveryMs, 100), 2000);

  // (an interrupted or killed worker leaves its leases to expire: the others take its images over after the TTL)
  try {
    let pending = order;
    let lastWait = '';
    while (pending.length > 0) {
      const busy: { image: Image; holder: string; expires: string }[] = [];
      await Promise.all(
        pending.map((image) =>
          limit(async () => {
            const key = image.config.config_key;
            const url = leaseUrl(image.storageUrl!);
            const got = await mgr.acquire(conditionalOf(ctx.pool.get(url)), image.config.image_key, url);
            if (got.kind === 'busy') {
              busy.push({ image, holder: got.holder.holder, expires: got.holder.expires });
              return;
            }
            if (got.kind === 'failed') {
              outcome.results.set(key, {
                image,
                result: 'failed-elsewhere',
                steps: [],
                note: `failed in ${got.holder.holder}: ${got.holder.error ?? 'unknown error'}`,
              });
              return;
            }
            const r = await workOn(image, got.lease, target, ctx);
            outcome.results.set(key, { image, ...r });
            if (r.failures.length > 0) {
              outcome.failures.push(...r.failures);
              await got.lease.fail(r.failures.map((f) => `${f.step}: ${f.error}`).join('; '));
            } else {
              await got.lease.release();
            }
            await saveYaml();
          }),
        ),
      );
      if (busy.length === 0) break;
      const soonest = busy.map((b) => b.expires).sort()[0];
      // said once per change of what is waited for (the loop comes back every couple of seconds)
      const waitKey = busy
        .map((b) => `${b.image.config.config_key}@${b.holder}`)
        .sort()
        .join(' ');
      (waitKey === lastWait ? log.debug.bind(log) : log.info.bind(log))(
        { waiting: busy.map((b) => b.image.imageName) },
        `waiting for ${busy.length} image(s) held by other workers (${[...new Set(busy.map((b) => b.holder))].join(', ')}); ` +
          `taken over if not renewed (first lease ends ${soonest})`,
      );
      lastWait = waitKey;
      await new Promise((r) => setTimeout(r, pollMs));
      pending = busy.map((b) => b.image);
    }
  } finally {
    await mgr.releaseAll();
    await saveYaml();
  }
  outcome.leaseRequests = mgr.requests;
  out(shardReport(outcome, own, selected.length, mgr.requests));
  if (outcome.failures.length > 0) {
    out('\nFailed:');
    out(failureTable(outcome.failures));
  }
  const elsewhere = [...outcome.results.values()].filter((r) => r.result === 'failed-elsewhere');
  return outcome.failures.length > 0 || elsewhere.length > 0 ? 1 : 0;
}

/** Load the image's state afresh and run its planned steps, all under its lease. */
async function workOn(
  image: Image,
  lease: Lease,
  target: ImageStep,
  ctx: RunContext,
): Promise<{ result: ShardResult; steps: ImageStep[]; failures: StepFailure[]; note?: string }> {
  const metaTags = new Map<string, string | null>();
  const pool = leasedPool(ctx.pool, image, lease, metaTags);
  const ictx: RunContext = { ...ctx, pool };
  const fail = (step: string, err: unknown): StepFailure => ({
    configKey: image.config.config_key,
    imageName: image.imageName,
    step,
    error: errorMessage(err),
  });
  let steps: ImageStep[] = [];
  // a worker that lost its lease has not failed the image: whoever took the lease over finishes it
  const lostOr = (r: { result: ShardResult; steps: ImageStep[]; failures: StepFailure[] }) =>
    lease.lost
      ? {
          result: 'lease-lost' as const,
          steps,
          failures: [],
          note: 'lease lost; left to the worker that took it over',
        }
      : r;
  try {
    const [state] = await refreshState([image], {
      target,
      disable: ctx.options.disable,
      revise: false,
      pool,
      cloudActions: (cloud) => ctx.cloud(cloud).actions,
      parallel: 1,
      log: ctx.log,
    });
    steps = state!.plan.actions;
    // a sharded run publishes each image once: every worker visits every image, and publishing again (for new
    // regions or permissions) would repeat for each visit. `./build publish` without --shard does that.
    if (image.state.published) steps = steps.filter((s) => s !== 'publish');
    if (steps.length === 0) return { result: 'up-to-date', steps, failures: [] };
    // the version of the metadata this worker starts from: every later write must replace exactly it
    if (image.storageUrl) {
      const cur = await conditionalOf(ctx.pool.get(image.storageUrl)).read(image.metadataFile);
      metaTags.set(image.metadataFile, cur?.etag ?? null);
    }
    if (state!.unsynced) await saveMetadata(image, ictx);
    for (const step of IMAGE_STEPS) {
      if (!steps.includes(step)) continue;
      lease.check();
      const r = await runStep(step, [image], ictx);
      if (r.failures.length > 0) return lostOr({ result: 'failed', steps, failures: r.failures });
    }
    lease.check();
    return { result: 'done', steps, failures: [] };
  } catch (err) {
    return lostOr({
      result: 'failed',
      steps,
      failures: [fail(err instanceof LeaseLostError ? 'lease' : 'state', err)],
    });
  }
}

function shardReport(o: ShardedOutcome, own: Set<string>, total: number, requests: number): string {
  const rows = [['IMAGE', 'SHARD', 'RESULT', 'STEPS']];
  for (const [key, r] of o.results) {
    rows.push([
      r.image.imageName,
      own.has(key) ? 'own' : 'other',
      r.result,
      r.note ?? (r.steps.join(' ') || '-'),
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const table = rows
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '))
    .join('\n');
  const did = [...o.results.values()].filter((r) => r.result === 'done').length;
  const perImage = total > 0 ? (requests / total).toFixed(1) : '0';
  return `${table}\n${did} image(s) done by this worker of ${total}; lease requests: ${requests} (${perImage} per image)`;
}
