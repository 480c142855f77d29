// Cloud plugin registry: one folder per cloud under clouds/, registered here.
import type { CloudPlugin } from './types.js';

export type { CloudPlugin } from './types.js';

export function getCloud(_name: string): CloudPlugin {
  throw new Error('not implemented');
}
