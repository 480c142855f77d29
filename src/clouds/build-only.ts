import type { CloudAction, CloudPlugin } from './types.js';

/**
 * A cloud whose images are only built and uploaded (no import or publish yet): what the original tool does for
 * nocloud, generic, azure, gcp and oci. Import and publish are planned out by the state step.
 */
export function buildOnlyPlugin(name: string): CloudPlugin {
  return { name, actions: new Set<CloudAction>() };
}
