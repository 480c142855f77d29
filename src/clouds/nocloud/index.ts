/** NoCloud images (cloud-init NoCloud data source): there is no provider to import into. */
import { buildOnlyPlugin } from '../build-only.js';
import type { CloudPlugin } from '../types.js';

export function createNocloudPlugin(): CloudPlugin {
  return buildOnlyPlugin('nocloud');
}
