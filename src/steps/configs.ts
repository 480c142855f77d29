// The configs step: install work/configs and work/scripts when missing, then resolve the configs into
// work/images.yaml unless it exists already (then it is loaded). With --clean everything is installed and
// resolved afresh. Nothing in work/ changes when installation or resolution fails.
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { BuildOptions } from '../cli/options.js';
import { checkCloudConfig, getCloud } from '../clouds/index.js';
import type { CloudPlugin } from '../clouds/types.js';
import { ConfigError, throwErrors } from '../config/errors.js';
import {
  type ConfigCheck,
  type ConfigContext,
  loadImagesYaml,
  prepareWorkDir,
  resolveConfigsDir,
  writeImagesYaml,
} from '../config/index.js';
import type { ImagesFile } from '../config/types.js';
import { stageWorkDir } from '../config/workdir.js';
import { stripCredentials } from '../util/redact.js';

/** The cloud checks of `configs` for a set of plugins: the cloud must have one, and it checks its settings. */
export function cloudCheck(clouds: (name: string) => CloudPlugin): ConfigCheck {
  if (clouds === getCloud) return checkCloudConfig;
  return (config) => {
    let plugin: CloudPlugin;
    try {
      plugin = clouds(config.cloud);
    } catch {
      return [{ key: 'cloud', expected: 'a cloud with a plugin', found: config.cloud }];
    }
    return plugin.checkConfig?.(config) ?? [];
  };
}

export function configContext(
  options: BuildOptions,
  log: Logger,
  now: Date,
  check: ConfigCheck = checkCloudConfig,
): ConfigContext {
  return {
    rootDir: options.rootDir,
    workDir: options.workDir,
    custom: options.custom,
    clean: options.clean,
    releasesUrl: options.releasesUrl,
    // configs, images.yaml and metadata hold the CDN URL without credentials; the build puts them back
    cdnUrl: stripCredentials(options.cdnUrl),
    now,
    log,
    check,
  };
}

/**
 * A work/images.yaml that is used as it is (not resolved again) gets the same cloud checks as a resolution, so no
 * step after `configs` meets a setting that was never checked. Errors name images.yaml.
 */
function checkLoaded(images: ImagesFile, path: string, check: ConfigCheck): void {
  const errors: ConfigError[] = [];
  for (const [key, config] of Object.entries(images)) {
    for (const i of check(config)) {
      errors.push(
        new ConfigError('', {
          variant: key,
          key: i.key,
          expected: i.expected,
          got: i.found,
          location: { file: path },
        }),
      );
    }
  }
  throwErrors(errors);
}

/** prepareWorkDir, then resolve and write work/images.yaml unless it exists (else load it). */
export async function configsStep(
  options: BuildOptions,
  log: Logger,
  now: Date = new Date(),
  check: ConfigCheck = checkCloudConfig,
): Promise<ImagesFile> {
  const ctx = configContext(options, log, now, check);
  const imagesPath = join(options.workDir, 'images.yaml');
  if (!options.clean) {
    const existing = await loadImagesYaml(imagesPath);
    if (existing) {
      checkLoaded(existing, imagesPath, check);
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
    await staged.settled();
    log.info(`wrote ${imagesPath}`);
    return images;
  } catch (err) {
    await staged.discard();
    throw err;
  }
}
