// The VM builder's way to a mirror given with --cdn-url: the configured repositories (and repository keys) name
// Alpine's CDN, and the setup scripts replace that prefix with BUILD_CDN while building (the image keeps the
// repositories as configured), as the chroot builder does with its BUILD_REPOS. An http(s) mirror is reached
// by the VM directly. A file:// mirror is not reachable from the VM: it is served by Packer's HTTP server
// (linked into its http_directory as cdn/), whose address only the VM knows ($PACKER_HTTP_ADDR, substituted
// for @PACKER_HTTP_ADDR@ by scripts/setup).
import { rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ALPINE_CDN } from './chroot/plan.js';

/** The name of the file:// mirror in Packer's http_directory. */
export const HTTP_CDN_DIR = 'cdn';
export const PACKER_HTTP_ADDR = '@PACKER_HTTP_ADDR@';

/**
 * BUILD_CDN for the setup scripts of one VM build, or undefined when --cdn-url is Alpine's CDN itself (or a
 * scheme the VM cannot reach). Links a file:// mirror into `httpDirectory`.
 */
export async function vmBuildCdn(cdnUrl: string, httpDirectory: string): Promise<string | undefined> {
  const cdn = cdnUrl.replace(/\/+$/, '');
  if (cdn === ALPINE_CDN) return undefined;
  if (/^https?:\/\//.test(cdn)) return cdn;
  if (cdn.startsWith('file://')) {
    const link = join(httpDirectory, HTTP_CDN_DIR);
    await rm(link, { force: true, recursive: true });
    await symlink(fileURLToPath(cdn), link);
    return `http://${PACKER_HTTP_ADDR}/${HTTP_CDN_DIR}`;
  }
  return undefined;
}
