// The release step's command: release_cmd, run once per image (e.g. to copy it to the download mirror).
import type { Logger } from 'pino';
import type { Image } from '../state/image.js';
import { exists } from '../util/fs.js';
import { buildArgv, placeholderValues, runCommand } from './command.js';

export interface ReleaseContext {
  log: Logger;
  env: NodeJS.ProcessEnv;
}

/** The values release_cmd's placeholders can use: every resolved setting plus these derived names. */
export function releaseValues(image: Image): Record<string, unknown> {
  return placeholderValues(image.config, {
    v_version: image.vVersion,
    // alpine-cloud-images passes the image name as {base}: "<cloud>_alpine-<release>-...-r<revision>"
    base: image.imageName,
    image_name: image.imageName,
    image_file: image.imageFile,
    upload_file: image.uploadFile,
    metadata_file: image.metadataFile,
    local_dir: image.localDir,
    revision: image.revision,
  });
}

/**
 * Run release_cmd for the image (nothing when it is not set). Throws a UserError naming the command, its exit
 * code and the end of its stderr when it fails; the caller then leaves the image unreleased.
 */
export async function release(image: Image, ctx: ReleaseContext): Promise<boolean> {
  const template = image.config.release_cmd;
  if (typeof template !== 'string' || template.trim() === '') {
    ctx.log.debug({ image: image.imageName }, 'no release_cmd set');
    return false;
  }
  const what = `release_cmd for ${image.imageName}`;
  const argv = buildArgv(template, releaseValues(image), what);
  ctx.log.info({ image: image.imageName }, `releasing ${image.imageName}`);
  // the image directory when this machine built it, else the current directory (as alpine-cloud-images did)
  const cwd = (await exists(image.localDir)) ? image.localDir : process.cwd();
  await runCommand(argv, { cwd, env: ctx.env, log: ctx.log, what });
  return true;
}
