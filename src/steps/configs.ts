// The configs step: install work/configs and work/scripts when missing, then resolve the configs into
// work/images.yaml unless it exists already (then it is loaded). With --clean everything is installed and
// resolved afresh. Nothing in work/ changes when installation or resolution fails.
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { BuildOptions } from '../cli/options.js';
import {
  type ConfigContext,
  loadImagesYaml,
  prepareWorkDir,
  resolveConfigsDir,
  writeImagesYaml,
} from '../config/index.js';
import type { ImagesFile } from '../config/types.js';
import { stageWorkDir } from '../config/workdir.js';

export function configContext(options: BuildOptions, log: Logger, now: Date): ConfigContext {
  return {
    rootDir: options.rootDir,
    workDir: options.workDir,
    custom: options.custom,
    clean: options.clean,
    releasesUrl: options.releasesUrl,
    cdnUrl: options.cdnUrl,
    now,
    log,
  };
}

/** prepareWorkDir, then resolve and write work/images.yaml unless it exists (else load it). */
export async function configsStep(
  options: BuildOptions,
  log: Logger,
  now: Date = new Date(),
): Promise<ImagesFile> {
  const ctx = configContext(options, log, now);
  const imagesPath = join(options.workDir, 'images.yaml');
  if (!options.clean) {
    const existing = await loadImagesYaml(imagesPath);
    if (existing) {
      await prepareWorkDir(ctx);
      log.info(`using existing ${imagesPath} (${Object.keys(existing).length} variants)`);
      return existing;
    }
  }
  const staged = await stageWorkDir(ctx);
  try {
    const { images } = await resolveConfigsDir(staged.configsDir, ctx, {
      origins: staged.origins,
      stageDir: staged.dir,
      workDir: options.workDir,
    });
    await staged.commit();
    await writeImagesYaml(imagesPath, images);
    log.info(`wrote ${imagesPath}`);
    return images;
  } catch (err) {
    await staged.discard();
    throw err;
  }
}
