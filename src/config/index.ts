// Public API of the config module (the pipeline calls only these).
import { relative } from 'node:path';
import type { Logger } from 'pino';
import { type RunFields, readImagesYamlFile, writeImagesYamlFile } from './images-yaml.js';
import { findTopLevel, loadTree } from './load.js';
import { AlpineReleases } from './releases.js';
import { type ConfigCheck, type ResolveStats, resolveMatrix } from './resolve.js';
import type { ImagesFile } from './types.js';
import { stageWorkDir } from './workdir.js';

export { ConfigError, ConfigErrors } from './errors.js';
export { RUN_FIELDS, type RunFields } from './images-yaml.js';
export { PROJECT_PLACEHOLDER } from './project.js';
export type { ConfigCheck, ConfigIssue } from './resolve.js';
export { dimensionKeys, selectVariants } from './select.js';
export type { ImageConfig, ImagesFile } from './types.js';
export { WORK_KEEP } from './workdir.js';

export interface ConfigContext {
  readonly rootDir: string;
  readonly workDir: string;
  readonly custom: readonly string[];
  readonly clean: boolean;
  readonly releasesUrl: string;
  readonly cdnUrl: string;
  readonly now: Date;
  readonly log: Logger;
  /** checks of settings owned by other modules (the cloud plugins), run on every resolved variant */
  readonly check?: ConfigCheck;
}

/** How files of a staged work directory are shown: as the source they were copied from, else as they will be. */
export interface StagedPaths {
  /** staged file -> the source file it was copied from */
  readonly origins: ReadonlyMap<string, string>;
  /** the staging directory, and the work directory it becomes */
  readonly stageDir: string;
  readonly workDir: string;
}

function displayPath(abs: string, staged?: StagedPaths): string {
  let src = staged?.origins.get(abs) ?? abs;
  if (staged && src === abs && (abs === staged.stageDir || abs.startsWith(`${staged.stageDir}/`))) {
    src = staged.workDir + abs.slice(staged.stageDir.length);
  }
  const r = relative(process.cwd(), src);
  return r && !r.startsWith('..') ? r : src;
}

/** --clean handling, then install work/configs and work/scripts from configs/, scripts/ and each --custom DIR. */
export async function prepareWorkDir(ctx: ConfigContext): Promise<void> {
  const staged = await stageWorkDir(ctx);
  try {
    await staged.commit();
    await staged.settled();
  } catch (err) {
    await staged.discard();
    throw err;
  }
}

export interface ResolveResult {
  readonly images: ImagesFile;
  readonly stats: ResolveStats;
}

/** Resolve the config tree selected in `configsDir` (images.yaml or images.conf). Writes nothing. */
export async function resolveConfigsDir(
  configsDir: string,
  ctx: Pick<ConfigContext, 'releasesUrl' | 'cdnUrl' | 'now' | 'log' | 'workDir' | 'check'>,
  staged?: StagedPaths,
): Promise<ResolveResult> {
  const shown = new Map<string, string>();
  const display = (p: string) => {
    let d = shown.get(p);
    if (d === undefined) {
      d = displayPath(p, staged);
      shown.set(p, d);
    }
    return d;
  };
  const top = await findTopLevel(configsDir, display);
  ctx.log.debug(`top-level config ${display(top.file)} (${top.format})`);
  const [loaded, releases] = await Promise.all([
    loadTree(top, display),
    AlpineReleases.load({ releasesUrl: ctx.releasesUrl, cdnUrl: ctx.cdnUrl, now: ctx.now }),
  ]);
  const latest = await releases.versionInfo();
  ctx.log.info(
    `latest Alpine version ${latest.version}, release ${latest.release}${latest.notes ? `, notes ${latest.notes}` : ''}`,
  );
  const result = await resolveMatrix(loaded, {
    now: ctx.now,
    log: ctx.log,
    workDir: ctx.workDir,
    releases,
    topFile: display(top.file),
    ...(ctx.check ? { check: ctx.check } : {}),
  });
  const s = result.stats;
  ctx.log.info(
    `resolved ${s.variants} variants from ${s.combinations} combinations (${s.excluded} excluded, ${s.endOfLife} past end of life)`,
  );
  return result;
}

export async function loadImagesYaml(path: string): Promise<ImagesFile | undefined> {
  return await readImagesYamlFile(path);
}

/** Atomic write of work/images.yaml, with the run fields (state, plan) `run` gives per config_key. */
export async function writeImagesYaml(
  path: string,
  images: ImagesFile,
  run?: (configKey: string) => RunFields | undefined,
): Promise<void> {
  await writeImagesYamlFile(path, images, run);
}
