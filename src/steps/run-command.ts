import { join } from 'node:path';
import type { RegionFailure } from '../clouds/types.js';
import { selectVariants, writeImagesYaml } from '../config/index.js';
import type { ImagesFile } from '../config/types.js';
import { formatPruneReport, prune, pruneJson, writeCatalog } from '../release/index.js';
import { Image } from '../state/image.js';
import { stateAfter } from '../state/image-state.js';
import { type PlannedImage, refreshState } from '../state/refresh.js';
import { supplyForRevise } from '../supply/files.js';
import { collectArtifacts, formatArtifacts } from './artifacts.js';
import type { RunContext, StepFailure } from './context.js';
import { runRollback, runStep, undoImage } from './image-steps.js';
import { saveMetadata } from './persist.js';
import { failureTable, regionTable } from './report.js';
import { runSharded } from './sharded.js';
import { IMAGE_STEPS } from './steps.js';
import { planJson, planSummary, planSummaryLine, planTableFit, terminalWidth } from './tables.js';

/**
 * Every step after configs (state, the image steps, catalog, prune, the reports). run() loads this module only
 * when the command goes beyond `configs`, so `./build configs` does not load the state machine, storage, release
 * and report modules it never uses.
 */
export async function runCommand(
  images: ImagesFile,
  ctx: RunContext,
  out: (t: string) => void,
): Promise<number> {
  const { options, log } = ctx;
  const all = Object.values(images).map((c) => new Image(c, options.workDir));
  // --only/--skip narrow catalog and prune as they narrow every other step
  const chosen =
    options.only.length > 0 || options.skip.length > 0
      ? selectVariants(images, options.only, options.skip).map((c) => new Image(c, options.workDir))
      : all;

  if (options.command === 'catalog') {
    const outDir = options.output ?? catalogDir(all) ?? join(options.workDir, 'catalog');
    const files = await writeCatalog({ images: chosen, pool: ctx.pool, outDir, log });
    for (const f of files) out(f);
    return 0;
  }
  if (options.command === 'prune') {
    const items = await prune({
      images: chosen,
      storageOnly: options.storageOnly === true,
      pool: ctx.pool,
      clouds: ctx.cloud,
      cloudContext: ctx.cloudContext,
      really: options.really,
      now: ctx.now(),
      log,
    });
    out(
      options.json
        ? JSON.stringify(pruneJson(items, options.really), null, 2)
        : formatPruneReport(items, options.really).trimEnd(),
    );
    // an item that could not be removed fails the run
    return items.some((i) => i.error) ? 1 : 0;
  }

  if (options.command === 'matrix') {
    const { matrixCommand } = await import('./matrix.js');
    return matrixCommand(images, options, out);
  }
  if (options.command === 'verify') {
    const { runVerify } = await import('./verify.js');
    const chosen = selectVariants(images, options.only, options.skip).map(
      (c) => new Image(c, options.workDir),
    );
    return runVerify(chosen, ctx, out);
  }

  const target = options.command;
  const selected = selectVariants(images, options.only, options.skip).map(
    (c) => new Image(c, options.workDir),
  );

  if (options.scaleOut?.shard) return runSharded(images, selected, ctx, options.scaleOut, out);

  const states = await refreshState(selected, {
    target,
    disable: options.disable,
    revise: options.revise,
    pool: ctx.pool,
    cloudActions: (cloud) => ctx.cloud(cloud).actions,
    parallel: options.parallel,
    log,
    publishUnchanged: options.publishUnchanged ?? false,
  });
  for (const s of states) {
    for (const n of s.plan.notes) log.debug({ image: s.image.imageName }, n);
  }
  // images.yaml shows each selected image's state and plan beside its configuration
  const planned = new Map(states.map((s) => [s.image.config.config_key, s]));
  const imagesPath = join(options.workDir, 'images.yaml');
  const saveImagesYaml = () => writeImagesYaml(imagesPath, images, (key) => runFields(planned.get(key)));

  // --revise: start the new revision (the old revision's local files go, unless only reporting)
  for (const s of states.filter((x) => x.plan.revised)) {
    if (target !== 'state') {
      const before = { revision: s.image.revision, supply: s.image.state.supply };
      await undoImage(s.image, s.plan.undo, ctx);
      s.image.record(stateAfter.revision(s.image.state, s.plan.revision));
      // the new build is compared with the revision left behind (released only when its content differs)
      s.image.record(
        stateAfter.supplied(
          s.image.state,
          supplyForRevise(before.supply, before.revision, s.plan.revision !== before.revision),
        ),
      );
      log.warn(
        { image: s.image.imageName },
        s.plan.revision !== before.revision
          ? `revision bumped to r${s.plan.revision}`
          : `rebuilding r${s.plan.revision}`,
      );
    } else {
      log.warn({ image: s.image.nameFor(s.plan.revision) }, `would bump revision to r${s.plan.revision}`);
    }
  }

  await saveImagesYaml();
  const idle = states.every((s) => s.plan.actions.length === 0);
  const width = terminalWidth(ctx.env ?? {});
  if (target === 'state' && options.json) {
    out(JSON.stringify(planJson(states), null, 2));
    return 0;
  }
  if (!options.json) {
    out(planTableFit(states, width));
    out(planSummaryLine(planSummary(states)));
  }
  if (target === 'state') {
    if (idle) out('nothing to do');
    return 0;
  }

  // a run that stopped between the local metadata write and the store: bring storage up to date first
  for (const s of states.filter((x) => x.unsynced && !x.plan.revised)) {
    log.warn({ image: s.image.imageName }, 'storage metadata is older than the local copy; storing it again');
    await saveMetadata(s.image, ctx);
  }

  if (target === 'rollback') {
    for (const s of states.filter((x) => x.plan.rollbackBlocked)) {
      log.warn({ image: s.image.imageName }, `rollback refused: ${s.plan.notes.join('; ')}`);
    }
    const todo = states.filter((s) => !s.plan.rollbackBlocked && s.plan.undo.length > 0);
    if (todo.length === 0) {
      out('nothing to do');
      return 0;
    }
    const failures = await runRollback(
      todo.map((s) => ({ image: s.image, undo: s.plan.undo })),
      ctx,
    );
    await saveImagesYaml();
    return finish(failures, [], out, options.json === true);
  }

  if (idle) {
    out('nothing to do');
    return 0;
  }

  const failed = new Set<string>();
  const failures: StepFailure[] = [];
  const regionFailures: { image: string; failures: RegionFailure[] }[] = [];
  const ran = new Map<Image, Set<string>>();
  for (const step of IMAGE_STEPS) {
    const todo = states
      .filter((s) => s.plan.actions.includes(step) && !failed.has(s.image.config.config_key))
      .map((s) => s.image);
    for (const i of todo) ran.set(i, (ran.get(i) ?? new Set()).add(step));
    const outcome = await runStep(step, todo, ctx);
    if (step === 'local' && !options.publishUnchanged) holdUnchanged(states, todo, out);
    for (const f of outcome.failures) failed.add(f.configKey);
    failures.push(...outcome.failures);
    regionFailures.push(...outcome.regionFailures);
    await saveImagesYaml();
  }

  if (target === 'release' && states.some((s) => s.plan.actions.includes('release'))) {
    const dir = options.output ?? catalogDir(all);
    if (dir) {
      const files = await writeCatalog({ images: all, pool: ctx.pool, outDir: dir, log });
      log.info({ files }, `release catalog written to ${dir}`);
    }
  }
  if (!options.json) {
    const made = formatArtifacts(collectArtifacts(ran, failed, options.workDir), options.workDir, width);
    if (made) out(`\n${made}`);
  }
  return finish(failures, regionFailures, out, options.json === true);
}

function runFields(p: PlannedImage | undefined): Record<string, unknown> | undefined {
  if (!p) return undefined;
  return { ...p.image.state, actions: p.plan.actions, undo: p.plan.undo };
}

/**
 * Release only on change: a build whose content equals the revision it was compared with (see supplyForRevise)
 * goes no further than local.
 */
function holdUnchanged(
  states: readonly PlannedImage[],
  built: readonly Image[],
  out: (t: string) => void,
): void {
  const justBuilt = new Set(built);
  for (const s of states) {
    const same = s.image.state.supply?.unchanged_as;
    if (!justBuilt.has(s.image) || same === null || same === undefined) continue;
    s.plan.actions = s.plan.actions.filter((a) => a === 'local');
    s.plan.unchanged = same;
    out(`${s.image.imageName}: unchanged (same content as r${same}); not uploaded, imported or published`);
  }
}

function catalogDir(images: readonly Image[]): string | undefined {
  for (const i of images) {
    const d = i.config.catalog_dir;
    if (typeof d === 'string' && d) return d;
  }
  return undefined;
}

function finish(
  failures: readonly StepFailure[],
  regionFailures: readonly { image: string; failures: RegionFailure[] }[],
  out: (t: string) => void,
  json = false,
): number {
  if (json) {
    // schema in docs/state.md ("Machine-readable output")
    out(
      JSON.stringify(
        {
          schema: 'cloud-image-builder/failures/v1',
          ok: failures.length === 0,
          failures: failures.map((f) => ({
            image: f.imageName,
            config_key: f.configKey,
            step: f.step,
            error: f.error,
          })),
          region_failures: regionFailures.flatMap((i) =>
            i.failures.map((f) => ({
              image: i.image,
              region: f.region,
              code: f.code ?? null,
              error: f.error,
            })),
          ),
        },
        null,
        2,
      ),
    );
    return failures.length > 0 ? 1 : 0;
  }
  if (regionFailures.length > 0) {
    out('\nPublishing failed in these regions:');
    out(regionTable(regionFailures));
  }
  if (failures.length > 0) {
    out('\nFailed:');
    out(failureTable(failures));
    return 1;
  }
  return 0;
}
