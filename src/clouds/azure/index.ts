/** Microsoft Azure: built and uploaded (VHD); import and publish are not implemented yet. */
import { buildOnlyPlugin } from '../build-only.js';
import type { CloudPlugin } from '../types.js';

export function createAzurePlugin(): CloudPlugin {
  return buildOnlyPlugin('azure');
}
