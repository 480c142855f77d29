import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import pLimit from 'p-limit';
import { formatPublishSummary } from '../clouds/index.js';
import type { RegionFailure } from '../clouds/types.js';
import { releaseImage, signImage } from '../release/index.js';
import type { Image } from '../state/image.js';
import { stateAfter } from '../state/image-state.js';
import type { UndoAction } from '../state/plan.js';
import { recordedSupplyFiles } from '../supply/files.js';
import { crashPoint } from '../util/crash.js';
import { errorMessage, UserError } from '../util/errors.js';
import { exists } from '../util/fs.js';
import type { ResourceDescriptor } from '../util/resource-descriptor.js';
import type { RunContext, StepFailure } from './context.js';
import { revisionFiles, saveMetadata } from './persist.js';
import type { ImageStep } from './steps.js';
import { requireTested, stepTest } from './test-step.js';

export interface StepOutcome {
  failures: StepFailure[];
  regionFailures: { image: string; failures: RegionFailure[] }[];
}

function failure(image: Image, step: string, err: unknown): StepFailure {
  return { configKey: image.config.config_key, imageName: image.imageName, step, error: errorMessage(err) };
}

/**
 * Run `fn` for every image, at most options.parallel at once, logging progress; a failing image is recorded and
 * the others go on.
 */
async function forEachImage(
  step: string,
  images: readonly Image[],
  ctx: RunContext,
  fn: (image: Image) => Promise<void>,
): Promise<StepFailure[]> {
  const limit = pLimit(ctx.options.parallel);
  const failures: StepFailure[] = [];
  let done = 0;
  await Promise.all(
    images.map((image) =>
      limit(async () => {
        const started = Date.now();
        ctx.log.info({ step, image: image.imageName }, `${step}: ${image.imageName} started`);
        try {
          await fn(image);
          done++;
          ctx.log.info(
            { step, image: image.imageName, seconds: (Date.now() - started) / 1000 },
            `${step}: ${image.imageName} done (${done}/${images.length})`,
          );
        } catch (err) {
          done++;
          failures.push(failure(image, step, err));
          ctx.log.error(
            { step, image: image.imageName },
            `${step}: ${image.imageName} failed (${done}/${images.length}): ${errorMessage(err)}`,
          );
        }
      }),
    ),
  );
  return failures;
}

async function stepLocal(images: readonly Image[], ctx: RunContext): Promise<StepFailure[]> {
  if (ctx.build) {
    // a replaced build (tests): the same state change and metadata as a real one, without the supply chain
    const results = new Map((await ctx.build(images, ctx)).map((r) => [r.configKey, r]));
    const failures: StepFailure[] = [];
    for (const image of images) {
      const r = results.get(image.config.config_key);
      if (!r?.ok) {
        failures.push(failure(image, 'local', r?.error ?? 'no result from the build'));
        continue;
      }
      image.record(stateAfter.built(image.state, ctx.now().toISOString()));
      await saveMetadata(image, ctx);
    }
    return failures;
  }
  // Packer/QEMU tooling loads only when something is built
  const { buildLocal, localBuildOptions } = await import('../local/index.js');
  const results = await buildLocal(images, { log: ctx.log, options: localBuildOptions(ctx.options) });
  const byKey = new Map(results.map((r) => [r.configKey, r]));
  const failures: StepFailure[] = [];
  const supply = await supplyTools(ctx);
  for (const image of images) {
    const r = byKey.get(image.config.config_key);
    if (!r?.ok) {
      const why = r?.error ?? 'no result from the build';
      failures.push(failure(image, 'local', `${why}${r ? ` (log: ${r.logFile})` : ''}`));
      continue;
    }
    try {
      await recordSupplyChain(image, r, supply, ctx);
    } catch (err) {
      failures.push(failure(image, 'local', `supply chain: ${errorMessage(err)}`));
      continue;
    }
    image.record(stateAfter.built(image.state, ctx.now().toISOString()));
    await saveMetadata(image, ctx);
  }
  return failures;
}

type SupplyTools = Awaited<ReturnType<typeof supplyTools>>;

/** The supply-chain module and what it needs once per run (tool version and commit, config digests). */
async function supplyTools(ctx: RunContext) {
  const mod = await import('../supply/produce.js');
  const [tool, digests] = await Promise.all([
    mod.toolInfo(ctx.options.rootDir),
    mod.configDigests(ctx.options.workDir, ctx.options.custom),
  ]);
  return { mod, tool, digests };
}

/** SBOMs, manifest and provenance of a fresh build, and whether its content equals its --revise baseline. */
async function recordSupplyChain(
  image: Image,
  r: { elapsedMs?: number; inputs?: ResourceDescriptor[]; sourceDateEpoch?: number; builder?: string },
  tools: SupplyTools,
  ctx: RunContext,
): Promise<void> {
  const t0 = Date.now();
  const finished = ctx.now();
  const s = await tools.mod.produceSupplyChain(image, {
    rootDir: ctx.options.rootDir,
    workDir: ctx.options.workDir,
    custom: ctx.options.custom,
    tool: tools.tool,
    started: new Date(finished.getTime() - (r.elapsedMs ?? 0)),
    finished,
    inputs: [
      ...(r.inputs ?? []),
      ...(r.builder === 'chroot'
        ? [
            ...(await tools.mod.localRepositoryIndexes(
              image.config.repos,
              ctx.options.cdnUrl,
              image.config.arch,
            )),
            ...(await tools.mod.apkIndexInputs(ctx.options.workDir, image.config.arch)),
          ]
        : []),
    ],
    ...(r.sourceDateEpoch !== undefined ? { sourceDateEpoch: r.sourceDateEpoch } : {}),
    configDigests: tools.digests,
  });
  image.record(stateAfter.supplied(image.state, s));
  ctx.log.info(
    { image: image.imageName, content_digest: s.content_digest, packages: s.packages, ms: Date.now() - t0 },
    `local: ${image.imageName}: SBOMs of ${s.packages} packages, manifest ${s.content_digest.slice(0, 19)}…, provenance`,
  );
  if (s.packages === 0) {
    ctx.log.warn(
      { image: image.imageName },
      `local: ${image.imageName}: the image has no /lib/apk/db/installed; its SBOMs list no packages`,
    );
  }
  if (s.unchanged_as !== null && s.unchanged_as !== undefined) {
    ctx.log.warn(
      { image: image.imageName },
      `local: ${image.imageName}: unchanged (same content as r${s.unchanged_as})`,
    );
  }
}

/** The image file and the supply-chain files beside it that exist locally. */
async function storedFiles(image: Image): Promise<string[]> {
  const files = [image.uploadFile];
  for (const f of recordedSupplyFiles(image.state.supply)) {
    if (await exists(join(image.localDir, f))) files.unshift(f);
  }
  return files;
}

async function upload(image: Image, ctx: RunContext): Promise<void> {
  if (!image.storageUrl) throw new UserError(`${image.config.config_key}: no storage_url configured`);
  requireTested(image, 'upload', ctx);
  if (!(await exists(image.uploadPath))) {
    throw new UserError(`${image.uploadPath}: local image missing; run the local step (or --revise)`);
  }
  const storage = ctx.pool.get(image.storageUrl);
  // the SBOMs, manifest and provenance first, the image last
  await storage.store(image.localDir, await storedFiles(image), { checksum: true });
  crashPoint('upload:after-image');
  image.record(stateAfter.uploaded(image.state, ctx.now().toISOString()));
  await saveMetadata(image, ctx);
}

/** The converted image must be local for import; fetch it from storage when it was built elsewhere. */
export async function ensureLocalImage(image: Image, ctx: RunContext): Promise<void> {
  if (await exists(image.imagePath)) return;
  if (image.config.image_compress) {
    throw new UserError(
      `${image.imagePath}: not built on this machine and stored compressed; rebuild with ./build local --revise`,
    );
  }
  if (!image.storageUrl)
    throw new UserError(`${image.imagePath}: missing and no storage_url to fetch it from`);
  ctx.log.info({ image: image.imageName }, `retrieving ${image.imageFile} from storage`);
  await ctx.pool.get(image.storageUrl).retrieve(image.localDir, [image.imageFile], { checksum: true });
}

async function importImage(image: Image, ctx: RunContext): Promise<void> {
  const plugin = ctx.cloud(image.config.cloud);
  if (!plugin.importImage) throw new UserError(`cloud ${plugin.name} cannot import images`);
  requireTested(image, 'import', ctx);
  await ensureLocalImage(image, ctx);
  const r = await plugin.importImage(image, ctx.cloudContext);
  image.record(stateAfter.imported(image.state, r));
  await saveMetadata(image, ctx);
}

async function sign(image: Image, ctx: RunContext): Promise<void> {
  const r = await signImage(image, { log: ctx.log, env: ctx.env ?? process.env });
  if (image.storageUrl && image.state.uploaded && r.files.length > 0) {
    await ctx.pool.get(image.storageUrl).store(image.localDir, r.files, { checksum: false });
  }
  image.record(stateAfter.signed(image.state, r));
  await saveMetadata(image, ctx);
}

async function release(image: Image, ctx: RunContext): Promise<void> {
  await releaseImage(image, { log: ctx.log, env: ctx.env ?? process.env });
  image.record(stateAfter.released(image.state, ctx.now().toISOString()));
  await saveMetadata(image, ctx);
}

async function publish(image: Image, ctx: RunContext, regionFailures: RegionFailures): Promise<void> {
  const plugin = ctx.cloud(image.config.cloud);
  if (!plugin.publishImage) throw new UserError(`cloud ${plugin.name} cannot publish images`);
  requireTested(image, 'publish', ctx);
  const r = await plugin.publishImage(image, ctx.cloudContext);
  // the source image was gone and publish imported it again
  if (r.reimported) image.record(stateAfter.imported(image.state, r.reimported));
  ctx.log.info({ image: image.imageName }, `\n${formatPublishSummary(image.imageName, r)}`);
  if (r.failures.length > 0) regionFailures.push({ image: image.imageName, failures: r.failures });
  const published = r.failures.length > 0 ? undefined : (r.published ?? ctx.now().toISOString());
  image.record(stateAfter.published(image.state, { artifacts: r.artifacts, published }));
  await saveMetadata(image, ctx);
  if (r.failures.length > 0) {
    throw new Error(`publishing failed in ${r.failures.map((f) => f.region).join(', ')}`);
  }
}

// -----------------------------------------------------------------------------------------------------------
// Undo: each removes what its step made, and records it

/** Undo of import: delete the imported image in the cloud. */
async function deleteImported(image: Image, ctx: RunContext): Promise<void> {
  const importId = image.state.import_id;
  if (!importId) return;
  const plugin = ctx.cloud(image.config.cloud);
  if (!plugin.deleteImage) throw new UserError(`cloud ${plugin.name} cannot delete imported images`);
  ctx.log.warn({ image: image.imageName }, `deleting imported image ${importId}`);
  await plugin.deleteImage(image, importId, ctx.cloudContext);
  image.record(stateAfter.importRemoved(image.state));
}

/** Undo of upload: remove the revision's files from storage, metadata first. */
async function removeUploaded(image: Image, ctx: RunContext): Promise<void> {
  if (!image.storageUrl) return;
  ctx.log.warn({ image: image.imageName }, `removing uploaded files from ${image.storageUrl}`);
  // metadata first: a crash part-way leaves files with no metadata, which the next run uploads again
  const files = revisionFiles(image);
  const meta = files.filter((f) => f.startsWith(image.metadataFile));
  const rest = files.filter((f) => !f.startsWith(image.metadataFile));
  const storage = ctx.pool.get(image.storageUrl);
  await storage.remove(meta);
  await storage.remove(rest);
  image.record(stateAfter.uploadRemoved(image.state));
}

/** Undo of local: remove the local build directory. */
async function removeLocal(image: Image, ctx: RunContext): Promise<void> {
  ctx.log.warn({ image: image.imageName }, `removing local build directory ${image.localDir}`);
  await rm(image.localDir, { recursive: true, force: true });
  image.record(stateAfter.localRemoved(image.state));
}

// -----------------------------------------------------------------------------------------------------------
// The step table

type RegionFailures = StepOutcome['regionFailures'];

/** One image step as Packer writes its steps: the run and, beside it, its undo or why it has none. */
export interface StepEntry {
  readonly step: ImageStep;
  /** runs the step over the images whose plan includes it; publish adds its failed regions */
  readonly run: (
    images: readonly Image[],
    ctx: RunContext,
    regionFailures: RegionFailures,
  ) => Promise<StepFailure[]>;
  /**
   * rollback's (and a --revise bump's) undo of one image, named by the plan's `UndoAction`; undos run in reverse
   * table order. `none` says why a step is not undone.
   */
  readonly undo:
    | { readonly action: UndoAction; readonly run: (image: Image, ctx: RunContext) => Promise<void> }
    | { readonly none: string };
}

/** Run `fn` for each image (options.parallel at once). */
const each =
  (step: ImageStep, fn: (image: Image, ctx: RunContext) => Promise<void>): StepEntry['run'] =>
  (images, ctx) =>
    forEachImage(step, images, ctx, (i) => fn(i, ctx));

/** The image steps in order, each with its run beside its undo. The pipeline, sharded runs and rollback use it. */
export const STEP_TABLE: readonly StepEntry[] = [
  { step: 'local', run: stepLocal, undo: { action: 'local', run: removeLocal } },
  { step: 'test', run: stepTest, undo: { none: 'nothing to remove; a new build is tested again' } },
  { step: 'upload', run: each('upload', upload), undo: { action: 'upload', run: removeUploaded } },
  { step: 'import', run: each('import', importImage), undo: { action: 'import', run: deleteImported } },
  {
    step: 'sign',
    run: each('sign', sign),
    undo: { none: 'nothing to remove; a new revision is signed again' },
  },
  {
    step: 'publish',
    run: (images, ctx, regionFailures) =>
      forEachImage('publish', images, ctx, (i) => publish(i, ctx, regionFailures)),
    undo: { none: 'refused: published images stay' },
  },
  { step: 'release', run: each('release', release), undo: { none: 'refused: released images stay' } },
];

function entryOf(step: ImageStep): StepEntry {
  const e = STEP_TABLE.find((x) => x.step === step);
  if (!e) throw new Error(`no step ${step} in the step table`);
  return e;
}

/** Run one forward step over the images whose plan includes it. */
export async function runStep(
  step: ImageStep,
  images: readonly Image[],
  ctx: RunContext,
): Promise<StepOutcome> {
  const regionFailures: RegionFailures = [];
  if (images.length === 0) return { failures: [], regionFailures };
  ctx.log.info({ step, images: images.length }, `${step}: ${images.length} image(s)`);
  const failures = await entryOf(step).run(images, ctx, regionFailures);
  return { failures, regionFailures };
}

/** Undo (rollback, or the local files of a revision bumped by --revise): the table's undos, last step first. */
export async function undoImage(image: Image, undo: readonly UndoAction[], ctx: RunContext): Promise<void> {
  for (const { undo: u } of [...STEP_TABLE].reverse()) {
    if ('action' in u && undo.includes(u.action)) await u.run(image, ctx);
  }
}

export async function runRollback(
  images: readonly { image: Image; undo: readonly UndoAction[] }[],
  ctx: RunContext,
): Promise<StepFailure[]> {
  const todo = images.filter((i) => i.undo.length > 0);
  const byImage = new Map(todo.map((t) => [t.image, t.undo]));
  return forEachImage('rollback', [...byImage.keys()], ctx, (image) =>
    undoImage(image, byImage.get(image)!, ctx),
  );
}
