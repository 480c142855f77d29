/** Google Cloud Platform: built and uploaded; import and publish are not implemented yet. */
import { buildOnlyPlugin } from '../build-only.js';
import type { CloudPlugin } from '../types.js';

export function createGcpPlugin(): CloudPlugin {
  return buildOnlyPlugin('gcp');
}
