/** Oracle Cloud Infrastructure: built and uploaded; import and publish are not implemented yet. */
import { buildOnlyPlugin } from '../build-only.js';
import type { CloudPlugin } from '../types.js';

export function createOciPlugin(): CloudPlugin {
  return buildOnlyPlugin('oci');
}
