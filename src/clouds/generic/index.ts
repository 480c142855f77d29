/** Generic images for any hypervisor: built and uploaded, never imported. */
import { buildOnlyPlugin } from '../build-only.js';
import type { CloudPlugin } from '../types.js';

export function createGenericPlugin(): CloudPlugin {
  return buildOnlyPlugin('generic');
}
