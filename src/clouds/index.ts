// Cloud plugin registry: one folder per cloud under clouds/, registered here.

import type { ConfigIssue } from '../config/resolve.js';
import type { ImageConfig } from '../config/types.js';
import { UserError } from '../util/errors.js';
import { createAwsPlugin } from './aws/index.js';
import { createAzurePlugin } from './azure/index.js';
import { createGcpPlugin } from './gcp/index.js';
import { createGenericPlugin } from './generic/index.js';
import { createNocloudPlugin } from './nocloud/index.js';
import { createOciPlugin } from './oci/index.js';
import type { CloudPlugin } from './types.js';

export { isPlaceholderProject, PLACEHOLDER_PROJECT } from './project.js';
export { formatPublishSummary } from './summary.js';
export type {
  CloudAction,
  CloudContext,
  CloudImage,
  CloudPlugin,
  PublishResult,
  RegionFailure,
} from './types.js';

/** Adding a cloud = adding its folder and one line here. */
const FACTORIES: Readonly<Record<string, () => CloudPlugin>> = {
  aws: createAwsPlugin,
  azure: createAzurePlugin,
  gcp: createGcpPlugin,
  generic: createGenericPlugin,
  nocloud: createNocloudPlugin,
  oci: createOciPlugin,
};

export function cloudNames(): string[] {
  return Object.keys(FACTORIES).sort();
}

/** The plugin for a variant's `cloud` config value (plugins are stateless; sessions live in ctx.cache). */
export function getCloud(name: string): CloudPlugin {
  const f = Object.hasOwn(FACTORIES, name) ? FACTORIES[name] : undefined;
  if (!f)
    throw new UserError(
      `unknown cloud "${name}" (config key cloud); known clouds: ${cloudNames().join(', ')}`,
    );
  return f();
}

const plugins = new Map<string, CloudPlugin>();

/**
 * The cloud checks run at `configs` for every variant: the cloud must have a plugin, and the plugin checks the
 * settings it reads.
 */
export function checkCloudConfig(config: ImageConfig): readonly ConfigIssue[] {
  const name = config.cloud;
  let plugin = plugins.get(name);
  if (!plugin) {
    const f = Object.hasOwn(FACTORIES, name) ? FACTORIES[name] : undefined;
    if (!f)
      return [{ key: 'cloud', expected: `one of the known clouds: ${cloudNames().join(', ')}`, found: name }];
    plugin = f();
    plugins.set(name, plugin);
  }
  return plugin.checkConfig?.(config) ?? [];
}
